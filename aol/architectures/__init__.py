"""Network architectures, looked up by name and built from any layer family.

    from aol import architectures
    model = architectures.build("aol-small", "aol", num_classes=10, in_channels=3, image_size=32)

Every architecture is an ``nn.Sequential`` of the family's layers and
parameter-free 1-Lipschitz blocks, so ``aol.network_lipschitz_bound(model)`` is
the product of the layers' guaranteed bounds. The family decides the layers,
the activation and the padding (``family.default_padding_mode``); nothing here
knows a family by name.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from aol import families
from aol.architectures import ablations, convnet, digits, patchwise
from aol.architectures.common import (
    ArchitectureShapeError,
    FamilyNotSupportedError,
    UnsupportedFamilyError,
    missing_features,
)

__all__ = [
    "ArchitectureShapeError",
    "FamilyNotSupportedError",
    "UnknownArchitectureError",
    "UnsupportedFamilyError",
    "build",
    "names",
    "requirements",
]

Builder = Callable[..., nn.Sequential]

_BUILDERS: dict[str, Builder] = {
    **{
        name: partial(patchwise.paper_patchwise, name=name, width=w)
        for name, w in patchwise.WIDTHS.items()
    },
    "aol-fc": ablations.aol_fc,
    "aol-std": ablations.aol_std,
    "aol-alt": ablations.aol_alt,
    "aol-dil": partial(ablations.aol_std, dilated=True, name="aol-dil"),
    "aol-std-strided": partial(ablations.aol_std, downsampling="strided", name="aol-std-strided"),
    "aol-alt-strided": partial(ablations.aol_alt, downsampling="strided", name="aol-alt-strided"),
    "aol-dil-strided": partial(
        ablations.aol_std, downsampling="strided", dilated=True, name="aol-dil-strided"
    ),
    **{name: partial(convnet.convnet, width=w) for name, w in convnet.WIDTHS.items()},
    **{
        f"{name}-padded": partial(convnet.padded_convnet, width=w)
        for name, w in convnet.WIDTHS.items()
    },
    "aol-digits": digits.aol_digits,
}


#: Convolution features an architecture needs from its family (``LipschitzConv2d``'s
#: ``supports_stride`` / ``supports_dilation``, or a padding mode); AOL has them all.
_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "aol-dil": ("dilation", "circular"),
    "aol-std-strided": ("stride",),
    "aol-alt-strided": ("stride",),
    "aol-dil-strided": ("stride", "dilation", "circular"),
}


def requirements(name: str) -> tuple[str, ...]:
    """The convolution features architecture ``name`` needs from its family."""
    _builder(name)
    return _REQUIREMENTS.get(name, ())


class UnknownArchitectureError(KeyError):
    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


def names() -> list[str]:
    """Names of every architecture, sorted."""
    return sorted(_BUILDERS)


def _builder(name: str) -> Builder:
    if name not in _BUILDERS:
        raise UnknownArchitectureError(
            f"unknown architecture {name!r}; known architectures: {', '.join(names())}"
        )
    return _BUILDERS[name]


def build(
    name: str,
    family: str | families.LayerFamily,
    num_classes: int,
    in_channels: int,
    image_size: int,
) -> nn.Sequential:
    """Build architecture ``name`` from ``family`` for ``in_channels x image_size x image_size``
    inputs and ``num_classes`` outputs.

    Raises ``UnknownArchitectureError`` / ``families.UnknownFamilyError`` for unknown
    names, ``FamilyNotSupportedError`` (before building anything) when the architecture
    needs layers the family cannot build (channel changes from a residual family),
    ``UnsupportedFamilyError`` when the family's convolution lacks a feature the
    architecture needs (``requirements(name)``) and ``ArchitectureShapeError`` when the
    architecture cannot take that input (use ``torch.device("meta")`` as a context
    manager to check this without memory).
    """
    builder = _builder(name)
    if isinstance(family, str):
        family = families.get(family)
    missing = missing_features(family, requirements(name))
    if missing:
        raise UnsupportedFamilyError(
            f"{name} needs a convolution with {', '.join(missing)}; "
            f"family {family.name!r} does not have it"
        )
    for label, value in (
        ("num_classes", num_classes),
        ("in_channels", in_channels),
        ("image_size", image_size),
    ):
        if not isinstance(value, int) or value < 1:
            raise ArchitectureShapeError(f"{name}: {label} must be a positive integer, got {value}")
    return builder(family, num_classes, in_channels, image_size)
