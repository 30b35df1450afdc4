"""Training budgets: calibration, epochs derived from it, and a resumed budget run keeping its
epoch count after a real kill even when the calibration changed meanwhile."""

import json
import math
import subprocess
import sys

import pytest
from run_support import kill_after_checkpoint

from aol.engine import budget, data, recipes
from aol.engine.cli import main

RUN = ["--dataset", "digits", "--architecture", "aol-digits", "--family", "aol"]
DEVICE = ["--device", "cpu", "--threads", "1"]
BATCH = 300  # 5 steps per digits epoch: seconds per test run
STEPS = math.ceil(data.info("digits").train_size / BATCH)


def fake_calibration(path, epoch_seconds, **changes):
    """A calibration file as python -m aol calibrate writes it, with a chosen epoch time of
    the whole digits split."""
    calibration = dict(
        dataset="digits",
        architecture="aol-digits",
        family="aol",
        batch_size=BATCH,
        augment=recipes.get("digits").augment,
        device_name="a test device",
        seconds_per_step=epoch_seconds / STEPS,
        steps_per_epoch=STEPS,
        seconds_per_epoch=epoch_seconds,
    )
    path.write_text(json.dumps({**calibration, **changes}))
    return path


def train_command(out, calibration, budget_seconds, *extra):
    return [sys.executable, "-m", "aol", "train", *RUN, "--seed", "0", *DEVICE,
            "--batch-size", str(BATCH), "--out", str(out), "--budget-seconds",
            str(budget_seconds), "--calibration", str(calibration), *extra]  # fmt: skip


@pytest.mark.parametrize(
    "budget_seconds, epoch_seconds, expected",
    [(7200, 7200 / 837, 837), (3.4, 1.0, 3), (3.6, 1.0, 4), (3.0, 1.0, 3), (0.2, 1.0, 1),
     (10, 3.0, 3), (11, 3.0, 4)],
)  # fmt: skip
def test_planned_epochs_are_the_nearest_whole_number_at_least_one(
    budget_seconds, epoch_seconds, expected
):
    # 1LLC Table 8: AOL ConvNetXS fits 837 epochs in 2 h
    planned = budget.planned_epochs(budget_seconds, epoch_seconds)
    assert planned == expected
    # the planned epochs take the budget within half an epoch (or are the single epoch)
    assert abs(planned * epoch_seconds - budget_seconds) <= epoch_seconds / 2 or planned == 1
    with pytest.raises(ValueError):
        budget.planned_epochs(budget_seconds, 0.0)


def test_calibration_times_training_steps_and_names_the_device(tmp_path, capsys):
    out = tmp_path / "calibration.json"
    arguments = ["calibrate", *RUN, *DEVICE, "--batch-size", str(BATCH), "--out", str(out)]
    assert main([*arguments, "--steps", "3", "--warmup", "1"]) == 0
    calibration = json.loads(out.read_text())
    train_images = len(data.load("digits").train_labels)
    assert calibration["steps_per_epoch"] == math.ceil(train_images / BATCH)
    assert calibration["seconds_per_step"] > 0
    assert calibration["seconds_per_epoch"] == pytest.approx(
        calibration["seconds_per_step"] * calibration["steps_per_epoch"]
    )
    assert calibration["device_name"].startswith("cpu")
    assert (calibration["timed_steps"], calibration["warmup_steps"]) == (3, 1)
    assert calibration["batch_size"] == BATCH and calibration["augment"] is False
    assert calibration["precision"] == "fp32" and calibration["channels_last"] is False
    # 3 timed steps in 3 chunks of one, the median chunk gives the time per step
    assert calibration["chunk_steps"] == [1, 1, 1] and len(calibration["chunk_seconds"]) == 3
    assert calibration["seconds_per_step"] == sorted(calibration["chunk_seconds"])[1]
    assert json.loads(capsys.readouterr().out)["seconds_per_epoch"] > 0
    # a bf16 calibration times bf16 steps and says so (a bf16 budget run needs it)
    assert main([*arguments, "--steps", "2", "--warmup", "0", "--precision", "bf16"]) == 0
    assert json.loads(out.read_text())["precision"] == "bf16"


@pytest.mark.parametrize(
    "steps, sizes", [(20, [4, 4, 4, 4, 4]), (7, [1, 1, 2, 1, 2]), (3, [1, 1, 1]), (1, [1])]
)
def test_calibration_chunks_cover_the_timed_steps(steps, sizes):
    assert budget.chunk_sizes(steps) == sizes and sum(sizes) == steps


def test_a_slow_chunk_does_not_move_the_calibrated_step_time():
    # four chunks of 4 steps at 0.1 s per step, one slowed down 10x by another process
    seconds = [0.4, 0.41, 4.0, 0.39, 0.4]
    assert budget.median_seconds_per_step(seconds, [4] * 5) == pytest.approx(0.1)
    # the mean would have said 0.28 s per step: 2.8x the epochs' real time
    assert sum(seconds) / 20 == pytest.approx(0.28)
    with pytest.raises(ValueError):
        budget.median_seconds_per_step([0.4], [4, 4])


