"""``python -m aol train``: outputs, exact resume after a real kill, divergence, bad arguments."""

import json
import os
import subprocess
import sys

import pytest
import torch
from run_support import kill_after_checkpoint, saved_epoch

from aol.engine.cli import main

ARGS = ["--dataset", "digits", "--architecture", "aol-digits", "--family", "aol", "--seed", "3",
        "--device", "cpu", "--threads", "1"]  # fmt: skip


def command(out, *extra):
    return [sys.executable, "-m", "aol", "train", *ARGS, "--out", str(out), *extra]


def final_weights(out):
    return torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)["model"]


def test_resume_after_kill_gives_exactly_the_uninterrupted_weights(tmp_path):
    extra = ("--epochs", "6", "--batch-size", "300", "--checkpoint-every", "2")
    interrupted = tmp_path / "interrupted"
    kill_after_checkpoint(command(interrupted, *extra), interrupted, epoch=2)
    assert 2 <= saved_epoch(interrupted) < 6

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
    assert list(result["test_certified_accuracy"]) == ["36/255", "72/255", "108/255", "1"]
    assert result["lipschitz_bound"] == 1.0 and result["threads"] == 1
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [row["epoch"] for row in rows] == [1, 2]
    assert rows[-1]["test_accuracy"] == result["test_accuracy"]
    modified = os.path.getmtime(out / "result.json")
    assert main(["train", *ARGS, "--out", str(out), "--epochs", "2", "--batch-size", "300"]) == 0
    assert os.path.getmtime(out / "result.json") == modified
    # another configuration in the same folder is refused
    assert main(["train", *ARGS, "--out", str(out), "--epochs", "3", "--batch-size", "300"]) == 2


def test_monitoring_radii_are_not_part_of_the_run_identity(tmp_path, capsys):
    out, extra = tmp_path / "run", ["--epochs", "1", "--batch-size", "300"]
    assert main(["train", *ARGS, "--out", str(out), *extra, "--radii", "1", "0.5"]) == 0
    result = json.load(open(out / "result.json"))
    assert list(result["test_certified_accuracy"]) == ["1", "0.5"]
    assert "cert 1 " in capsys.readouterr().err
    weights = final_weights(out)
    # a finished run is reported, and an unfinished one resumed, whatever the radii
    assert main(["train", *ARGS, "--out", str(out), *extra, "--radii", "36/255"]) == 0
    os.remove(out / "result.json")
    assert main(["train", *ARGS, "--out", str(out), *extra, "--radii", "36/255"]) == 0
    assert "resuming" in capsys.readouterr().err
    resumed = json.load(open(out / "result.json"))
    assert resumed["status"] == "completed" and resumed["epochs_completed"] == 1
    assert all(torch.equal(weights[key], final_weights(out)[key]) for key in weights)


def test_eval_every_skips_test_metrics_between_evaluations_without_changing_training(tmp_path):
    extra = ["--epochs", "3", "--batch-size", "300"]
    sparse, dense = tmp_path / "sparse", tmp_path / "dense"
    assert main(["train", *ARGS, "--out", str(sparse), *extra, "--eval-every", "2"]) == 0
    assert main(["train", *ARGS, "--out", str(dense), *extra]) == 0
    rows = [json.loads(line) for line in open(sparse / "metrics.jsonl")]
    evaluated = [row["test_accuracy"] is not None for row in rows]
    assert evaluated == [False, True, True]  # every 2nd epoch and always the last
    assert rows[0]["test_certified_accuracy"] is None and rows[0]["train_loss"] > 0
    result = json.load(open(sparse / "result.json"))
    assert result["test_accuracy"] == rows[-1]["test_accuracy"]
    dense_rows = [json.loads(line) for line in open(dense / "metrics.jsonl")]
    assert all(row["test_accuracy"] is not None for row in dense_rows)
    assert dense_rows[-1]["test_accuracy"] == rows[-1]["test_accuracy"]
    sparse_weights, dense_weights = final_weights(sparse), final_weights(dense)
    assert all(torch.equal(sparse_weights[key], dense_weights[key]) for key in dense_weights)


def test_monitoring_bound_is_the_eval_mode_bound_of_the_exported_model():
    from aol import architectures, network_lipschitz_bound
    from aol.engine.train import eval_mode_lipschitz_bound

    # SOC sums 5 terms in training and 12 in eval/export: the eval-mode bound is the
    # one that belongs to the exported model, and it is the tighter one
    model = architectures.build("aol-digits", "soc", 10, 1, 8).double()
    train_bound = network_lipschitz_bound(model)
    bound = eval_mode_lipschitz_bound(model)
    assert model.training
    assert bound == network_lipschitz_bound(model.eval())
    assert 1.0 <= bound < train_bound


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
    from aol.engine.commands.common import resolve_compile

    assert resolve_compile("auto", torch.device("cuda")) is True
    assert resolve_compile("auto", torch.device("cpu")) is False
    assert resolve_compile("on", torch.device("cpu")) is True
    assert resolve_compile("off", torch.device("cuda")) is False
