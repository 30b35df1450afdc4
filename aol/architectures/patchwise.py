"""The AOL paper's main "patchwise" model, AOL-Small / -Medium / -Large (paper Table 2;
berndprach/AOL@562bddf, ``models/patchwise.py``).

    ConcatenationPooling(4)                       -> 8x8x48 on CIFAR
    conv 1x1 -> 192, activation
    12 x [conv 3x3 192 -> 192, activation]
    conv 1x1 192 -> 192
    FirstChannels(w), Flatten                     -> 64 w features
    13 x [dense 64w -> 64w, activation]
    dense 64w -> 64w, FirstChannels(num_classes)

w = 16 / 32 / 48. Initialisation (paper Sec. 5) is the family's default: AOL's
``init="paper"`` gives Dirac kernels / identity matrices to width-keeping layers
and orthonormal columns to the first 1x1 conv, so the bound is tight at the start.
For other input sizes the patch size stays 4 and the dense width is the flattened
size ``w * (image_size / 4)**2`` (64 w for 32x32 inputs).
"""

from __future__ import annotations

from torch import nn

from aol.architectures.common import (
    channel_changing_conv,
    conv_block,
    linear_block,
    require,
    require_channel_changes,
)
from aol.families import LayerFamily
from aol.nn.modules import ConcatenationPooling, FirstChannels

PATCH_SIZE = 4  # berndprach/AOL@562bddf models/patchwise.py, patch_size=(4, 4)
ENCODING_CHANNELS = 192  # 4 * 4 * 12
ENCODING_LAYERS = 12
DENSE_LAYERS = 14


def patchwise(
    family: LayerFamily,
    num_classes: int,
    in_channels: int,
    image_size: int,
    width: int,
    *,
    patch_size: int = PATCH_SIZE,
    channels: int = ENCODING_CHANNELS,
    conv_layers: int = ENCODING_LAYERS,
    dense_layers: int = DENSE_LAYERS,
    name: str | None = None,
    widen_with_zeros: bool = False,
) -> nn.Sequential:
    """The patchwise pattern: patch, 1x1 encode, ``conv_layers`` 3x3 convs, 1x1, keep
    ``width`` channels, flatten, ``dense_layers`` dense layers, keep ``num_classes``.

    The defaults are the paper's AOL models; ``aol-digits`` uses the same pattern smaller.
    The 1x1 encoding conv changes the channel count; for a family whose layers cannot
    (``changes_channels=False``) the paper's models are refused, while
    ``widen_with_zeros=True`` (aol-digits) pads the patches with zero channels first.
    """
    name = name or f"patchwise model (w={width})"
    patch_channels = in_channels * patch_size**2
    if not widen_with_zeros:
        require_channel_changes(family, name, f"the 1x1 conv {patch_channels} -> {channels}")
    require(
        image_size % patch_size == 0,
        f"{name} needs an image size divisible by {patch_size}, got {image_size}",
    )
    dense_width = width * (image_size // patch_size) ** 2
    require(
        num_classes <= dense_width,
        f"{name} has {dense_width} output features, fewer than {num_classes} classes",
    )
    layers: list[nn.Module] = [ConcatenationPooling(patch_size)]
    layers += channel_changing_conv(family, patch_channels, channels, 1)
    layers.append(family.activation())
    for _ in range(conv_layers):
        layers += conv_block(family, channels, channels, 3, True)
    layers += conv_block(family, channels, channels, 1, False)
    layers += [FirstChannels(width), nn.Flatten()]
    for index in range(dense_layers):
        layers += linear_block(family, dense_width, dense_width, index < dense_layers - 1)
    layers.append(FirstChannels(num_classes))
    return nn.Sequential(*layers)


#: The paper's sizes (Table 2): 18,724,480 / 62,779,008 / 136,193,664 parameters on CIFAR.
WIDTHS = {"aol-small": 16, "aol-medium": 32, "aol-large": 48}


def paper_patchwise(family: LayerFamily, num_classes, in_channels, image_size, *, name, width):
    """AOL-Small/-Medium/-Large by ``name`` (errors name the architecture)."""
    return patchwise(family, num_classes, in_channels, image_size, width, name=name)
