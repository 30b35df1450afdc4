"""The AOL paper's ablation architectures AOL-FC, AOL-STD, AOL-ALT and AOL-DIL (paper
appendix A.4, Tables 7-9, Table 6 results; berndprach/AOL@562bddf ``models/``).

``downsampling="pooling"`` (the default, names ``aol-std`` / ``aol-alt`` / ``aol-dil``)
builds every "2x2 stride-2 convolution" of the paper as the released code does:
ConcatenationPooling(2) followed by a 1x1 convolution; its README says this scores
slightly better than the paper's strided convolutions. ``downsampling="strided"``
(``aol-std-strided`` / ``aol-alt-strided`` / ``aol-dil-strided``) uses the paper's
2x2 stride-2 convolutions (a family whose convolution has ``supports_stride``).
"""

from __future__ import annotations

from torch import nn

from aol.architectures.common import (
    conv_block,
    linear_block,
    power_of_two_exponent,
    require,
    require_channel_changes,
)
from aol.families import LayerFamily
from aol.nn.modules import ConcatenationPooling, FirstChannels

FC_WIDTH = 4096
FC_HIDDEN_LAYERS = 8


def aol_fc(family: LayerFamily, num_classes, in_channels, image_size):
    """AOL-FC: 9 dense layers of width 4096 on the flattened image (paper Table 8).

    Follows the **paper**: [dense 4096, activation] x 8, then dense 4096 without
    activation, FirstChannels(num_classes) -- 9 dense layers. The released code
    (``nrof_layers=8``) has one fewer (berndprach/AOL@562bddf ``models/``).
    """
    require_channel_changes(family, "aol-fc", f"the dense layer to {FC_WIDTH} features")
    require(num_classes <= FC_WIDTH, f"aol-fc has {FC_WIDTH} outputs, < {num_classes} classes")
    layers: list[nn.Module] = [nn.Flatten()]
    features = in_channels * image_size * image_size
    for _ in range(FC_HIDDEN_LAYERS):
        layers += linear_block(family, features, FC_WIDTH, True)
        features = FC_WIDTH
    layers += linear_block(family, FC_WIDTH, FC_WIDTH, False)
    layers.append(FirstChannels(num_classes))
    return nn.Sequential(*layers)


DOWNSAMPLINGS = ("pooling", "strided")


def downsample(
    family: LayerFamily, in_channels: int, out_channels: int, activation: bool, downsampling: str
) -> list[nn.Module]:
    """Halve the resolution: the paper's conv 2x2 stride 2 (``strided``), or the released
    code's ConcatenationPooling(2) + conv 1x1 (``pooling``)."""
    if downsampling == "strided":
        return conv_block(family, in_channels, out_channels, 2, activation, stride=2)
    require(downsampling == "pooling", f"downsampling must be one of {DOWNSAMPLINGS}")
    return [
        ConcatenationPooling(2),
        *conv_block(family, 4 * in_channels, out_channels, 1, activation),
    ]


STD_FIRST_WIDTH = 32
STD_CONVS_PER_BLOCK = 4
#: AOL-DIL's dilated 3x3 convolutions spread their taps over the image, as ECO's do
#: (paper A.4.5): dilation ``max(1, size // 3)`` at resolution ``size`` (10, 5, 2, 1, 1 on
#: CIFAR), circular padding. The paper gives no numbers; this is our reading.
DIL_KERNEL = 3


