"""``aol-digits``: the patchwise AOL architecture (paper Sec. 5) scaled down for 1x8x8 digits.

    ConcatenationPooling(2)                  -> 4x4x4 on digits
    conv 1x1 -> 64, activation
    4 x [conv 3x3 64 -> 64, activation]
    conv 1x1 64 -> 64
    FirstChannels(16), Flatten               -> 16 (image_size/2)**2 = 256 features
    3 x [dense 256 -> 256, activation]
    dense 256 -> 256, FirstChannels(num_classes)

Same pattern as AOL-Small (patch, 1x1 encode, 3x3 convs, keep a few channels,
dense stack), with patch 2, 64 channels and 4+4 layers so it trains in about a
minute on a CPU. It works on any even image size, and with every family: for one whose
layers keep their channel count (SLL, CPL) the patches are padded with zero channels to 64
before the first 1x1 conv, as 1LLC's ConvNet widens its input.
"""

from __future__ import annotations

from torch import nn

from aol.architectures.patchwise import patchwise
from aol.families import LayerFamily

PATCH_SIZE = 2
CHANNELS = 64
CONV_LAYERS = 4
KEPT_CHANNELS = 16
DENSE_LAYERS = 4


def aol_digits(family: LayerFamily, num_classes, in_channels, image_size) -> nn.Sequential:
    """aol-digits: a small patchwise AOL network for 8x8 digits (415,360 parameters on digits)."""
    return patchwise(
        family, num_classes, in_channels, image_size, KEPT_CHANNELS, patch_size=PATCH_SIZE,
        channels=CHANNELS, conv_layers=CONV_LAYERS, dense_layers=DENSE_LAYERS, name="aol-digits",
        widen_with_zeros=True,
    )  # fmt: skip
