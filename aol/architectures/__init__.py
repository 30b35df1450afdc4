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
from aol.architectures.common import ArchitectureShapeError

__all__ = ["ArchitectureShapeError", "UnknownArchitectureError", "build", "names"]

Builder = Callable[..., nn.Sequential]

_BUILDERS: dict[str, Builder] = {
    **{name: partial(patchwise.patchwise, width=w) for name, w in patchwise.WIDTHS.items()},
    "aol-fc": ablations.aol_fc,
    "aol-std": ablations.aol_std,
    "aol-alt": ablations.aol_alt,
    **{name: partial(convnet.convnet, width=w) for name, w in convnet.WIDTHS.items()},
    **{
        f"{name}-padded": partial(convnet.padded_convnet, width=w)
        for name, w in convnet.WIDTHS.items()
    },
    "aol-digits": digits.aol_digits,
}


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
    names and ``ArchitectureShapeError`` when the architecture cannot take that input
    (use ``torch.device("meta")`` as a context manager to check this without memory).
    """
    builder = _builder(name)
    if isinstance(family, str):
        family = families.get(family)
    for label, value in (
        ("num_classes", num_classes),
        ("in_channels", in_channels),
        ("image_size", image_size),
    ):
        if not isinstance(value, int) or value < 1:
            raise ArchitectureShapeError(f"{name}: {label} must be a positive integer, got {value}")
    return builder(family, num_classes, in_channels, image_size)
