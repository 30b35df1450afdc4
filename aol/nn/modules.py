"""Parameter-free 1-Lipschitz building blocks used by the AOL architectures (paper Sec. 5).

As in berndprach/AOL@562bddf ``layers/basic/``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaxMin(nn.Module):
    """MaxMin activation (GroupSort with groups of 2) on **adjacent** channel pairs.

    Channels ``(2i, 2i+1)`` become ``(max, min)`` in place, as in the released AOL
    code. (SOC and Cayley pair the first half with the second half instead; the
    two differ only by a channel permutation.) Works on ``[N, C]`` and
    ``[N, C, H, W]``; ``C`` must be even. The map sorts each pair, so it is
    1-Lipschitz (it is piecewise a permutation).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if channels % 2:
            raise ValueError(f"MaxMin needs an even number of channels, got {channels}")
        pairs = x.reshape(x.shape[0], channels // 2, 2, *x.shape[2:])
        upper, lower = pairs.max(dim=2).values, pairs.min(dim=2).values
        return torch.stack((upper, lower), dim=2).reshape(x.shape)

    def lipschitz_bound(self) -> float:
        return 1.0


class ConcatenationPooling(nn.Module):
    """Space-to-depth: ``[N, C, H, W] -> [N, C f^2, H/f, W/f]`` (an orthogonal permutation).

    Uses ``torch.nn.functional.pixel_unshuffle``, whose output channel index is
    ``c f^2 + i f + j``. The released TF code orders them ``(i f + j) C + c``; the
    two differ by a permutation that the following learnable 1x1 convolution absorbs.
    """

    def __init__(self, factor: int) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"ConcatenationPooling factor must be >= 1, got {factor}")
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height % self.factor or width % self.factor:
            raise ValueError(
                f"ConcatenationPooling({self.factor}) needs height and width divisible by "
                f"{self.factor}, got {height}x{width}"
            )
        return F.pixel_unshuffle(x, self.factor)

    def lipschitz_bound(self) -> float:
        return 1.0

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class FirstChannels(nn.Module):
    """Keep the first ``n`` channels (dimension 1): a projection, hence 1-Lipschitz."""

    def __init__(self, n: int) -> None:
        super().__init__()
        if n < 1:
            raise ValueError(f"FirstChannels needs n >= 1, got {n}")
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] < self.n:
            raise ValueError(f"FirstChannels({self.n}) got only {x.shape[1]} channels")
        return x[:, : self.n]

    def lipschitz_bound(self) -> float:
        return 1.0

    def extra_repr(self) -> str:
        return f"n={self.n}"


class Centre(nn.Module):
    """Subtract a fixed per-channel mean: ``x - mean``. A translation, so the Lipschitz
    constant is 1 and a certificate of radius eps in the input space stays one; inputs stay
    in [0, 1] pixel space and the centring is part of the network ("1-Lipschitz Layers
    Compared", berndprach/1LipschitzLayersCompared@01e3f2a ``datasets/datasets_.py``:
    ``Normalize(mean, std=1)``)."""

    def __init__(self, mean) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x - self.mean.to(x.dtype).reshape(shape)

    def lipschitz_bound(self) -> float:
        return 1.0

    def extra_repr(self) -> str:
        return f"mean={[round(v, 4) for v in self.mean.tolist()]}"
