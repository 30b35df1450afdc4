"""Eval-mode caches of weight transforms (the Cayley, sandwich, LOT, BRO and BCOP layers).

A transform that depends only on the parameters (and, for the Fourier-domain layers, on the
input size) need not be recomputed in every eval-mode forward. ``VersionedCache`` keeps results
by key (an input size, or ``None``) while the tensors they were computed from are unchanged:
same storage, version counter, dtype, device and shape (every in-place change bumps the
version: optimiser steps, ``load_state_dict``, ``copy_``). ``EvalModeCache`` gives a layer one
such cache, used only in eval mode and dropped by ``train()`` / ``eval()``.
"""

from __future__ import annotations

import torch


class VersionedCache:
    """Results keyed by input size (or ``None``), valid while the given tensors are unchanged;
    computed without gradient."""

    def __init__(self) -> None:
        self.entries: dict = {}
        self.stamp = None

    @staticmethod
    def _stamp(tensors) -> tuple:
        return tuple((t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape)) for t in tensors)

    def get(self, key, tensors, compute):
        stamp = self._stamp(tensors)
        if stamp != self.stamp:
            self.entries.clear()
            self.stamp = stamp
        if key not in self.entries:
            with torch.no_grad():
                self.entries[key] = compute()
        return self.entries[key]

    def clear(self) -> None:
        self.entries.clear()
        self.stamp = None


class EvalModeCache:
    """Mixin for a constrained layer (before ``aol.LipschitzConv2d`` / ``LipschitzLinear`` in
    its bases): ``_cache``, a ``VersionedCache`` created with the layer's state, emptied by
    ``train()`` (and so ``eval()``); ``cached()`` reads it in eval mode only."""

    def _add_state(self, device, dtype) -> None:
        super()._add_state(device, dtype)
        self._cache = VersionedCache()

    def cached(self, key, tensors, compute) -> torch.Tensor:
        """``compute()`` while training (gradients flow), else its result for ``key`` computed
        once without gradient and reused while ``tensors`` are unchanged."""
        if self.training:
            return compute()
        return self._cache.get(key, tensors, compute)

    def train(self, mode: bool = True):
        self._cache.clear()
        return super().train(mode)
