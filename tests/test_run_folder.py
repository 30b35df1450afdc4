"""Run folders nothing can corrupt: the lock, torn metrics lines, orphaned temporary files,
file modes, foreign or failed folders, unreadable files; each refused with one line, exit 2,
before any work."""

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from aol.engine import run_folder
from aol.engine.cli import main
from aol.engine.run_folder import RunFolder, RunFolderError, exclusive_lock, output_lock
from aol.engine.runtime import write_atomically, write_json_atomically

ARGS = ["--dataset", "digits", "--architecture", "aol-digits", "--seed", "0", "--device", "cpu",
        "--threads", "1", "--batch-size", "300"]  # fmt: skip
CERTIFY = ["--attack-points", "10", "--attack-steps", "5", "--attack-restarts", "1",
           "--audit-points", "1", "--audit-iterations", "10", "--device", "cpu"]  # fmt: skip
GUARDED = Path(__file__).parent.parent / "workflow" / "scripts" / "guarded.py"
TIMING_KEYS = {"epoch_seconds", "eval_seconds", "elapsed_seconds", "train_seconds",
               "train_step_seconds", "seconds_per_epoch"}  # fmt: skip


def train(out, family="aol", *extra):
    return main(["train", *ARGS, "--family", family, "--out", str(out), "--epochs", "1", *extra])


def certify(run, out):
    return main(["certify", "--run", str(run), "--out", str(out), *CERTIFY])


def one_line_error(capsys) -> str:
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    return error


def without_timings(entry: dict) -> dict:
    return {key: value for key, value in entry.items() if key not in TIMING_KEYS}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two finished one-epoch runs, aol and standard; tests work on copies."""
    threads = torch.get_num_threads()
    folder = tmp_path_factory.mktemp("trained")
    for family in ("aol", "standard"):
        assert train(folder / family, family) == 0
    yield folder
    torch.set_num_threads(threads)


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the finished aol run."""
    return shutil.copytree(trained / "aol", tmp_path / "run")


# ------------------------------------------------------------------------------- the lock


def lock_holder(out):
    try:
        return json.loads((out / ".lock").read_text())
    except (OSError, ValueError):
        return None


