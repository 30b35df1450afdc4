"""Independent helpers for the residual families' tests (SLL, CPL): the explicit matrix of a
'same' convolution and the Gram kernel of ``A A^T``, by loops over indices (no torch conv)."""

import numpy as np


def convolution_matrix(kernel: np.ndarray, size: int, padding_mode: str) -> np.ndarray:
    """The matrix of ``x -> correlation(x, kernel)`` on ``c x size x size`` inputs, 'same'
    output (zero padding ``k // 2`` or circular); rows ``(o, y, x)``, columns ``(i, y', x')``."""
    c_out, c_in, k1, k2 = kernel.shape
    matrix = np.zeros((c_out, size, size, c_in, size, size))
    for o in range(c_out):
        for i in range(c_in):
            for y in range(size):
                for x in range(size):
                    for a in range(k1):
                        for b in range(k2):
                            source_y, source_x = y + a - k1 // 2, x + b - k2 // 2
                            if padding_mode == "circular":
                                source_y, source_x = source_y % size, source_x % size
                            elif not (0 <= source_y < size and 0 <= source_x < size):
                                continue
                            matrix[o, y, x, i, source_y, source_x] += kernel[o, i, a, b]
    return matrix.reshape(c_out * size * size, c_in * size * size)


def gram_row_sums(kernel: np.ndarray, q: np.ndarray | None = None) -> np.ndarray:
    """``t_i = sum_j sum_offsets |G_ij(e)| q_j / q_i`` with ``G_ij(e) = sum_{o, d}
    K[i, o, d] K[j, o, d + e]`` the kernel of ``A A^T`` (``A``: correlation with ``K``)."""
    inner, channels, k1, k2 = kernel.shape
    q = np.ones(inner) if q is None else q
    sums = np.zeros(inner)
    for i in range(inner):
        for j in range(inner):
            for e1 in range(-(k1 - 1), k1):
                for e2 in range(-(k2 - 1), k2):
                    value = 0.0
                    for a in range(k1):
                        for b in range(k2):
                            if 0 <= a + e1 < k1 and 0 <= b + e2 < k2:
                                value += kernel[i, :, a, b] @ kernel[j, :, a + e1, b + e2]
                    sums[i] += abs(value) * q[j] / q[i]
    return sums
