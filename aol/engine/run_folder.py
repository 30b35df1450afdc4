"""One training run's folder: its file names, its identity, and reading and writing its files.

A run folder (``python -m aol train --out RUN_DIR``) holds

* ``checkpoint.pt``: the latest checkpoint (``aol.engine.checkpoint``), with the run's identity;
* ``metrics.jsonl``: one JSON object per finished epoch;
* ``result.json``: written last, when the run has completed or diverged.

The identity of a run (dataset, architecture, family, seed, recipe and its
hyperparameters) is what makes two runs the same run: a checkpoint is resumed and a
finished result is reported only under the same identity. The device, the compile
option, the evaluation frequency and the monitoring radii are not part of it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from torch import nn

from aol import architectures, families
from aol.engine import checkpoint, data
from aol.engine.runtime import write_atomically, write_json_atomically

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"


class RunMismatchError(ValueError):
    """The run folder holds a run with another identity."""


class RunNotReadyError(ValueError):
    """The run folder has no finished training run."""


def run_identity(
    dataset: str, architecture: str, family: str, seed: int, recipe: str, hyperparameters: dict
) -> dict:
    """What makes two runs the same run (a checkpoint must match it to be resumed)."""
    return {
        "dataset": dataset,
        "architecture": architecture,
        "family": family,
        "seed": seed,
        "recipe": recipe,
        "hyperparameters": hyperparameters,
    }


def build_model(identity: dict) -> nn.Sequential:
    """The untrained network of a run identity (the architecture for the dataset's shape)."""
    info = data.info(identity["dataset"])
    return architectures.build(
        identity["architecture"],
        families.get(identity["family"]),
        info.num_classes,
        info.channels,
        info.image_size,
    )


@dataclass(frozen=True)
class RunFolder:
    """The files of one run folder; ``path`` is the folder as given (used in messages)."""

    path: str | os.PathLike

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    # ------------------------------------------------------------ result.json

    def has_result(self) -> bool:
        return os.path.exists(self.file(RESULT_FILE))

    def read_result(self) -> dict:
        """The finished run's result; RunNotReadyError when there is none."""
        if not self.has_result():
            raise RunNotReadyError(
                f"{self.path} has no {RESULT_FILE}: "
                f"train first (python -m aol train ... --out {self.path})"
            )
        with open(self.file(RESULT_FILE)) as stream:
            return json.load(stream)

    def finished_result(self, identity: dict) -> dict | None:
        """The result of the finished run with this identity, None when none has finished;
        RunMismatchError when the folder holds a finished run with another identity."""
        if not self.has_result():
            return None
        finished = self.read_result()
        if all(finished.get(key) == value for key, value in identity.items()):
            return finished
        raise RunMismatchError(f"{self.path} holds a finished run with another configuration")

    def write_result(self, result: dict) -> None:
        write_json_atomically(self.file(RESULT_FILE), result)

    # ---------------------------------------------------------- metrics.jsonl

    def read_metrics(self, up_to_epoch: int | None = None) -> list[dict]:
        """The rows of metrics.jsonl (those of epochs <= ``up_to_epoch`` when given)."""
        if not os.path.exists(self.file(METRICS_FILE)):
            return []
        with open(self.file(METRICS_FILE)) as stream:
            rows = [json.loads(line) for line in stream if line.strip()]
        if up_to_epoch is None:
            return rows
        return [row for row in rows if row["epoch"] <= up_to_epoch]

    def write_metrics(self, rows: list[dict]) -> None:
        write_atomically(
            self.file(METRICS_FILE),
            lambda stream: stream.writelines(json.dumps(row) + "\n" for row in rows),
        )

    def append_metrics(self, row: dict) -> None:
        with open(self.file(METRICS_FILE), "a") as stream:
            stream.write(json.dumps(row) + "\n")

    # ---------------------------------------------------------- checkpoint.pt

    def load_checkpoint(self, identity: dict | None = None) -> dict | None:
        """The saved checkpoint, None when there is none; with ``identity``,
        RunMismatchError when the checkpoint belongs to another run."""
        if not os.path.exists(self.file(CHECKPOINT_FILE)):
            return None
        saved = checkpoint.load(self.file(CHECKPOINT_FILE))
        if identity is not None and saved["identity"] != identity:
            raise RunMismatchError(
                f"{self.path} holds another run ({json.dumps(saved['identity'])}); "
                "use another --out or delete that folder"
            )
        return saved

    def save_checkpoint(self, state: dict) -> None:
        checkpoint.save(self.file(CHECKPOINT_FILE), state)
