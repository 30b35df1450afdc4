"""Independent helper for the tests of convolution families (LOT, SLL, CPL): the explicit
matrix of a 'same' convolution, by loops over indices (no torch conv)."""

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
