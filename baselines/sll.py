"""``sll``: SDP-based Lipschitz Layers (Araujo, Havens, Delattre, Allauzen & Hu, ICLR 2023).

    h(x) = x - 2 W T^-1 relu(W^T x + b),   T = diag(t),   t_i = sum_j |W^T W|_ij q_j / q_i

with ``q > 0`` a trained vector (stored as ``log_q``, ``q = exp(log_q)``, as the authors'
dense layer does: araujoalexandre/Lipschitz-SLL-Networks@87865db ``core/models/layers.py``).
Here ``W^T x`` is the correlation ``A`` with ``weight`` (``[c, c, k, k]``, inner width ``c``
as in "1-Lipschitz Layers Compared", Prach et al., CVPR 2024) and ``W`` its adjoint; for a
convolution ``|W^T W|_ij`` sums the absolute Gram kernel of ``A A^T`` over all offsets.

Bound (``aol.nn.residual``): ``max(1, 2 rho - 1)`` with ``rho = max_i tau_i t_i`` computed in
float64 from the stored weights and the ``tau = 1 / t`` the forward uses; ``rho = 1`` in exact
arithmetic. The q-weighted Schur test bounds the convolution on the infinite grid, so it
holds at every input size, for zero and circular padding (the adjoint conv uses the same
padding). The authors' convolution applies ``q`` along one axis only, so there it cancels;
here ``q_j / q_i`` is applied, as in the paper and 1LLC's code.
"""

from __future__ import annotations

import torch
from torch import nn

from aol.families import LayerFamily
from aol.nn.residual import GradientStepConv2d, GradientStepLinear, init_bias_uniform

#: Smallest row sum divided by: a zero row of ``W^T`` has ``t_i = 0`` and no effect, and
#: a clamp only shrinks ``tau`` (the bound stays valid; 1LLC adds 1e-6 instead).
MIN_ROW_SUM = 1e-12


class _SLL:
    def _add_state(self, device, dtype) -> None:
        self.log_q = nn.Parameter(torch.zeros(self.weight.shape[0], device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        # The authors' initialisation (araujoalexandre/Lipschitz-SLL-Networks@87865db
        # core/models/layers.py): Xavier-normal weights, bias U(+-1/sqrt(fan_in)) and
        # q = exp(N(0, 1)). 1LLC (models/layers/lipschitz/sll.py@01e3f2a) draws q = |N(0, 1)|,
        # also random. A random q matters: with q = 1 the Schur test on a random kernel is
        # ~2x looser (||T^(1/2) A||^2 ~0.12 instead of ~0.25 for aol-digits' 3x3 convs), the
        # layers start nearer the identity, and aol-digits trained ~3x slower
        # (docs/families.md).
        nn.init.xavier_normal_(self.weight)
        init_bias_uniform(self)
        with torch.no_grad():
            self.log_q.normal_()

    def schur_weights(self) -> torch.Tensor:
        return self.log_q.exp()

    def step_sizes_from(self, row_sums: torch.Tensor) -> torch.Tensor:
        """``2 tau = 2 / t``."""
        return 2 / row_sums.clamp_min(MIN_ROW_SUM)


class SLLConv2d(_SLL, GradientStepConv2d):
    """SLL convolution, ``c -> c`` channels, zero (default, as 1LLC) or circular padding."""


class SLLLinear(_SLL, GradientStepLinear):
    """SLL dense layer, ``n -> n`` features."""


SLL = LayerFamily(
    name="sll",
    conv_factory=SLLConv2d,
    linear_factory=SLLLinear,
    description=(
        "SDP-based Lipschitz Layers (Araujo et al., ICLR 2023): x - 2 W T^-1 relu(W^T x + b), "
        "residual (in == out), bound max(1, 2 rho - 1) = 1"
    ),
    changes_channels=False,
    nonlinear=True,
)
