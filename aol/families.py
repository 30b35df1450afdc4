"""Layer families and their registry (DESIGN.md, "The one abstraction").

A family is what differs between AOL, SOC, Cayley, ...: how to build a
1-Lipschitz convolution and dense layer (with the ``torch.nn`` signatures), which
activation goes between them, which paddings it supports, and whether its layers
state a guaranteed Lipschitz bound (``lipschitz_bound()``).

Families are found by name through the entry-point group ``aol.families``; a
separate package adds one with, in its ``pyproject.toml``::

    [project.entry-points."aol.families"]
    mylayer = "mypackage.module:MY_FAMILY"

``register()`` adds one for the running process only (tests, notebooks).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from torch import nn

from aol.nn.layers import AOLConv2d, AOLLinear
from aol.nn.modules import MaxMin

ENTRY_POINT_GROUP = "aol.families"


@dataclass(frozen=True)
class LayerFamily:
    """Everything an architecture needs to know about one kind of layer.

    ``conv(in_channels, out_channels, kernel_size, **options)`` and
    ``linear(in_features, out_features, **options)`` build layers; ``options``
    go to the layer's constructor (``padding_mode=...``, ``bias=...``, ...).
    When ``lipschitz`` is true (the default) every layer they build has
    ``lipschitz_bound()`` returning a guaranteed upper bound at its current weights.
    ``padding_modes`` lists the paddings the family supports, default first; it defaults
    to the conv class's own ``padding_modes`` (every ``aol.LipschitzConv2d`` has them).

    Two fields describe residual and nonlinear layers (SLL, CPL, sandwich layers); their
    defaults fit a family of linear layers of any shape, so such a family sets neither:

    * ``changes_channels``: its ``conv``/``linear`` can have ``in != out``. A residual layer
      ``x - f(x)`` cannot (False): architectures then widen with zero channels
      (``aol.architectures.common.ZeroChannelConcatenation``) and narrow with
      ``FirstChannels``, as "1-Lipschitz Layers Compared" (Prach et al., CVPR 2024) builds its
      ConvNet, or refuse with an error naming the family (AOL-Small/Medium/Large).
    * ``nonlinear``: its layers apply a nonlinearity inside (a ReLU in SLL and CPL). The
      conformance checks (``aol.testing``) then take the exact Jacobian at several random
      points. ``activation`` is still what goes *between* layers (MaxMin for SLL and CPL, as
      in 1LLC; ``nn.Identity`` for a family whose layers need nothing between them).
    """

    name: str
    conv_factory: Callable[..., nn.Module]
    linear_factory: Callable[..., nn.Module]
    description: str = ""
    activation: Callable[[], nn.Module] = MaxMin
    padding_modes: tuple[str, ...] | None = None
    lipschitz: bool = True
    changes_channels: bool = True
    nonlinear: bool = False

    def __post_init__(self) -> None:
        if self.padding_modes is None:
            modes = getattr(self.conv_factory, "padding_modes", None)
            if modes is None:
                raise TypeError(
                    f"family {self.name!r}: give padding_modes (its conv factory names none)"
                )
            object.__setattr__(self, "padding_modes", tuple(modes))

    def conv(self, in_channels: int, out_channels: int, kernel_size, **options) -> nn.Module:
        padding_mode = options.setdefault("padding_mode", self.padding_modes[0])
        if padding_mode not in self.padding_modes:
            raise ValueError(
                f"family {self.name!r} supports padding_mode in {self.padding_modes}, "
                f"got {padding_mode!r}"
            )
        return self.conv_factory(in_channels, out_channels, kernel_size, **options)

    def linear(self, in_features: int, out_features: int, **options) -> nn.Module:
        return self.linear_factory(in_features, out_features, **options)

    @property
    def default_padding_mode(self) -> str:
        return self.padding_modes[0]


AOL = LayerFamily(
    name="aol",
    conv_factory=AOLConv2d,
    linear_factory=AOLLinear,
    description="Almost-Orthogonal Layers (Prach & Lampert, ECCV 2022): P diag(d), bound 1",
)


class UnknownFamilyError(KeyError):
    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


_registered: dict[str, LayerFamily] = {}


@functools.cache
def _entry_point_families() -> dict[str, object]:
    return {point.name: point for point in entry_points(group=ENTRY_POINT_GROUP)}


def register(family: LayerFamily, replace: bool = False) -> LayerFamily:
    """Register ``family`` for this process (entry points are the persistent way)."""
    if not isinstance(family, LayerFamily):
        raise TypeError(f"expected a LayerFamily, got {type(family).__name__}")
    if not replace and family.name in names():
        raise ValueError(f"a family named {family.name!r} is already registered")
    _registered[family.name] = family
    return family


def unregister(name: str) -> None:
    """Forget a family added with ``register()``."""
    _registered.pop(name, None)


def names() -> list[str]:
    """Names of every registered family, sorted."""
    return sorted(set(_entry_point_families()) | set(_registered))


def get(name: str) -> LayerFamily:
    """The family registered as ``name``; an error listing the known names otherwise."""
    if name in _registered:
        return _registered[name]
    point = _entry_point_families().get(name)
    if point is None:
        raise UnknownFamilyError(
            f"unknown layer family {name!r}; registered families: {', '.join(names())}"
        )
    family = point.load()
    if not isinstance(family, LayerFamily) or family.name != name:
        raise TypeError(
            f"entry point {name!r} of group {ENTRY_POINT_GROUP!r} must name a LayerFamily "
            f"called {name!r}, got {family!r}"
        )
    return family
