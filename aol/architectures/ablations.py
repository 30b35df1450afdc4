"""The AOL paper's ablation architectures AOL-FC, AOL-STD and AOL-ALT (paper appendix
Tables 7-9, Table 6 results; berndprach/AOL@562bddf ``models/``).

Every "2x2 stride-2 convolution" of the paper is built as the released code
builds it: ConcatenationPooling(2) followed by a 1x1 convolution (AOL convolutions
have stride 1).
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


STD_FIRST_WIDTH = 32
STD_CONVS_PER_BLOCK = 4


def aol_std(family: LayerFamily, num_classes, in_channels, image_size):
    """AOL-STD: a standard CNN of AOL layers, halving resolution until 1x1 (paper Table 7).

    Follows the **released code** (``standard_convolutional.py``): a 1x1 stem
    conv to 32 channels with activation (not in the paper), then per block
    c = 32, 64, ...: [conv 3x3 c, activation] x 4, ConcatenationPooling(2) + conv
    1x1 to 2c without activation; then conv 1x1 (no activation),
    FirstChannels(num_classes), Flatten. On 32x32 inputs that is 5 blocks ending
    at 1x1x1024, as in the paper; other power-of-two sizes get log2(size) blocks.
    """
    require_channel_changes(family, "aol-std", f"the 1x1 stem conv to {STD_FIRST_WIDTH}")
    blocks = power_of_two_exponent(image_size)
    require(
        blocks is not None and blocks >= 1,
        f"aol-std needs a power-of-two image size >= 2, got {image_size}",
    )
    width = STD_FIRST_WIDTH
    layers: list[nn.Module] = conv_block(family, in_channels, width, 1, True)
    for _ in range(blocks):
        for _ in range(STD_CONVS_PER_BLOCK):
            layers += conv_block(family, width, width, 3, True)
        layers.append(ConcatenationPooling(2))
        layers += conv_block(family, 4 * width, 2 * width, 1, False)
        width *= 2
    require(num_classes <= width, f"aol-std ends with {width} channels, < {num_classes} classes")
    layers += conv_block(family, width, width, 1, False)
    layers += [FirstChannels(num_classes), nn.Flatten()]
    return nn.Sequential(*layers)


ALT_IMAGE_SIZE = 32
ALT_STAGES = ((16, 3), (64, 3), (256, 3), (1024, 1))  # (channels, kernel), paper Table 9
ALT_CONVS_PER_STAGE = 4
ALT_KEPT_CHANNELS = 256


def aol_alt(family: LayerFamily, num_classes, in_channels, image_size):
    """AOL-ALT: quadruple the channels at each downsampling up to 1024 (paper Table 9).

    Follows the paper's table, built like the released code (``convolutional.py``):
    each "conv 2x2 stride 2" is ConcatenationPooling(2) + conv 1x1 + activation.
    Stages (channels, kernel) (16, 3x3), (64, 3x3), (256, 3x3), (1024, 1x1), each
    with 4 [conv, activation]; then conv 1x1 (no activation), FirstChannels(256) at
    2x2, ConcatenationPooling(2) + conv 1x1 1024 + activation, 4 [conv 1x1 1024,
    activation], conv 1x1 (no activation), FirstChannels(num_classes), Flatten.
    Defined for 32x32 inputs only.
    """
    require_channel_changes(family, "aol-alt", "the 1x1 conv after each ConcatenationPooling")
    require(
        image_size == ALT_IMAGE_SIZE,
        f"aol-alt is defined for {ALT_IMAGE_SIZE}x{ALT_IMAGE_SIZE} inputs, got {image_size}",
    )
    layers: list[nn.Module] = []
    channels = in_channels
    for width, kernel in ALT_STAGES:
        layers.append(ConcatenationPooling(2))
        layers += conv_block(family, 4 * channels, width, 1, True)
        for _ in range(ALT_CONVS_PER_STAGE):
            layers += conv_block(family, width, width, kernel, True)
        channels = width
    layers += conv_block(family, channels, channels, 1, False)
    layers += [FirstChannels(ALT_KEPT_CHANNELS), ConcatenationPooling(2)]
    channels = 4 * ALT_KEPT_CHANNELS
    layers += conv_block(family, channels, channels, 1, True)
    for _ in range(ALT_CONVS_PER_STAGE):
        layers += conv_block(family, channels, channels, 1, True)
    layers += conv_block(family, channels, channels, 1, False)
    require(num_classes <= channels, f"aol-alt has {channels} outputs, < {num_classes} classes")
    layers += [FirstChannels(num_classes), nn.Flatten()]
    return nn.Sequential(*layers)
