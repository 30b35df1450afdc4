"""One training run's folder: its file names, its identity, and reading and writing its files.

A run folder (``python -m aol train --out RUN_DIR``) holds

* ``checkpoint.pt``: the latest checkpoint (``aol.engine.checkpoint``), with the run's identity;
* ``metrics.jsonl``: one JSON object per finished epoch;
* ``result.json``: written last, when the run has completed or diverged (the pipeline
  writes a failure record there instead when the run failed);
* ``.lock``: locked (``fcntl.flock``) by the process that trains in the folder, and
  holding its pid, host and command; a second process is refused (``RunLockedError``).

The identity of a run (dataset, architecture, family, seed, recipe and its
hyperparameters, training precision, training subset) is what makes two runs the same run: a
checkpoint is resumed and a finished result is reported only under the same identity. The
device, the compile option, the memory layout, the evaluation frequency and the monitoring
radii are not part of it. Identities saved before the precision existed read as ``fp32``,
those saved before the training subset existed as the whole training split (``null``).

Every problem with a folder or its files is a ``RunFolderError`` with a one-line message
(the commands report it with exit status 2). The promises are listed in docs/engine.md,
"Run folders: what the harness promises".
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import socket
import sys
import time
import zipfile
from dataclasses import dataclass

from torch import nn

from aol import architectures, families
from aol.engine import checkpoint, data
from aol.engine.runtime import (
    remove_orphaned_temporaries,
    write_atomically,
    write_json_atomically,
)
from aol.nn.modules import Centre

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
LOCK_FILE = ".lock"
IDENTITY_KEYS = (
    "dataset",
    "architecture",
    "family",
    "seed",
    "recipe",
    "hyperparameters",
    "precision",
    "train_subset",
)
#: identities saved before an entry existed are read with its value here
IDENTITY_DEFAULTS = {"precision": "fp32", "train_subset": None}
#: what ``torch.load`` raises on a truncated or garbled file
CORRUPT_CHECKPOINT_ERRORS = (
    RuntimeError,
    EOFError,
    ValueError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
)


class RunFolderError(ValueError):
    """A run folder, or one of its files, that cannot be used as it is."""


class RunMismatchError(RunFolderError):
    """The run folder holds a run with another identity."""


class RunNotReadyError(RunFolderError):
    """The run folder has no finished training run."""


class RunLockedError(RunFolderError):
    """Another process holds the lock of the run folder (or of an output file)."""


@contextlib.contextmanager
def exclusive_lock(lock_path: str | os.PathLike, subject: str):
    """Hold an exclusive ``fcntl.flock`` on ``lock_path`` (created if needed) while the
    block runs, with this process's pid, host and command written into it. The kernel
    releases the lock when the process ends, also when it is killed. RunLockedError,
    naming the holder, when another process holds it."""
    handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 4096, 0).decode(errors="replace")
            raise RunLockedError(
                f"{subject} is in use by {describe_holder(holder)}; "
                "wait for it to end or use another path"
            ) from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, (json.dumps(lock_holder()) + "\n").encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(handle, 0)
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)


def lock_holder() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(sys.argv),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def describe_holder(text: str) -> str:
    """One line naming the lock's holder from the lock file's text."""
    try:
        holder = json.loads(text)
        return (
            f"pid {holder['pid']} on {holder['host']} since {holder['since']} ({holder['command']})"
        )
    except (ValueError, TypeError, KeyError):
        return "another process"


def output_lock(path: str | os.PathLike):
    """The lock of an output file: ``.NAME.lock`` beside it (the folder is created)."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    return exclusive_lock(os.path.join(folder, f".{name}.lock"), os.fspath(path))


