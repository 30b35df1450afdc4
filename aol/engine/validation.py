"""Checks of run settings that both the CLI (``aol.engine.commands``) and the pipeline
(``workflow/rules/common.smk``) make before any work: each is a plain function that raises
ValueError with one line. The other checks they share live beside what they check:
``aol.engine.recipes.Recipe.validate``, ``aol.radius.Radius.parse`` and
``aol.engine.runtime.resolve_device``.
"""

from __future__ import annotations

import torch

from aol import architectures, families
from aol.engine import data

#: Seeds fit a signed 64-bit integer: torch's generators take them (train seeds one with
#: seed + 1) and the pipeline's tables read them into int64 columns.
MAX_SEED = 2**63 - 1
#: torch.set_num_threads takes a C int; more threads than any CPU has only slow a run down.
MAX_THREADS = 1024


def _integer_in(value: int, what: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{what} must be {bounds}, got {value}")
    return value


def seed(value: int) -> int:
    return _integer_in(value, "seed", 0, MAX_SEED)


def threads(value: int) -> int:
    return _integer_in(value, "threads", 1, MAX_THREADS)


#: The attack audit's settings and their least values: 0 points skips the audit; each
#: attacked point needs at least one run of one step.
ATTACK_MINIMUMS = {"attack_points": 0, "attack_steps": 1, "attack_restarts": 1}


def attack_setting(name: str, value: int) -> int:
    """``name`` is a key of ATTACK_MINIMUMS (attack_points, attack_steps, attack_restarts)."""
    return _integer_in(value, name.replace("_", " "), ATTACK_MINIMUMS[name])


def model_fits_dataset(architecture: str, family: str, dataset: str) -> data.DatasetInfo:
    """Known names, and the architecture takes the dataset's images and gives one score per
    class (built and run on the meta device: no memory, no work)."""
    try:
        info = data.info(dataset)
        family_object = families.get(family)
        with torch.device("meta"):
            model = architectures.build(
                architecture, family_object, info.num_classes, info.channels, info.image_size
            )
            scores = model(torch.empty(2, info.channels, info.image_size, info.image_size))
    except (KeyError, RuntimeError) as error:
        raise ValueError(str(error.args[0]) if error.args else repr(error)) from error
    if tuple(scores.shape) != (2, info.num_classes):
        raise ValueError(
            f"{architecture} on {dataset} gives outputs of shape {tuple(scores.shape[1:])}, "
            f"expected ({info.num_classes},)"
        )
    return info
