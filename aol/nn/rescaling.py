"""The AOL rescaling factors (Prach & Lampert, ECCV 2022, Theorem 1 and Lemma 2).

Dense case (Theorem 1). For a weight ``P`` of shape ``[out, in]`` let

    d_i = (sum_j |P^T P|_ij + eps)^(-1/2).

Then ``||P diag(d)||_2 <= 1``. The factors scale the *input* columns of ``P``.

Convolution case (Lemma 2). For a kernel ``P`` of shape ``[c_out, c_in, k1, k2]``
the Jacobian ``J`` of the (maximally padded) convolution has ``J^T J`` whose
entries are the self-correlation of the kernel,

    V[a, b, p, q] = sum_o sum_{i,j} P[o, a, i, j] * P[o, b, i + p, j + q],

for offsets ``p in [-(k1-1), k1-1]``, ``q in [-(k2-1), k2-1]``, and the factors are

    d_a = (sum_{b, p, q} |V[a, b, p, q]| + eps)^(-1/2).

``eps = 1e-6`` sits inside the power, as in the released code
(berndprach/AOL@562bddf ``layers/aol/aol_rescale.py``).

Computing ``V`` with ``conv2d(P^T, P^T, padding=k-1)`` costs ``c^3 k^2 (2k-1)^2``
multiply-adds, most of them on zero padding. Here the Gram matrix of all kernel
taps, ``G = M^T M`` with ``M = P.reshape(c_out, c_in * k1 * k2)``, holds every
product ``P[:, a, i, j] . P[:, b, i', j']`` exactly once (``c^3 k^4`` multiply-adds,
one dense matmul); ``V`` is then the sum of ``G``'s entries that share the offset
``(i' - i, j' - j)``, done by one small matmul with a constant 0/1 matrix.
"""

from __future__ import annotations

import contextlib
import functools

import torch

#: Added to the row sums before the inverse square root
#: (berndprach/AOL@562bddf ``layers/aol/aol_rescale.py``).
AOL_EPSILON = 1e-6


