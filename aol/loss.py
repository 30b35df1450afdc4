"""Offset cross-entropy (AOL paper eq. 10).

As in berndprach/AOL@562bddf ``metrics/offset_xent_from_scores.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: Paper defaults (Sec. 6): u = sqrt(2) aims at certified robustness at eps = 1,
#: t = 1/4 keeps the gradient magnitude near 1 while the margin is below 1/2.
PAPER_OFFSET = math.sqrt(2)
PAPER_TEMPERATURE = 0.25


class OffsetCrossEntropy(nn.Module):
    """``t * CE((s - u * onehot(y)) / t, y)``, mean over the batch."""

    def __init__(self, offset: float = PAPER_OFFSET, temperature: float = PAPER_TEMPERATURE):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.offset = offset
        self.temperature = temperature

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # scatter, not F.one_hot: one_hot checks the label range on the host (a GPU sync)
        offsets = torch.zeros_like(scores).scatter_(1, labels[:, None], self.offset)
        shifted = scores - offsets
        return self.temperature * F.cross_entropy(shifted / self.temperature, labels)

    def extra_repr(self) -> str:
        return f"offset={self.offset:g}, temperature={self.temperature:g}"
