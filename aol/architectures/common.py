"""Small helpers shared by the architecture files."""

from __future__ import annotations

from torch import nn

from aol.families import LayerFamily


class ArchitectureShapeError(ValueError):
    """The architecture cannot take inputs of this shape or produce this many classes."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ArchitectureShapeError(message)


def conv(family: LayerFamily, in_channels: int, out_channels: int, kernel_size: int) -> nn.Module:
    """A stride-1 'same' convolution of ``family`` with the family's default padding."""
    return family.conv(
        in_channels, out_channels, kernel_size, padding_mode=family.default_padding_mode
    )


def conv_block(
    family: LayerFamily, in_channels: int, out_channels: int, kernel_size: int, activation: bool
) -> list[nn.Module]:
    layers = [conv(family, in_channels, out_channels, kernel_size)]
    if activation:
        layers.append(family.activation())
    return layers


def linear_block(
    family: LayerFamily, in_features: int, out_features: int, activation: bool
) -> list[nn.Module]:
    layers = [family.linear(in_features, out_features)]
    if activation:
        layers.append(family.activation())
    return layers


def power_of_two_exponent(value: int) -> int | None:
    """``k`` with ``2**k == value``, or None."""
    if value >= 1 and value & (value - 1) == 0:
        return value.bit_length() - 1
    return None
