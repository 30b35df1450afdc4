"""Small helpers shared by the architecture files."""

from __future__ import annotations

from torch import nn

from aol.families import LayerFamily


class ArchitectureShapeError(ValueError):
    """The architecture cannot take inputs of this shape or produce this many classes."""


class UnsupportedFamilyError(ValueError):
    """The architecture needs a convolution feature (stride, dilation, a padding) that the
    family's convolution does not have."""


def missing_features(family: LayerFamily, features: tuple[str, ...]) -> list[str]:
    """Which of ``features`` (``"stride"``, ``"dilation"``, a padding mode) ``family``'s
    convolution lacks."""
    missing = []
    for feature in features:
        if feature in ("stride", "dilation"):
            supported = getattr(family.conv_factory, f"supports_{feature}", False)
        else:
            supported = feature in family.padding_modes
        if not supported:
            missing.append(feature)
    return missing


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ArchitectureShapeError(message)


def conv(
    family: LayerFamily, in_channels: int, out_channels: int, kernel_size: int, **options
) -> nn.Module:
    """A 'same' convolution of ``family``, by default stride 1 with the family's default
    padding; ``options`` (``stride``, ``dilation``, ``padding_mode``) go to the layer."""
    options.setdefault("padding_mode", family.default_padding_mode)
    return family.conv(in_channels, out_channels, kernel_size, **options)


def conv_block(
    family: LayerFamily,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    activation: bool,
    **options,
) -> list[nn.Module]:
    layers = [conv(family, in_channels, out_channels, kernel_size, **options)]
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
