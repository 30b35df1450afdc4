"""``cpl``: Convex Potential Layers (Meunier, Delattre, Araujo & Allauzen, ICML 2022).

    h(x) = x - (2 / U^2) W relu(W^T x + b)

a gradient step on a convex potential; 1-Lipschitz whenever ``U >= ||W||_2``. The authors'
code divides by a power-iteration estimate of ``||W||`` on a fixed 32x32 input
(MILES-PSL/Convex-Potential-Layer@c6dc197 ``layers.py``), which approaches the norm from
below and belongs to one input size: not a guaranteed bound. Here ``U^2`` is the Schur bound
``max_i sum_{j, offsets} |G_ij|`` on ``||A A^T||`` (``G`` the Gram kernel of the correlation
``A``; AOL's Theorem 1 with ``D = I``), computed differentiably in every training step: it
bounds the convolution on the infinite grid, so every input size and both paddings. The
stated bound is ``max(1, (2 / U^2) U64^2 - 1)`` with ``U64`` recomputed in float64 from the
stored weights (1 up to rounding). The cost: the step is ``2 / U^2 <= 2 / ||W||^2``, smaller
where the Schur bound is loose (this is SLL with one scalar ``tau``); per training step the
Gram kernel costs ``c^3 k^4`` multiply-adds instead of the authors' one
power-iteration step (``c^2 k^2 h w``).
"""

from __future__ import annotations

import torch
from torch import nn

from aol.families import LayerFamily
from aol.nn.residual import GradientStepConv2d, GradientStepLinear

#: Smallest ``U^2`` divided by (an all-zero weight has no effect whatever the step).
MIN_NORM_BOUND = 1e-12


class _CPL:
    def reset_parameters(self) -> None:
        # Xavier-normal weights, zero bias ("1-Lipschitz Layers Compared", App. H.3)
        nn.init.xavier_normal_(self.weight)
        with torch.no_grad():
            if self.bias is not None:
                self.bias.zero_()

    def step_sizes_from(self, row_sums: torch.Tensor) -> torch.Tensor:
        """One step ``2 / U^2`` for every inner channel, ``U^2`` the largest row sum."""
        return (2 / row_sums.max().clamp_min(MIN_NORM_BOUND)).expand_as(row_sums)


class CPLConv2d(_CPL, GradientStepConv2d):
    """CPL convolution, ``c -> c`` channels, zero (default, as 1LLC) or circular padding."""


class CPLLinear(_CPL, GradientStepLinear):
    """CPL dense layer, ``n -> n`` features."""


CPL = LayerFamily(
    name="cpl",
    conv_factory=CPLConv2d,
    linear_factory=CPLLinear,
    description=(
        "Convex Potential Layers (Meunier et al., ICML 2022): x - 2/U^2 W relu(W^T x + b), "
        "U^2 a guaranteed Schur bound on ||W||^2; residual (in == out), bound 1"
    ),
    changes_channels=False,
    nonlinear=True,
)
