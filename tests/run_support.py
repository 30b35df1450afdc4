"""Helpers for the tests that kill a training run (``python -m aol train``) and resume it."""

import signal
import subprocess
import time

import torch


def saved_epoch(out):
    """The epoch of the run's checkpoint, -1 when there is none yet."""
    if not (out / "checkpoint.pt").exists():
        return -1
    return torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]


def kill_after_checkpoint(command: list[str], out, epoch: int) -> None:
    """Start the run ``command`` (writing to ``out``), SIGKILL it as soon as its checkpoint is of
    ``epoch`` or later (a run saves one of epoch 0 at its start), within 120 s, and check that
    it had not finished."""
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while saved_epoch(out) < epoch:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "result.json").exists(), "the run finished before the kill"
