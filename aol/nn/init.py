"""Initialisations of the AOL paper (paper Sec. 5 "Initialisation").

As in berndprach/AOL@562bddf ``layers/initializers/``.

The paper initialises every layer so that the AOL bound is tight at the start:
layers that keep their width get an identity Jacobian (Dirac kernel / identity
matrix), layers that widen get orthonormal columns (so ``P^T P = I`` and the
rescaling is the identity), and layers that narrow (the 1x1 conv after each
ConcatenationPooling of AOL-STD, 4c -> 2c) get repeated orthonormal columns
(``repeated_orthogonal``), so that again ``d = 1``. Biases start at zero.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Names accepted by the ``init`` argument of the AOL layers.
INIT_SCHEMES = ("paper", "identity", "orthogonal", "repeated_orthogonal", "random")


def check_init_scheme(init: str) -> str:
    if init not in INIT_SCHEMES:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INIT_SCHEMES)}")
    return init


def repeated_orthogonal_(weight: torch.Tensor) -> torch.Tensor:
    """Fill a ``[out, in]`` matrix with columns drawn from one orthonormal basis of
    ``R^out``, each basis vector used by ``count`` columns and scaled by
    ``count^(-1/2)``; ``out >= in`` gives plain orthonormal columns.

    Columns that share a basis vector are equal, all others are orthogonal, so every row
    of ``|P^T P|`` sums to exactly 1: the AOL factors are ``d = 1`` and ``P`` is its own
    rescaled weight. When ``in > out`` the basis vectors are assigned to the columns in a
    random order, each ``floor(in / out)`` or ``ceil(in / out)`` times, so ``P P^T = I``:
    every singular value is 1. (The released code's ``RepeatedOrthogonalInitializer``,
    berndprach/AOL@562bddf ``layers/initializers/repeated_orthogonal_initializer.py``,
    draws the basis vector of each column with replacement instead, which leaves about
    ``e^-2`` of the outputs at zero for ``in = 2 out``; its factors are 1 as well.)
    """
    out_features, in_features = weight.shape
    with torch.no_grad():
        if in_features <= out_features:
            return nn.init.orthogonal_(weight)
        basis = nn.init.orthogonal_(weight.new_empty(out_features, out_features))
        order = torch.randperm(in_features, device=weight.device)
        assigned = (
            torch.arange(in_features, device=weight.device)[order] % out_features
        )  # column -> basis vector
        # basis vector j is used by in // out columns, one more when j < in % out
        counts = in_features // out_features + (assigned < in_features % out_features).to(
            weight.dtype
        )
        weight.copy_(basis[:, assigned] * counts.rsqrt())
    return weight


def initialise_matrix(weight: torch.Tensor, init: str) -> None:
    """Initialise a ``[out, in]`` matrix in place.

    ``paper`` is ``identity`` for square matrices and ``repeated_orthogonal``
    otherwise: orthonormal columns when ``out > in`` (an isometric embedding),
    repeated orthonormal columns when ``out < in`` (``repeated_orthogonal_``); both give
    ``d = 1``. ``orthogonal`` gives orthonormal columns when ``out >= in`` and
    orthonormal rows otherwise (then ``d < 1``).
    """
    out_features, in_features = weight.shape
    if init == "paper":
        init = "identity" if out_features == in_features else "repeated_orthogonal"
    with torch.no_grad():
        if init == "identity":
            nn.init.eye_(weight)
        elif init == "orthogonal":
            nn.init.orthogonal_(weight)
        elif init == "repeated_orthogonal":
            repeated_orthogonal_(weight)
        elif init == "random":
            # torch.nn.Linear's default
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        else:
            check_init_scheme(init)


def initialise_kernel(weight: torch.Tensor, init: str) -> None:
    """Initialise a ``[c_out, c_in, k1, k2]`` kernel in place.

    ``identity`` is the Dirac kernel (centre tap = identity, zeros elsewhere),
    ``orthogonal`` / ``repeated_orthogonal`` put that matrix (``initialise_matrix``) in
    the centre tap ``(k1 // 2, k2 // 2)``. ``paper`` picks ``identity`` for equal widths
    and ``repeated_orthogonal`` otherwise; with one non-zero tap the Lemma 2 factors are
    those of the centre matrix, so ``d = 1`` in every case.
    """
    c_out, c_in, k1, k2 = weight.shape
    if init == "paper":
        init = "identity" if c_out == c_in else "repeated_orthogonal"
    with torch.no_grad():
        if init == "random":
            # torch.nn.Conv2d's default
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            return
        check_init_scheme(init)
        weight.zero_()
        centre = torch.empty(c_out, c_in, dtype=weight.dtype, device=weight.device)
        initialise_matrix(centre, init)
        weight[:, :, k1 // 2, k2 // 2] = centre
