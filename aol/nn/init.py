"""Initialisations of the AOL paper (paper Sec. 5 "Initialisation").

As in berndprach/AOL@562bddf ``layers/initializers/``.

The paper initialises every layer so that the AOL bound is tight at the start:
layers that keep their width get an identity Jacobian (Dirac kernel / identity
matrix), layers that change width get orthonormal columns (so ``P^T P = I`` and
the rescaling is the identity). Biases start at zero.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Names accepted by the ``init`` argument of the AOL layers.
INIT_SCHEMES = ("paper", "identity", "orthogonal", "random")


def check_init_scheme(init: str) -> str:
    if init not in INIT_SCHEMES:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INIT_SCHEMES)}")
    return init


def initialise_matrix(weight: torch.Tensor, init: str) -> None:
    """Initialise a ``[out, in]`` matrix in place.

    ``paper`` is ``identity`` for square matrices and ``orthogonal`` otherwise.
    ``orthogonal`` gives orthonormal columns when ``out >= in`` (an isometric
    embedding) and orthonormal rows otherwise.
    """
    out_features, in_features = weight.shape
    if init == "paper":
        init = "identity" if out_features == in_features else "orthogonal"
    with torch.no_grad():
        if init == "identity":
            nn.init.eye_(weight)
        elif init == "orthogonal":
            nn.init.orthogonal_(weight)
        elif init == "random":
            # torch.nn.Linear's default
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        else:
            check_init_scheme(init)


def initialise_kernel(weight: torch.Tensor, init: str) -> None:
    """Initialise a ``[c_out, c_in, k1, k2]`` kernel in place.

    ``identity`` is the Dirac kernel (centre tap = identity, zeros elsewhere),
    ``orthogonal`` puts a random orthogonal matrix in the centre tap. ``paper``
    picks ``identity`` for equal widths and ``orthogonal`` otherwise.
    """
    c_out, c_in, k1, k2 = weight.shape
    if init == "paper":
        init = "identity" if c_out == c_in else "orthogonal"
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
