"""Guaranteed upper bounds on the l2 operator norm of a convolution, for any input size.

All bounds here hold for the convolution on the infinite grid, whose norm is
``sup_w ||K^(w)||_2`` over *all* frequencies ``w`` (``K^`` is the kernel's
matrix-valued Fourier transform). That operator norm bounds both paddings at
every input size:

* zero padding on ``n x n`` is (crop) . (infinite conv) . (embed), so its norm
  is no larger;
* circular padding on ``n x n`` is block-diagonalised by the DFT (Sedghi, Gupta
  & Long, ICLR 2019): its norm is the largest ``||K^(w)||_2`` over the ``n x n``
  grid of frequencies, a subset of all frequencies.

Two bounds:

``gram_row_sum_bound`` (cheap, differentiable, loose by ~1.5-3x on random
kernels): ``||A||^2 = ||A^T A||`` and the symmetric operator ``A^T A`` is a
convolution whose kernel is the kernel's self-correlation ``H``; the Schur test
bounds its norm by its largest absolute row sum. This is AOL's Lemma 2 bound
and the Gram iteration of Delattre, Barthelemy & Allauzen (arXiv 2402.00240)
with one step; ``iterations > 1`` repeats the squaring (tighter, dearer).

``frequency_norm_bound`` (tight, ~1%; for certification, not per step): the
exact ``||K^(w)||_2`` on an ``N1 x N2`` grid (SVDs in float64), enlarged by a
factor that covers the frequencies between grid points. Derivation: let the
supremum ``M`` be attained at ``w*`` with unit vectors ``u, v``; then
``q(w) = |u^H K^(w) v|^2`` is a real trigonometric polynomial of degree
``m_i = k_i - 1`` in axis ``i``, ``q <= M^2``, ``q(w*) = M^2`` and ``grad q(w*) = 0``.
Bernstein's inequality bounds its second derivatives by
``|d_i d_j q| <= m_i m_j M^2``, so at the nearest grid point (``|dw_i| <= pi / N_i``)
Taylor's theorem gives ``q >= M^2 (1 - (pi (m1/N1 + m2/N2))^2 / 2)``. Hence

    M <= max_grid ||K^(w)||_2 / sqrt(1 - (pi (m1/N1 + m2/N2))^2 / 2).

With ``N_i = 32 m_i`` the factor is 1.0098.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Relative allowance for float64 rounding in the SVDs and sums of a bound (their
#: backward errors are ~1e-15 relative for the sizes used here).
FLOAT64_SLACK = 1e-9

#: Grid points per unit of trigonometric degree in ``frequency_norm_bound``.
GRID_PER_DEGREE = 32


def correlation_gram_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """Kernel ``H[a, b, e]`` of ``A^T A`` for the cross-correlation ``A`` with ``kernel``.

    ``H[a, b, e] = sum_{o, d} K[o, a, d] K[o, b, d + e]``, offsets ``e`` from
    ``-(k - 1)`` to ``k - 1``; shape ``[c_in, c_in, 2 k1 - 1, 2 k2 - 1]``.
    """
    k1, k2 = kernel.shape[2:]
    if (k1, k2) == (1, 1):  # a matrix: H = K^T K, one matmul instead of a 1x1 "convolution"
        matrix = kernel[:, :, 0, 0]
        return (matrix.T @ matrix)[:, :, None, None]
    transposed = kernel.transpose(0, 1)
    return F.conv2d(transposed, transposed, padding=(k1 - 1, k2 - 1)).transpose(0, 1)


def gram_row_sum_bound(kernel: torch.Tensor, iterations: int = 1) -> torch.Tensor:
    """Differentiable upper bound on ``||conv(kernel)||_2`` (any padding, any size).

    ``kernel`` is ``[c_out, c_in, k1, k2]`` (a matrix ``[out, in]`` is a 1x1 kernel).
    After ``t`` squarings ``G_t = (A^T A)^(2^(t-1))`` and
    ``||A|| = ||G_t||^(1 / 2^t) <= (max absolute row sum of G_t)^(1 / 2^t)``
    (Schur test; Delattre et al. 2024, Gram iteration on the kernel). The
    iterate is renormalised by its Frobenius norm each step to avoid overflow.
    """
    if kernel.dim() == 2:
        kernel = kernel[:, :, None, None]
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    log_scale = kernel.new_zeros(())
    iterate = kernel
    for step in range(iterations):
        norm = iterate.norm().clamp_min(torch.finfo(kernel.dtype).tiny)
        iterate = correlation_gram_kernel(iterate / norm)
        log_scale = log_scale + norm.log() / 2**step
    row_sums = iterate.abs().sum(dim=(1, 2, 3))
    log_row = row_sums.max().clamp_min(torch.finfo(kernel.dtype).tiny).log()
    return torch.exp(log_scale + log_row / 2**iterations)


def frequency_norm_bound(kernel: torch.Tensor) -> float:
    """Tight guaranteed bound on ``||conv(kernel)||_2`` for every padding and size (float64).

    Exact per-frequency norms on a ``32 (k1 - 1) x 32 (k2 - 1)`` grid times the
    Bernstein factor of the module docstring, plus ``FLOAT64_SLACK``.
    """
    with torch.no_grad():
        if kernel.dim() == 2:
            kernel = kernel[:, :, None, None]
        kernel = kernel.detach().to(torch.float64)
        k1, k2 = kernel.shape[2:]
        degrees = (k1 - 1, k2 - 1)
        grid = tuple(max(1, GRID_PER_DEGREE * degree) for degree in degrees)
        spectrum = torch.fft.rfft2(kernel, s=grid).permute(2, 3, 0, 1)
        # ||K^(w)||^2 = lambda_max of the smaller Gram matrix: a Hermitian eigensolver is ~1.7x
        # faster than the SVD. Forming the Gram in float64 errs by at most ~c^2 u ||K^(w)||^2
        # (c channels, u = 2^-53; Higham 2002, Sec. 3.5), the eigensolver by ~c u: 3e-11
        # relative at c = 512, within FLOAT64_SLACK
        if spectrum.shape[-2] <= spectrum.shape[-1]:
            gram = spectrum @ spectrum.mH
        else:
            gram = spectrum.mH @ spectrum
        largest = torch.linalg.eigvalsh(gram)[..., -1].max().clamp_min(0)
        grid_max = largest.sqrt().item()
        spacing = math.pi * sum(degree / size for degree, size in zip(degrees, grid, strict=True))
        factor = 1.0 / math.sqrt(1.0 - spacing**2 / 2.0)
        return grid_max * factor * (1.0 + FLOAT64_SLACK)


def exponential_tail(rho: float, terms: int) -> float:
    """``sum_{i > terms} rho^i / i!`` (= ``exp(rho)`` minus its degree-``terms`` Taylor sum).

    Summed term by term (all terms positive, no cancellation), stopping when
    the next term can no longer change the sum in float64; then rounded up.
    """
    if rho < 0 or terms < 0:
        raise ValueError(f"need rho >= 0 and terms >= 0, got {rho}, {terms}")
    term = 1.0
    for index in range(1, terms + 2):
        term *= rho / index
    total = 0.0
    index = terms + 1
    while term > 0 and term > total * 1e-17:
        total += term
        index += 1
        term *= rho / index
        if index > terms + 1000:  # rho is O(1) in use; no finite answer we can vouch for
            return math.inf
    return total * (1.0 + 1e-12)
