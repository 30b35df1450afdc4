"""The common comparison network of "1-Lipschitz Layers Compared" (1LLC), ConvNet XS/S/M/L
(Prach et al., CVPR 2024, Sec. 4; code:
berndprach/1LipschitzLayersCompared@01e3f2a ``models/simplified_conv_net.py``).

    ZeroChannelConcatenation(w)                 pad the input channels with zeros to w
    conv 1x1 w -> w, activation
    per resolution s = image_size, ..., 2 (log2(image_size) "downsize blocks"):
        5 x [conv k x k t -> t, activation]     k = 3, or 1 in the block at 2x2
        FirstChannels(t / 2), PixelUnshuffle(2) -> s/2 x s/2 x 2t
    head: conv 1x1 (no activation), FirstChannels(num_classes), Flatten

w = 16 / 32 / 64 / 128; 1.57M / 6.28M / 25.12M / 100.46M parameters on CIFAR.

``convnet-xs-padded`` (and -s/-m/-l): the same network after ``ZeroPadToPowerOfTwo``,
for image sizes that are not powers of two (Fashion-MNIST's 28x28 becomes 32x32, the
CIFAR network exactly). Zero padding is an isometric embedding, so the certificate is
unchanged; the cost is (32/28)^2 = 1.31x a 28x28 network's.
1LLC's AdaptiveMaxPool2d(1) is the identity at 1x1 and is left out. Padding is
the family's default (1LLC used circular padding for AOL). Every conv keeps its channel
count, so the ConvNet builds from every family, residual ones (SLL, CPL) included: channels
change only by zero channels, FirstChannels and PixelUnshuffle, as in 1LLC.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aol.architectures.common import (
    ZeroChannelConcatenation,
    conv_block,
    power_of_two_exponent,
    require,
)
from aol.families import LayerFamily
from aol.nn.modules import ConcatenationPooling, FirstChannels

CONVS_PER_BLOCK = 5  # 1LLC nrof_layers_per_block


class ZeroPadToPowerOfTwo(nn.Module):
    """Zero-pad ``size x size`` images to the next power of two (centred; the odd pixel, if
    any, at the bottom/right): an isometric embedding (1-Lipschitz)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.padded_size = 1 << (size - 1).bit_length()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"ZeroPadToPowerOfTwo({self.size}) got {tuple(x.shape[-2:])} images")
        before = (self.padded_size - self.size) // 2
        after = self.padded_size - self.size - before
        return F.pad(x, (before, after, before, after))

    def lipschitz_bound(self) -> float:
        return 1.0

    def extra_repr(self) -> str:
        return f"size={self.size}, padded_size={self.padded_size}"


def padded_convnet(family: LayerFamily, num_classes, in_channels, image_size, width):
    """``ZeroPadToPowerOfTwo(image_size)`` then the ConvNet for the padded size."""
    pad = ZeroPadToPowerOfTwo(image_size)
    network = convnet(family, num_classes, in_channels, pad.padded_size, width)
    return nn.Sequential(pad, *network)


def convnet(family: LayerFamily, num_classes, in_channels, image_size, width) -> nn.Sequential:
    blocks = power_of_two_exponent(image_size)
    require(
        blocks is not None and blocks >= 1,
        f"the 1LLC ConvNet needs a power-of-two image size >= 2, got {image_size}",
    )
    require(
        in_channels <= width,
        f"the 1LLC ConvNet of width {width} cannot take {in_channels} input channels",
    )
    layers: list[nn.Module] = [ZeroChannelConcatenation(width)]
    layers += conv_block(family, width, width, 1, True)
    channels, size = width, image_size
    for _ in range(blocks):
        kernel = 3 if size > 2 else 1
        for _ in range(CONVS_PER_BLOCK):
            layers += conv_block(family, channels, channels, kernel, True)
        layers += [FirstChannels(channels // 2), ConcatenationPooling(2)]
        channels, size = channels * 2, size // 2
    require(num_classes <= channels, f"ConvNet has {channels} outputs, < {num_classes} classes")
    layers += conv_block(family, channels, channels, 1, False)
    layers += [FirstChannels(num_classes), nn.Flatten()]
    return nn.Sequential(*layers)


#: 1LLC's sizes: the width w of each ConvNet.
WIDTHS = {"convnet-xs": 16, "convnet-s": 32, "convnet-m": 64, "convnet-l": 128}
