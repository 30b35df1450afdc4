"""``python -m aol train``: outputs, exact resume after a real kill, divergence, bad arguments."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from aol.__main__ import main

ARGS = ["--dataset", "digits", "--architecture", "aol-digits", "--family", "aol", "--seed", "3",
        "--device", "cpu", "--threads", "1"]  # fmt: skip


def command(out, *extra):
    return [sys.executable, "-m", "aol", "train", *ARGS, "--out", str(out), *extra]


def final_weights(out):
    return torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)["model"]


def test_resume_after_kill_gives_exactly_the_uninterrupted_weights(tmp_path):
    extra = ("--epochs", "6", "--batch-size", "300", "--checkpoint-every", "2")
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(command(interrupted, *extra), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (interrupted / "checkpoint.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (interrupted / "result.json").exists(), "the run finished before the kill"
    saved_epoch = torch.load(interrupted / "checkpoint.pt", weights_only=True)["epoch"]
    assert saved_epoch < 6

    subprocess.run(command(interrupted, *extra), check=True, capture_output=True)
    uninterrupted = tmp_path / "uninterrupted"
    subprocess.run(command(uninterrupted, *extra), check=True, capture_output=True)

    resumed, reference = final_weights(interrupted), final_weights(uninterrupted)
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[key], reference[key]) for key in reference)
    rows = [json.loads(line) for line in open(interrupted / "metrics.jsonl")]
    assert [row["epoch"] for row in rows] == list(range(1, 7))
    result = json.load(open(interrupted / "result.json"))
    assert result["status"] == "completed" and result["epochs_completed"] == 6


def test_outputs_follow_the_contract_and_rerun_is_a_no_op(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *ARGS, "--out", str(out), "--epochs", "2", "--batch-size", "300"]) == 0
    result = json.load(open(out / "result.json"))
    for key in ("status", "epochs_completed", "epochs", "dataset", "architecture", "family",
                "seed", "recipe", "hyperparameters", "test_accuracy", "test_certified_accuracy",
                "lipschitz_bound", "train_seconds", "seconds_per_epoch", "device", "device_name",
                "torch_version", "threads", "num_parameters"):  # fmt: skip
        assert key in result, key
    assert result["recipe"] == "digits" and result["hyperparameters"]["epochs"] == 2
    assert set(result["test_certified_accuracy"]) == {"36", "72", "108", "255"}
    assert result["lipschitz_bound"] == 1.0 and result["threads"] == 1
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [row["epoch"] for row in rows] == [1, 2]
    assert rows[-1]["test_accuracy"] == result["test_accuracy"]
    modified = os.path.getmtime(out / "result.json")
    assert main(["train", *ARGS, "--out", str(out), "--epochs", "2", "--batch-size", "300"]) == 0
    assert os.path.getmtime(out / "result.json") == modified
    # another configuration in the same folder is refused
    assert main(["train", *ARGS, "--out", str(out), "--epochs", "3", "--batch-size", "300"]) == 2


def test_divergence_is_a_result_not_a_crash(tmp_path):
    out = tmp_path / "run"
    code = main(["train", *ARGS, "--out", str(out), "--epochs", "3", "--lr", "1e30",
                 "--augment", "--batch-size", "300"])  # fmt: skip
    assert code == 0
    result = json.load(open(out / "result.json"))
    assert result["status"] == "diverged"
    assert result["diverged_at_epoch"] == 1 and result["epochs_completed"] == 0
    assert result["test_accuracy"] is None


@pytest.mark.parametrize(
    "change, message",
    [
        (["--family", "nope"], "unknown layer family"),
        (["--architecture", "nope"], "unknown architecture"),
        (["--dataset", "nope"], "unknown dataset"),
        (["--architecture", "aol-alt"], "32x32"),
        (["--lr", "-1"], "lr must be positive"),
        (["--device", "cuda:7"], "cuda"),
    ],
)
def test_bad_arguments_fail_before_any_work(tmp_path, capsys, change, message):
    out = tmp_path / "run"
    args = list(ARGS)
    flag, value = change
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    code = main(["train", *args, "--out", str(out)])
    error = capsys.readouterr().err
    assert code == 2 and message in error
    assert len(error.strip().splitlines()) == 1
    assert not out.exists()


def test_negative_epochs_are_an_argument_error(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *ARGS, "--out", str(tmp_path / "run"), "--epochs", "-5"])
    assert exit_info.value.code == 2
    assert not (tmp_path / "run").exists()


def test_compile_defaults_to_cuda_only():
    from aol.commands.train import resolve_compile

    assert resolve_compile("auto", torch.device("cuda")) is True
    assert resolve_compile("auto", torch.device("cpu")) is False
    assert resolve_compile("on", torch.device("cpu")) is True
    assert resolve_compile("off", torch.device("cuda")) is False
