"""Certificate radii: parsing ``36/255`` and the JSON keys ``"36"`` (radius in units of 1/255)."""

from __future__ import annotations

import math
from fractions import Fraction

from aol.certificate import PAPER_EPSILONS

__all__ = ["PAPER_EPSILONS", "epsilon_key", "parse_epsilon"]


def epsilon_key(epsilon: float) -> str:
    """The radius in units of 1/255, as ``f"{eps * 255:g}"``: 36/255 -> "36", 1 -> "255"."""
    return f"{epsilon * 255:g}"


def parse_epsilon(text: str) -> float:
    """``"36/255"``, ``"0.5"`` or ``"1"`` -> a positive finite float."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError) as error:
        raise ValueError(f"not a radius: {text!r} (write e.g. 36/255 or 0.5)") from error
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"a radius must be positive and finite, got {text!r}")
    return value