@functools.lru_cache(maxsize=32)
def _offset_summation_matrix(
    k1: int, k2: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """0/1 matrix ``S`` of shape ``[(k1 k2)^2, (2 k1 - 1)(2 k2 - 1)]``.

    Row ``(t, t')`` (a pair of kernel taps ``t = (i, j)``, ``t' = (i', j')``) has a
    single 1 in the column of the offset ``(i' - i, j' - j)``.
    """
    i, j = torch.meshgrid(torch.arange(k1), torch.arange(k2), indexing="ij")
    i, j = i.reshape(-1), j.reshape(-1)
    row_offset = i[None, :] - i[:, None] + (k1 - 1)  # [taps, taps]
    col_offset = j[None, :] - j[:, None] + (k2 - 1)
    column = (row_offset * (2 * k2 - 1) + col_offset).reshape(-1)
    summation = torch.zeros(column.numel(), (2 * k1 - 1) * (2 * k2 - 1), dtype=dtype)
    summation[torch.arange(column.numel()), column] = 1.0
    return summation.to(device)


def conv_gram_blocks(weight: torch.Tensor) -> torch.Tensor:
    """``V[a, b, offset]`` of Lemma 2 for a kernel ``[c_out, c_in, k1, k2]``.

    Returns a tensor of shape ``[c_in, c_in, (2 k1 - 1) * (2 k2 - 1)]`` with offsets
    in row-major order of ``(p + k1 - 1, q + k2 - 1)``.
    """
    if weight.dim() != 4:
        raise ValueError(f"expected a [c_out, c_in, k1, k2] kernel, got {tuple(weight.shape)}")
    c_in = weight.shape[1]
    return _offset_sums(weight, 0, c_in, 0)


def _offset_sums(weight: torch.Tensor, start: int, stop: int, first_column: int) -> torch.Tensor:
    """``V[a, b, offset]`` for input channels ``start <= a < stop`` and ``b >= first_column``:
    one matmul of the Gram matrix's block row, then the 0/1 offset summation."""
    c_out, c_in, k1, k2 = weight.shape
    taps = k1 * k2
    columns = weight.reshape(c_out, c_in * taps)  # column index = a * taps + t
    gram = columns[:, start * taps : stop * taps].T @ columns[:, first_column * taps :]
    rows, cols = stop - start, c_in - first_column
    if taps == 1:
        return gram.reshape(rows, cols, 1)
    pairs = gram.reshape(rows, taps, cols, taps).permute(0, 2, 1, 3).reshape(rows * cols, -1)
    summation = _offset_summation_matrix(k1, k2, weight.device, weight.dtype)
    return (pairs @ summation).reshape(rows, cols, -1)


def gram_block_count(c_in: int, device: torch.device) -> int:
    """How many channel blocks the Gram matrix is cut into (``_GramRowSums``): on a CPU, 4
    for layers of 128+ input channels (10 of 16 block products: 0.63 of the multiply-adds);
    otherwise 1 (one product). On a GPU these matmuls take microseconds and each extra block
    costs kernel launches, which is what bounds a step there."""
    return 4 if device.type == "cpu" and c_in >= 128 else 1


class _GramRowSums(torch.autograd.Function):
    """``r_a = sum_{b, offset} |V[a, b, offset]|`` and ``sign(V)`` for a kernel ``[c_out, c_in,
    k1, k2]`` (a dense weight is the 1x1 case), using that ``V`` is symmetric:
    ``V[b, a, -offset] = V[a, b, offset]``.

    Forward: the input channels are cut into ``gram_block_count`` blocks and only the block
    rows on and right of the diagonal are multiplied (for 4 blocks, 10 of the 16 block
    products); an entry of a block right of the diagonal adds its ``|V|`` to the row sums
    of both ``a`` and ``b``. Backward: autograd would differentiate ``G = M^T M`` with two
    matmuls (one per operand); ``dL/dM = M (dG + dG^T)`` needs one, and the symmetric
    ``dG + dG^T`` is ``(g_a + g_b) sign(V[a, b, offset])`` spread over the tap pairs of each
    offset. (First-order gradients only.)
    """

    @staticmethod
    def forward(weight: torch.Tensor):
        c_in = weight.shape[1]
        offsets = (2 * weight.shape[2] - 1) * (2 * weight.shape[3] - 1)
        row_sums = weight.new_zeros(c_in)
        signs = weight.new_empty(c_in, c_in, offsets)
        count = min(gram_block_count(c_in, weight.device), c_in)
        if count == 1:
            blocks = _offset_sums(weight, 0, c_in, 0)
            return blocks.abs().sum(dim=(1, 2)), blocks.sign()
        bounds = [c_in * index // count for index in range(count + 1)]
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            blocks = _offset_sums(weight, start, stop, start)  # [stop - start, c_in - start, O]
            magnitudes = blocks.abs()
            row_sums[start:stop] += magnitudes.sum(dim=(1, 2))
            row_sums[stop:] += magnitudes[:, stop - start :].sum(dim=(0, 2))
            block_signs = blocks.sign()
            signs[start:stop, start:] = block_signs
            signs[stop:, start:stop] = block_signs[:, stop - start :].transpose(0, 1).flip(-1)
        return row_sums, signs

    @staticmethod
    def setup_context(ctx, inputs, output):
        (weight,) = inputs
        ctx.save_for_backward(weight, output[1])
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx, grad_row_sums, _grad_signs):
        weight, signs = ctx.saved_tensors
        c_out, c_in, k1, k2 = weight.shape
        taps = k1 * k2
        pair_weights = grad_row_sums[:, None] + grad_row_sums[None, :]
        grad_blocks = pair_weights[:, :, None] * signs  # (dG + dG^T) per offset
        if taps == 1:
            symmetric_grad_gram = grad_blocks.reshape(c_in, c_in)
        else:
            summation = _offset_summation_matrix(k1, k2, weight.device, weight.dtype)
            grad_pairs = grad_blocks.reshape(c_in * c_in, -1) @ summation.T
            symmetric_grad_gram = grad_pairs.reshape(c_in, c_in, taps, taps).permute(0, 2, 1, 3)
            symmetric_grad_gram = symmetric_grad_gram.reshape(c_in * taps, c_in * taps)
        columns = weight.reshape(c_out, c_in * taps)
        return (columns @ symmetric_grad_gram).reshape(weight.shape)


def linear_rescaling_factors(weight: torch.Tensor, eps: float = AOL_EPSILON) -> torch.Tensor:
    """Per-input-column factors ``d`` for a dense weight of shape ``[out, in]`` (Theorem 1)."""
    if weight.dim() != 2:
        raise ValueError(f"expected a [out, in] weight, got shape {tuple(weight.shape)}")
    return _factors(weight[:, :, None, None], eps)


def conv_rescaling_factors(weight: torch.Tensor, eps: float = AOL_EPSILON) -> torch.Tensor:
    """Per-input-channel factors ``d`` for a kernel ``[c_out, c_in, k1, k2]`` (Lemma 2)."""
    if weight.dim() != 4:
        raise ValueError(f"expected a [c_out, c_in, k1, k2] kernel, got {tuple(weight.shape)}")
    return _factors(weight, eps)


def _factors(weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``(r + eps)^(-1/2)`` computed with autocast off and in float32 at least: under bf16
    autocast the Gram matrix would otherwise be rounded to 8 significant bits. Returned in
    the weight's dtype (the layer multiplies them into the weight)."""
    precise = weight if weight.dtype in (torch.float32, torch.float64) else weight.float()
    device_type = weight.device.type
    autocast_on = device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type)
    with torch.autocast(device_type, enabled=False) if autocast_on else contextlib.nullcontext():
        row_sums, _ = _GramRowSums.apply(precise)
        return (row_sums + eps).rsqrt().to(weight.dtype)


def conv_rescaling_factors_by_self_convolution(
    weight: torch.Tensor, eps: float = AOL_EPSILON
) -> torch.Tensor:
    """The same factors computed as in the reference code (a full self-convolution).

    Slower; kept as an independent second computation for the tests.
    """
    k1, k2 = weight.shape[2:]
    transposed = weight.transpose(0, 1)  # [c_in, c_out, k1, k2]
    self_conv = torch.nn.functional.conv2d(transposed, transposed, padding=(k1 - 1, k2 - 1))
    return (self_conv.abs().sum(dim=(1, 2, 3)) + eps).rsqrt()