def test_budget_run_derives_its_epochs_and_schedule_from_the_calibration(tmp_path, capsys):
    calibration = fake_calibration(tmp_path / "calibration.json", epoch_seconds=1.0)
    out = tmp_path / "run"
    assert main([*train_command(out, calibration, 3.2, "--schedule", "onecycle")[3:]]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["planned_epochs"] == result["epochs"] == result["epochs_completed"] == 3
    assert result["hyperparameters"]["epochs"] == 3
    assert result["budget_seconds"] == 3.2
    assert result["budget"] == dict(
        budget_seconds=3.2,
        calibrated_epoch_seconds=1.0,
        calibration_device_name="a test device",
        planned_epochs=3,
    )
    assert result["budget_used"] == pytest.approx(result["train_step_seconds"] / 3.2)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    recipe = recipes.get("digits").with_overrides(schedule="onecycle", batch_size=BATCH)
    expected_lr = [recipes.epoch_settings(recipe.with_overrides(epochs=3), e)[0] for e in range(3)]
    assert [row["lr"] for row in rows] == pytest.approx(expected_lr)
    # the schedule of the recipe's own epoch count would be another one
    assert expected_lr != pytest.approx([recipes.epoch_settings(recipe, e)[0] for e in range(3)])


def test_a_budget_run_on_a_training_subset_plans_the_subsets_epochs(tmp_path):
    """0.2 s per step (1 s per epoch of the whole split): 600 images are 2 steps, 0.4 s."""
    calibration = fake_calibration(tmp_path / "calibration.json", epoch_seconds=1.0)
    out = tmp_path / "run"
    assert main([*train_command(out, calibration, 2.0, "--train-subset", "600")[3:]]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["train_subset"] == 600
    assert result["budget"]["calibrated_epoch_seconds"] == pytest.approx(0.4)
    assert result["planned_epochs"] == result["epochs_completed"] == 5
    # the whole split in the same budget: 2 epochs
    whole = tmp_path / "whole"
    assert main([*train_command(whole, calibration, 2.0)[3:]]) == 0
    assert json.loads((whole / "result.json").read_text())["planned_epochs"] == 2


def test_resumed_budget_run_keeps_its_epochs_after_a_kill(tmp_path):
    calibration = fake_calibration(tmp_path / "calibration.json", epoch_seconds=1.0)
    out = tmp_path / "run"
    command = train_command(out, calibration, 4, "--checkpoint-every", "1")
    kill_after_checkpoint(command, out, epoch=1)
    # a new calibration would plan 2 epochs; the resumed run keeps the 4 it planned
    fake_calibration(calibration, epoch_seconds=2.0)
    assert budget.plan(4, json.loads(calibration.read_text()), STEPS).planned_epochs == 2
    subprocess.run(command, check=True, capture_output=True)
    result = json.loads((out / "result.json").read_text())
    assert result["planned_epochs"] == result["epochs_completed"] == 4
    assert result["budget"]["calibrated_epoch_seconds"] == 1.0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == list(range(1, 5))
    # another budget in the same folder is another run: refused, the result kept
    refused = subprocess.run(train_command(out, calibration, 9), capture_output=True, text=True)
    assert refused.returncode == 2 and "another" in refused.stderr
    assert json.loads((out / "result.json").read_text()) == result


@pytest.mark.parametrize(
    "extra, calibration_changes, message",
    [
        (["--epochs", "3"], {}, "either --epochs or --budget-seconds"),
        ([], {"family": "soc"}, "made for another run: family 'soc'"),
        ([], {"batch_size": 50}, "batch_size 50"),
        ([], {"seconds_per_step": 0}, "not a calibration"),
        ([], {"status": "failed"}, "the calibration job failed"),
        # a file without a precision timed fp32 steps; a bf16 run needs a bf16 calibration
        (["--precision", "bf16"], {}, "precision 'fp32' (run: 'bf16')"),
        ([], {"precision": "bf16"}, "precision 'bf16' (run: 'fp32')"),
    ],
)
def test_bad_budget_arguments_fail_before_any_work(
    tmp_path, capsys, extra, calibration_changes, message
):
    calibration = fake_calibration(tmp_path / "c.json", 1.0, **calibration_changes)
    out = tmp_path / "run"
    assert main([*train_command(out, calibration, 3)[3:], *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("flags", [["--budget-seconds", "3"], ["--calibration", "c.json"]])
def test_budget_and_calibration_go_together(tmp_path, capsys, flags):
    assert main(["train", *RUN, "--seed", "0", *DEVICE, "--out", str(tmp_path), *flags]) == 2
    assert "go together" in capsys.readouterr().err


@pytest.mark.parametrize("seconds", ["0", "-1", "inf", "nan", "two"])
def test_budget_must_be_a_positive_number(tmp_path, capsys, seconds):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *RUN, "--seed", "0", "--out", str(tmp_path), "--budget-seconds", seconds])
    assert exit_info.value.code == 2
    assert "--budget-seconds" in capsys.readouterr().err
