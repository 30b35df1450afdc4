"""Guaranteed Lipschitz bounds of whole networks, composed from their layers."""

from __future__ import annotations

from torch import nn

#: Parameter-free torch modules known to be 1-Lipschitz in l2.
ONE_LIPSCHITZ_TORCH_MODULES = (nn.Identity, nn.Flatten, nn.ReLU, nn.PixelUnshuffle)


def network_lipschitz_bound(module: nn.Module) -> float | None:
    """A guaranteed upper bound on the l2 Lipschitz constant of ``module``, or None.

    * a module with ``lipschitz_bound()`` states its own bound;
    * an ``nn.Sequential`` is a composition, so its bound is the product of its
      children's bounds (None as soon as one child has none);
    * a few parameter-free torch modules are 1-Lipschitz;
    * anything else (a plain ``nn.Conv2d``, a module with a custom ``forward``
      that may add branches) has no bound we can vouch for: None.
    """
    if hasattr(module, "lipschitz_bound"):
        return float(module.lipschitz_bound())
    if isinstance(module, nn.Sequential):
        bound = 1.0
        for child in module:
            child_bound = network_lipschitz_bound(child)
            if child_bound is None:
                return None
            bound *= child_bound
        return bound
    if isinstance(module, ONE_LIPSCHITZ_TORCH_MODULES):
        return 1.0
    return None
