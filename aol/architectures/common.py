"""Small helpers shared by the architecture files."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aol.families import LayerFamily
from aol.nn.modules import FirstChannels


class ArchitectureShapeError(ValueError):
    """The architecture cannot take inputs of this shape or produce this many classes."""


class FamilyNotSupportedError(ArchitectureShapeError):
    """The architecture cannot be built from this family (e.g. it needs channel changes)."""


def require_channel_changes(family: LayerFamily, architecture: str, example: str) -> None:
    """Refuse, before building anything, a family whose layers keep their channel count
    (``LayerFamily.changes_channels=False``) for an architecture that needs layers changing
    it; ``example`` names one such layer."""
    if not family.changes_channels:
        raise FamilyNotSupportedError(
            f"{architecture} cannot be built from family {family.name!r}: it needs layers "
            f"that change the number of channels ({example}), and {family.name!r} layers "
            f"keep it (residual layers, changes_channels=False); the ConvNets "
            f"(convnet-xs/s/m/l) and aol-digits build from every family"
        )


class ZeroChannelConcatenation(nn.Module):
    """Append zero channels (dim 1 of ``[N, C]`` or ``[N, C, H, W]``) up to ``channels``: an
    isometric embedding (1-Lipschitz)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        missing = self.channels - x.shape[1]
        if missing < 0:
            raise ValueError(f"ZeroChannelConcatenation({self.channels}) got {x.shape[1]} channels")
        return F.pad(x, [0, 0] * (x.dim() - 2) + [0, missing])

    def lipschitz_bound(self) -> float:
        return 1.0

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


def channel_changing_conv(
    family: LayerFamily, in_channels: int, out_channels: int, kernel_size: int
) -> list[nn.Module]:
    """A conv ``in_channels -> out_channels``; for a family whose layers keep the channel
    count, zero channels then a conv at ``out_channels`` (widening), or a conv at
    ``in_channels`` then ``FirstChannels`` (narrowing): 1LLC's ConvNet widens its input and
    narrows its head this way (berndprach/1LipschitzLayersCompared@01e3f2a
    ``models/simplified_conv_net.py``)."""
    if family.changes_channels or in_channels == out_channels:
        return [conv(family, in_channels, out_channels, kernel_size)]
    if in_channels < out_channels:
        widened = conv(family, out_channels, out_channels, kernel_size)
        return [ZeroChannelConcatenation(out_channels), widened]
    return [conv(family, in_channels, in_channels, kernel_size), FirstChannels(out_channels)]


def channel_changing_linear(
    family: LayerFamily, in_features: int, out_features: int
) -> list[nn.Module]:
    """``channel_changing_conv`` for dense layers (features are channels of a 1x1 image)."""
    if family.changes_channels or in_features == out_features:
        return [family.linear(in_features, out_features)]
    if in_features < out_features:
        return [ZeroChannelConcatenation(out_features), family.linear(out_features, out_features)]
    return [family.linear(in_features, in_features), FirstChannels(out_features)]


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