def dilated_conv_options(size: int) -> dict:
    return {"dilation": max(1, size // DIL_KERNEL), "padding_mode": "circular"}


def aol_std(
    family: LayerFamily, num_classes, in_channels, image_size,
    downsampling: str = "pooling", dilated: bool = False, name: str = "aol-std",
):  # fmt: skip
    """AOL-STD: a standard CNN of AOL layers, halving resolution until 1x1 (paper Table 7).

    ``pooling`` follows the **released code** (``standard_convolutional.py``): a 1x1 stem
    conv to 32 channels with activation (not in the paper), then per block c = 32, 64,
    ...: [conv 3x3 c, activation] x 4, ConcatenationPooling(2) + conv 1x1 to 2c without
    activation. ``strided`` follows the **paper's Table 7**: no stem (the first 3x3 conv
    takes the input), conv 2x2 stride 2 to 2c. Then conv 1x1 (no activation),
    FirstChannels(num_classes), Flatten. On 32x32 inputs that is 5 blocks ending at
    1x1x1024; other power-of-two sizes get log2(size) blocks. ``dilated`` (AOL-DIL, paper
    A.4.5) makes every 3x3 conv dilated with circular padding (``dilated_conv_options``).
    """
    first = "stem conv" if downsampling == "pooling" else "3x3 conv"
    require_channel_changes(family, name, f"the {first} to {STD_FIRST_WIDTH} channels")
    blocks = power_of_two_exponent(image_size)
    require(
        blocks is not None and blocks >= 1,
        f"aol-std needs a power-of-two image size >= 2, got {image_size}",
    )
    width, size = STD_FIRST_WIDTH, image_size
    layers: list[nn.Module] = []
    channels = in_channels
    if downsampling == "pooling":
        layers += conv_block(family, in_channels, width, 1, True)
        channels = width
    for _ in range(blocks):
        options = dilated_conv_options(size) if dilated else {}
        for _ in range(STD_CONVS_PER_BLOCK):
            layers += conv_block(family, channels, width, 3, True, **options)
            channels = width
        layers += downsample(family, width, 2 * width, False, downsampling)
        width, channels, size = 2 * width, 2 * width, size // 2
    require(num_classes <= width, f"aol-std ends with {width} channels, < {num_classes} classes")
    layers += conv_block(family, width, width, 1, False)
    layers += [FirstChannels(num_classes), nn.Flatten()]
    return nn.Sequential(*layers)


ALT_IMAGE_SIZE = 32
ALT_STAGES = ((16, 3), (64, 3), (256, 3), (1024, 1))  # (channels, kernel), paper Table 9
ALT_CONVS_PER_STAGE = 4
ALT_KEPT_CHANNELS = 256


def aol_alt(
    family: LayerFamily, num_classes, in_channels, image_size,
    downsampling: str = "pooling", name: str = "aol-alt",
):  # fmt: skip
    """AOL-ALT: quadruple the channels at each downsampling up to 1024 (paper Table 9).

    Follows the paper's table; each "conv 2x2 stride 2" is, with ``pooling``, built like
    the released code (``convolutional.py``): ConcatenationPooling(2) + conv 1x1 +
    activation, with ``strided`` the paper's conv 2x2 stride 2 + activation.
    Stages (channels, kernel) (16, 3x3), (64, 3x3), (256, 3x3), (1024, 1x1), each
    with 4 [conv, activation]; then conv 1x1 (no activation), FirstChannels(256) at
    2x2, downsampling to 1024 + activation, 4 [conv 1x1 1024, activation], conv 1x1 (no
    activation), FirstChannels(num_classes), Flatten. Defined for 32x32 inputs only.
    """
    require_channel_changes(family, name, "the convs that quadruple the channels")
    require(
        image_size == ALT_IMAGE_SIZE,
        f"aol-alt is defined for {ALT_IMAGE_SIZE}x{ALT_IMAGE_SIZE} inputs, got {image_size}",
    )
    layers: list[nn.Module] = []
    channels = in_channels
    for width, kernel in ALT_STAGES:
        layers += downsample(family, channels, width, True, downsampling)
        for _ in range(ALT_CONVS_PER_STAGE):
            layers += conv_block(family, width, width, kernel, True)
        channels = width
    layers += conv_block(family, channels, channels, 1, False)
    layers.append(FirstChannels(ALT_KEPT_CHANNELS))
    layers += downsample(family, ALT_KEPT_CHANNELS, channels, True, downsampling)
    for _ in range(ALT_CONVS_PER_STAGE):
        layers += conv_block(family, channels, channels, 1, True)
    layers += conv_block(family, channels, channels, 1, False)
    require(num_classes <= channels, f"aol-alt has {channels} outputs, < {num_classes} classes")
    layers += [FirstChannels(num_classes), nn.Flatten()]
    return nn.Sequential(*layers)
