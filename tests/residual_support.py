"""Independent helper for the residual families' tests (SLL, CPL): the Gram kernel of ``A A^T``
by loops over indices (no torch conv); the convolution's matrix is in ``convolution_support``."""

import numpy as np


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
