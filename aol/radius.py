"""Certificate radii: one type, parsed once at the edges, one text form in every output.

A radius is an l2 distance in the [0, 1] pixel scale. ``Radius.parse`` accepts
``"36/255"``, ``"0.1411"``, ``1`` or ``0.5``; ``str(radius)`` is its one canonical text,
used for every JSON key, CSV column and label:

* ``"1"`` (any whole number) for whole numbers,
* ``"36/255"`` when the radius is exactly the float nearest to k/255 (the papers' radii),
* otherwise the shortest decimal that reads back as the same float (``"0.5"``).

``Radius.parse(str(radius)) == radius`` for every radius, and ``float(radius)`` is the
float the certificate uses (for ``"36/255"`` the same float as ``36 / 255``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["PAPER_RADII", "Radius"]

#: Radii at or above this print as a decimal (no 16-digit integers or numerators).
_LARGEST_EXACT = 2.0**53


@dataclass(frozen=True, order=True)
class Radius:
    """A positive, finite l2 certificate radius; ``value`` is the float the certificate uses."""

    value: float

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise ValueError(f"a radius is a number, got {self.value!r}")
        if not math.isfinite(self.value) or self.value <= 0:
            raise ValueError(f"a radius must be positive and finite, got {self.value!r}")
        object.__setattr__(self, "value", float(self.value))

    @classmethod
    def parse(cls, given: str | int | float | Radius) -> Radius:
        """``"36/255"``, ``"0.1411"``, ``"1"``, ``1``, ``0.5`` or a Radius -> a Radius.

        Text is read exactly (as a fraction) and then rounded once to the nearest float;
        ValueError when it is not a positive finite number."""
        if isinstance(given, Radius):
            return given
        if isinstance(given, str):
            try:
                return cls(float(Fraction(given.strip())))
            except (ValueError, ZeroDivisionError, OverflowError) as error:
                raise ValueError(
                    f"not a radius: {given!r} (write e.g. 36/255, 0.5 or 1; positive and finite)"
                ) from error
        return cls(given)

    def __str__(self) -> str:
        value = self.value
        if value < _LARGEST_EXACT:
            if value.is_integer():
                return str(int(value))
            multiple = round(value * 255)
            if multiple > 0 and float(Fraction(multiple, 255)) == value:
                return f"{multiple}/255"
        return repr(value)

    def __float__(self) -> float:
        return self.value


#: The radii the papers report (AOL paper Tables 3-4; 1LLC Table 2): 36/255, 72/255, 108/255, 1.
PAPER_RADII = tuple(Radius.parse(text) for text in ("36/255", "72/255", "108/255", "1"))
