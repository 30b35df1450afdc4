"""Atomic training checkpoints that load with ``torch.load(..., weights_only=True)``.

A checkpoint holds the model, the optimiser, the run's configuration, the epoch,
and every random state the rest of the run depends on (torch's global generator,
the data-order and augmentation generators, CUDA's when used). The learning-rate
schedule is a pure function of the epoch (``aol.engine.recipes.epoch_settings``), so the
epoch is its whole state. Files are written to a temporary name, flushed and
renamed, so a crash leaves either the old or the new checkpoint, never half of one.
Its place in a run folder is ``aol.engine.run_folder``.
"""

from __future__ import annotations

import os

import torch

from aol.engine.runtime import write_atomically


def save(path: str | os.PathLike, state: dict) -> None:
    write_atomically(path, lambda stream: torch.save(state, stream), binary=True)


def load(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load safely: tensors and plain Python containers only (no pickled code)."""
    return torch.load(os.fspath(path), map_location=map_location, weights_only=True)


def random_states(order: torch.Generator, augmentation: torch.Generator) -> dict:
    states = {
        "torch": torch.get_rng_state(),
        "order": order.get_state(),
        "augmentation": augmentation.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(
    states: dict, order: torch.Generator, augmentation: torch.Generator
) -> None:
    torch.set_rng_state(states["torch"])
    order.set_state(states["order"])
    augmentation.set_state(states["augmentation"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
