"""``aol-digits``: the patchwise AOL architecture (aol.md §2.1) scaled down for 1x8x8 digits.

    ConcatenationPooling(2)                  -> 4x4x4 on digits
    conv 1x1 -> 64, activation
    4 x [conv 3x3 64 -> 64, activation]
    conv 1x1 64 -> 64
    FirstChannels(16), Flatten               -> 16 (image_size/2)**2 = 256 features
    3 x [dense 256 -> 256, activation]
    dense 256 -> 256, FirstChannels(num_classes)

Same pattern as AOL-Small (patch, 1x1 encode, 3x3 convs, keep a few channels,
dense stack), with patch 2, 64 channels and 4+4 layers so it trains in about a
minute on a CPU. It works on any even image size.
"""

from __future__ import annotations

from torch import nn

from aol.architectures.common import conv_block, linear_block, require
from aol.families import LayerFamily
from aol.modules import ConcatenationPooling, FirstChannels

PATCH_SIZE = 2
CHANNELS = 64
CONV_LAYERS = 4
KEPT_CHANNELS = 16
DENSE_LAYERS = 4


def aol_digits(family: LayerFamily, num_classes, in_channels, image_size):
    """aol-digits: a small patchwise AOL network for 8x8 digits (415,360 parameters on digits)."""
    require(
        image_size % PATCH_SIZE == 0,
        f"aol-digits needs an even image size, got {image_size}",
    )
    dense_width = KEPT_CHANNELS * (image_size // PATCH_SIZE) ** 2
    require(
        num_classes <= dense_width,
        f"aol-digits has {dense_width} outputs, fewer than {num_classes} classes",
    )
    layers: list[nn.Module] = [ConcatenationPooling(PATCH_SIZE)]
    layers += conv_block(family, in_channels * PATCH_SIZE**2, CHANNELS, 1, True)
    for _ in range(CONV_LAYERS):
        layers += conv_block(family, CHANNELS, CHANNELS, 3, True)
    layers += conv_block(family, CHANNELS, CHANNELS, 1, False)
    layers += [FirstChannels(KEPT_CHANNELS), nn.Flatten()]
    for index in range(DENSE_LAYERS):
        layers += linear_block(family, dense_width, dense_width, index < DENSE_LAYERS - 1)
    layers.append(FirstChannels(num_classes))
    return nn.Sequential(*layers)