def test_a_second_train_on_a_locked_folder_exits_2_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    base = [sys.executable, "-m", "aol", "train", *ARGS, "--out", str(out)]
    first = subprocess.Popen([*base, "--family", "aol", "--epochs", "60"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while (lock_holder(out) or {}).get("pid") != first.pid:
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        # another family on the same folder: refused before any work, the first run untouched
        second = subprocess.run(
            [*base, "--family", "standard", "--epochs", "2"], capture_output=True, text=True
        )
        assert second.returncode == 2
        assert len(second.stderr.strip().splitlines()) == 1, second.stderr
        assert f"pid {first.pid} on " in second.stderr and "in use" in second.stderr
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    rows = RunFolder(out).read_metrics()
    assert [row["epoch"] for row in rows] == list(range(1, len(rows) + 1))
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert saved["identity"]["family"] == "aol"
    # the kernel released the killed holder's lock
    with exclusive_lock(out / ".lock", "the run"):
        assert lock_holder(out)["pid"] == os.getpid()


def test_a_locked_folder_names_its_holder_and_is_free_again_after_the_block(tmp_path):
    lock = tmp_path / ".lock"
    with exclusive_lock(lock, "the run"):
        with pytest.raises(run_folder.RunLockedError, match=f"pid {os.getpid()} on "):
            with exclusive_lock(lock, "the run"):
                pass
    with exclusive_lock(lock, "the run"):
        pass
    assert lock.read_text() == ""  # no stale holder once released


def test_certify_refuses_an_output_another_certify_is_writing(run, tmp_path, capsys):
    report = tmp_path / "certify.json"
    with output_lock(report):
        assert certify(run, report) == 2
        assert f"pid {os.getpid()}" in one_line_error(capsys)
    assert not report.exists()
    assert certify(run, report) == 0 and json.loads(report.read_text())["audits_passed"]


# ------------------------------------------------------------ torn lines, orphaned files


def test_a_torn_metrics_line_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    """A full disk cuts the append of epoch 3's row; the resumed run drops the torn line
    and ends exactly as an uninterrupted run (weights, metrics and result)."""
    extra = ("--epochs", "4", "--checkpoint-every", "2")
    append = RunFolder.append_metrics

    def append_until_the_disk_is_full(self, row):
        if row["epoch"] < 3:
            return append(self, row)
        with open(self.file("metrics.jsonl"), "a") as stream:
            stream.write(json.dumps(row)[:40])
        raise OSError(errno.ENOSPC, "No space left on device")

    interrupted, uninterrupted = tmp_path / "interrupted", tmp_path / "uninterrupted"
    monkeypatch.setattr(RunFolder, "append_metrics", append_until_the_disk_is_full)
    with pytest.raises(OSError, match="No space"):
        train(interrupted, "aol", *extra)
    monkeypatch.undo()
    assert len((interrupted / "metrics.jsonl").read_text().splitlines()) == 3
    assert [row["epoch"] for row in RunFolder(interrupted).read_metrics()] == [1, 2]
    # what a kill during write_atomically leaves behind
    orphans = [interrupted / ".tmp-checkpoint.pt.k1ll3d", interrupted / ".tmp-result.json.x"]
    for orphan in orphans:
        orphan.write_bytes(b"partial")

    assert train(interrupted, "aol", *extra) == 0
    assert train(uninterrupted, "aol", *extra) == 0
    assert not any(orphan.exists() for orphan in orphans)
    resumed = torch.load(interrupted / "checkpoint.pt", weights_only=True)["model"]
    reference = torch.load(uninterrupted / "checkpoint.pt", weights_only=True)["model"]
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[key], reference[key]) for key in reference)
    rows, reference_rows = (RunFolder(out).read_metrics() for out in (interrupted, uninterrupted))
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert list(map(without_timings, rows)) == list(map(without_timings, reference_rows))
    result, reference_result = (
        RunFolder(out).read_result() for out in (interrupted, uninterrupted)
    )
    assert without_timings(result) == without_timings(reference_result)


def test_a_torn_line_other_than_the_last_is_an_error(tmp_path):
    folder = RunFolder(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epo\n{"epoch": 3}\n')
    with pytest.raises(RunFolderError, match="line 2 is not JSON"):
        folder.read_metrics()
    # when resuming after epoch 1, the lines past it are not parsed
    assert folder.read_metrics(up_to_epoch=1) == [{"epoch": 1}]


# ---------------------------------------------------------------------------- file modes


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_get_the_mode_the_umask_gives(tmp_path, umask):
    previous = os.umask(umask)
    try:
        out = tmp_path / "fresh"
        assert train(out) == 0
        assert certify(out, out / "certify.json") in (0, 1)
        write_json_atomically(tmp_path / "other.json", {})
    finally:
        os.umask(previous)
    paths = [out / name for name in ("checkpoint.pt", "metrics.jsonl", "result.json")]
    for path in [*paths, out / "certify.json", tmp_path / "other.json"]:
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask, path


# ---------------------------------------------------------------- foreign or failed folders


def test_a_folder_with_metrics_but_no_checkpoint_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 0.5}\n')
    assert train(out) == 2
    assert "no checkpoint.pt" in one_line_error(capsys)
    assert (out / "metrics.jsonl").read_text() == '{"epoch": 1, "train_loss": 0.5}\n'