def nearest_existing(path: str | os.PathLike) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def check_can_create_in(folder: str | os.PathLike) -> None:
    """``folder`` is a writable folder or can be created as one."""
    existing = nearest_existing(folder)
    if not os.path.isdir(existing):
        raise RunFolderError(f"{existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunFolderError(f"cannot write in {existing} (permission denied)")


def check_run_folder_path(path: str | os.PathLike) -> None:
    """``path`` can be a run folder: a folder (or nothing yet) we may write in."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunFolderError(f"{path} is a file; a run folder must be a folder")
    check_can_create_in(path)


def check_output_file_path(path: str | os.PathLike) -> None:
    """``path`` can be written as a file: not a folder, and its folder writable."""
    if os.path.isdir(path):
        raise RunFolderError(
            f"{path} is a folder; give a file name, e.g. {os.path.join(path, 'certify.json')}"
        )
    check_can_create_in(os.path.dirname(os.path.abspath(path)))


def identity_difference(first: dict, second: dict) -> tuple[str, str]:
    """The identity entries where two identities differ (hyperparameters knob by knob),
    as text for each of them, e.g. ('family "aol", seed 0', 'family "soc", seed 1')."""

    def flat(identity: dict) -> dict:
        entries = {key: stored_identity_entry(identity, key) for key in IDENTITY_KEYS}
        knobs = entries.pop("hyperparameters")
        if not isinstance(knobs, dict):
            return {**entries, "hyperparameters": knobs}
        return {**entries, **{f"hyperparameters.{knob}": v for knob, v in knobs.items()}}

    first, second = flat(first), flat(second)
    keys = [key for key in {**first, **second} if first.get(key) != second.get(key)]

    def describe(entries: dict) -> str:
        return ", ".join(f"{key} {json.dumps(entries.get(key))}" for key in keys)

    return describe(first), describe(second)


def run_identity(
    dataset: str,
    architecture: str,
    family: str,
    seed: int,
    recipe: str,
    hyperparameters: dict,
    precision: str = "fp32",
    budget: dict | None = None,
    train_subset: int | None = None,
) -> dict:
    """What makes two runs the same run (a checkpoint must match it to be resumed). A run
    trained to a time budget also has its ``budget`` plan (aol.engine.budget.BudgetPlan):
    the budget, the calibrated epoch time and the planned epochs. ``train_subset``: the
    number of training images (aol.engine.data.subset_indices), None for all."""
    identity = {
        "dataset": dataset,
        "architecture": architecture,
        "family": family,
        "seed": seed,
        "recipe": recipe,
        "hyperparameters": hyperparameters,
        "precision": precision,
        "train_subset": train_subset,
    }
    if budget is not None:
        identity["budget"] = budget
    return identity


def stored_identity_entry(stored: dict, key: str):
    """An identity entry of a stored checkpoint or result (``IDENTITY_DEFAULTS`` if absent)."""
    return stored.get(key, IDENTITY_DEFAULTS.get(key))


def build_model(identity: dict) -> nn.Sequential:
    """The untrained network of a run identity (the architecture for the dataset's shape),
    after ``Centre(dataset mean)`` when the recipe centres inputs (then inputs, radii and
    certificates all stay in [0, 1] pixel space)."""
    info = data.info(identity["dataset"])
    model = architectures.build(
        identity["architecture"],
        families.get(identity["family"]),
        info.num_classes,
        info.channels,
        info.image_size,
    )
    if identity["hyperparameters"].get("centre_inputs", False):
        return nn.Sequential(Centre(info.channel_mean), *model)
    return model


@dataclass(frozen=True)
class RunFolder:
    """The files of one run folder; ``path`` is the folder as given (used in messages)."""

    path: str | os.PathLike

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def locked(self):
        """Context manager: the folder (created if needed) locked for this process
        (``exclusive_lock`` on its ``.lock``); RunLockedError when another holds it."""
        check_run_folder_path(self.path)
        os.makedirs(self.path, exist_ok=True)
        return exclusive_lock(self.file(LOCK_FILE), os.fspath(self.path))

    def remove_orphaned_temporaries(self) -> list[str]:
        """Delete what a killed atomic write of this folder's files left (under the lock)."""
        names = (CHECKPOINT_FILE, METRICS_FILE, RESULT_FILE)
        return remove_orphaned_temporaries(self.path, names)

    # ------------------------------------------------------------ result.json

    def has_result(self) -> bool:
        return os.path.exists(self.file(RESULT_FILE))

    def read_result(self) -> dict:
        """result.json as written (a run's result or the pipeline's failure record);
        RunNotReadyError when there is none, RunFolderError when it is not a JSON object."""
        if not self.has_result():
            raise RunNotReadyError(
                f"{self.path} has no {RESULT_FILE}: "
                f"train first (python -m aol train ... --out {self.path})"
            )
        try:
            with open(self.file(RESULT_FILE)) as stream:
                result = json.load(stream)
        except (ValueError, UnicodeDecodeError) as error:
            raise RunFolderError(
                f"{self.file(RESULT_FILE)} is not valid JSON ({error}); "
                "delete it to resume or redo the run"
            ) from None
        if not isinstance(result, dict) or "status" not in result:
            raise RunFolderError(
                f"{self.file(RESULT_FILE)} is not a run's result (no status); "
                "delete it to resume or redo the run"
            )
        return result

    def read_trained_result(self) -> dict:
        """The result of a run that completed or diverged, with its whole identity;
        RunNotReadyError for a failed run, RunFolderError for a malformed result."""
        result = self.read_result()
        if result["status"] == "failed":
            raise RunNotReadyError(f"{self.failure_description(result)}; nothing to certify")
        missing = [
            key for key in IDENTITY_KEYS if key not in result and key not in IDENTITY_DEFAULTS
        ]
        if result["status"] not in ("completed", "diverged") or missing:
            raise RunFolderError(
                f"{self.file(RESULT_FILE)} is not a finished run's result (status "
                f"{result['status']!r}, missing {', '.join(missing) or 'nothing'}); "
                "delete it and train again"
            )
        return result

    def failure_description(self, record: dict) -> str:
        """One line on the pipeline's failure record (workflow/scripts/guarded.py)."""
        details = [f"exit code {record['exit_code']}"] if "exit_code" in record else []
        if "reason" in record:
            details.append(str(record["reason"]))
        details.append(f"log: {record['log']}" if "log" in record else "log not recorded")
        return f"the run in {self.path} failed ({'; '.join(details)})"

    def finished_result(self, identity: dict) -> dict | None:
        """The result of the finished run with this identity, None when none has finished;
        RunMismatchError when the folder holds a finished run with another identity or the
        record of a failed run."""
        if not self.has_result():
            return None
        finished = self.read_result()
        if finished["status"] == "failed":
            raise RunMismatchError(
                f"{self.failure_description(finished)}; to retry, delete "
                f"{self.file(RESULT_FILE)} (resumes from its checkpoint) or the whole folder"
            )
        if all(stored_identity_entry(finished, key) == value for key, value in identity.items()):
            return finished
        raise RunMismatchError(f"{self.path} holds a finished run with another configuration")

    def write_result(self, result: dict) -> None:
        write_json_atomically(self.file(RESULT_FILE), result)

    # ---------------------------------------------------------- metrics.jsonl

    def has_metrics(self) -> bool:
        path = self.file(METRICS_FILE)
        return os.path.exists(path) and os.path.getsize(path) > 0

    def read_metrics(self, up_to_epoch: int | None = None) -> list[dict]:
        """The rows of metrics.jsonl (those of epochs <= ``up_to_epoch`` when given: the
        lines past the first ``up_to_epoch`` are not even parsed, as rows are appended one
        per epoch). An unparsable last line (a write cut short by a kill or a full disk)
        is left out; RunFolderError for any other unparsable line."""
        if not os.path.exists(self.file(METRICS_FILE)):
            return []
        with open(self.file(METRICS_FILE), errors="replace") as stream:
            lines = [line for line in stream if line.strip()]
        rows = []
        for number, line in enumerate(lines[:up_to_epoch], start=1):
            try:
                row = json.loads(line)
            except ValueError:
                if number == len(lines):  # torn last line
                    break
                raise RunFolderError(
                    f"{self.file(METRICS_FILE)}: line {number} is not JSON; "
                    "delete the folder to redo the run"
                ) from None
            if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
                raise RunFolderError(f"{self.file(METRICS_FILE)}: line {number} has no epoch")
            rows.append(row)
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
        RunMismatchError when the checkpoint belongs to another run; RunFolderError when
        the file is not a checkpoint (truncated, garbled)."""
        if not os.path.exists(self.file(CHECKPOINT_FILE)):
            return None
        try:
            saved = checkpoint.load(self.file(CHECKPOINT_FILE))
        except CORRUPT_CHECKPOINT_ERRORS as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise RunFolderError(
                f"{self.file(CHECKPOINT_FILE)} is not a readable checkpoint "
                f"({type(error).__name__}: {first_line}); delete it to redo the run"
            ) from None
        if not isinstance(saved, dict) or not {"identity", "epoch", "model"} <= saved.keys():
            raise RunFolderError(
                f"{self.file(CHECKPOINT_FILE)} is not a training checkpoint of this harness"
            )
        saved["identity"] = {**IDENTITY_DEFAULTS, **saved["identity"]}
        if identity is not None and saved["identity"] != identity:
            raise RunMismatchError(
                f"{self.path} holds another run ({json.dumps(saved['identity'])}); "
                "use another --out or delete that folder"
            )
        return saved

    def load_trained_checkpoint(self, result: dict) -> dict:
        """The checkpoint of the finished run ``result`` (``read_trained_result``);
        RunMismatchError, naming both, when the two files are of different runs."""
        saved = self.load_checkpoint()
        if saved is None:
            raise RunNotReadyError(
                f"{self.path} has a {RESULT_FILE} but no {CHECKPOINT_FILE}; train again"
            )
        if any(
            stored_identity_entry(saved["identity"], key) != stored_identity_entry(result, key)
            for key in IDENTITY_KEYS
        ):
            in_result, in_checkpoint = identity_difference(result, saved["identity"])
            raise RunMismatchError(
                f"{self.file(RESULT_FILE)} ({in_result}) and {self.file(CHECKPOINT_FILE)} "
                f"({in_checkpoint}) are of different runs; train again in a fresh folder"
            )
        return saved

    def check_resumable(self, saved: dict | None) -> None:
        """A folder with metrics but no checkpoint was not written by a run of this
        harness (a run saves its checkpoint before its first metrics): refuse it."""
        if saved is None and self.has_metrics():
            raise RunMismatchError(
                f"{self.path} holds {METRICS_FILE} but no {CHECKPOINT_FILE}, so it is not a "
                "run that can be resumed; use another --out or delete that folder"
            )

    def save_checkpoint(self, state: dict) -> None:
        checkpoint.save(self.file(CHECKPOINT_FILE), state)