def test_a_failed_pipeline_run_says_so_and_how_to_retry(run, tmp_path, capsys):
    """The pipeline's guard records a crashed run as a failure record in result.json."""
    log = tmp_path / "logs" / "train.log"
    guard = [sys.executable, str(GUARDED), "--log", str(log), "--record", str(run / "result.json")]
    previous = os.umask(0o022)
    try:
        subprocess.run([*guard, "--", sys.executable, "-c", "raise SystemExit(1)"], check=True)
    finally:
        os.umask(previous)
    assert RunFolder(run).read_result()["status"] == "failed"
    assert os.stat(run / "result.json").st_mode & 0o777 == 0o644
    assert train(run) == 2
    error = one_line_error(capsys)
    assert "failed" in error and str(log) in error
    assert "delete" in error and "another configuration" not in error
    assert certify(run, run / "certify.json") == 2
    assert "failed" in one_line_error(capsys)
    # the retry it describes: delete the record, resume from the checkpoint
    os.remove(run / "result.json")
    assert train(run) == 0 and RunFolder(run).read_result()["status"] == "completed"


def test_certify_refuses_a_result_and_a_checkpoint_of_different_runs(trained, run, capsys):
    shutil.copy(trained / "standard" / "checkpoint.pt", run / "checkpoint.pt")
    assert certify(run, run / "certify.json") == 2
    error = one_line_error(capsys)
    assert 'family "aol"' in error and 'family "standard"' in error
    assert "result.json" in error and "checkpoint.pt" in error
    assert not (run / "certify.json").exists()


# ------------------------------------------------------ unwritable outputs, unreadable files


def test_outputs_that_cannot_be_written_are_refused_before_any_work(run, tmp_path, capsys,
                                                                    monkeypatch):  # fmt: skip
    from aol.engine.commands import certify as certify_command
    from aol.engine.commands import train as train_command

    def no_work(*arguments, **keywords):
        raise AssertionError("work started")

    monkeypatch.setattr(certify_command, "certify", no_work)
    monkeypatch.setattr(train_command, "train", no_work)
    assert certify(run, tmp_path) == 2
    assert "is a folder" in one_line_error(capsys)
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    assert train(a_file) == 2
    assert "is a file" in one_line_error(capsys)
    assert train(a_file / "run") == 2
    assert "is a file" in one_line_error(capsys)
    assert a_file.read_text() == "mine"


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def random_bytes(data: bytes) -> bytes:
    return random.Random(0).randbytes(len(data))


@pytest.mark.parametrize("corrupt", [truncated, random_bytes])
def test_an_unreadable_checkpoint_is_one_line_for_train_and_certify(run, capsys, corrupt):
    path = run / "checkpoint.pt"
    path.write_bytes(corrupt(path.read_bytes()))
    assert certify(run, run / "certify.json") == 2
    assert "checkpoint.pt is not a readable checkpoint" in one_line_error(capsys)
    os.remove(run / "result.json")  # train then resumes from the checkpoint
    assert train(run) == 2
    assert "checkpoint.pt is not a readable checkpoint" in one_line_error(capsys)


def test_certify_of_a_result_without_its_checkpoint_is_one_line(run, capsys):
    os.remove(run / "checkpoint.pt")
    assert certify(run, run / "certify.json") == 2
    assert "no checkpoint.pt" in one_line_error(capsys)
    assert not (run / "certify.json").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"status": "completed", "dataset"', "not valid JSON"),
        ('["completed"]', "no status"),
        ('{"status": "completed", "dataset": "digits"}', "missing architecture"),
    ],
)
def test_a_malformed_result_is_one_line_for_train_and_certify(run, capsys, text, message):
    (run / "result.json").write_text(text)
    assert certify(run, run / "certify.json") == 2
    assert message in one_line_error(capsys)
    assert train(run) == 2
    error = one_line_error(capsys)
    # train reads a result without the whole identity as another run's
    assert message in error or "another configuration" in error


def test_a_full_disk_during_an_atomic_write_keeps_the_old_file(tmp_path):
    """The write fails half way (ENOSPC): the old file is intact, no temporary file is left."""
    target = tmp_path / "result.json"
    write_json_atomically(target, {"status": "completed", "epochs": 3})

    def fill_the_disk(stream) -> None:
        stream.write('{"status": "comp')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomically(target, fill_the_disk)
    assert json.loads(target.read_text()) == {"status": "completed", "epochs": 3}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["result.json"]
