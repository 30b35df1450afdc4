"""``python -m aol train --train-subset N``: a fixed, class-balanced subset of the training
split, the same for every seed, part of the run's identity and recorded in result.json; and
``--test-subset N`` of train (monitoring) and certify."""

import io
import json
import math

import pytest
import torch

import aol
from aol.engine import budget, data
from aol.engine.cli import build_parser, main
from aol.engine.commands.train import config_from_arguments
from aol.engine.run_folder import RunFolder, build_model, run_identity
from aol.engine.train import prepare

ARGS = ["--dataset", "digits", "--architecture", "aol-digits", "--family", "aol",
        "--device", "cpu", "--threads", "1", "--epochs", "1", "--batch-size", "100"]  # fmt: skip
DIGITS_LABELS = data.load("digits").train_labels


def uneven_labels() -> torch.Tensor:
    """Four classes of 50, 7, 30 and 13 examples, interleaved."""
    labels = torch.cat([torch.full((count,), label) for label, count in enumerate([50, 7, 30, 13])])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(5))]


def assert_class_balanced(labels: torch.Tensor, indices: torch.Tensor) -> None:
    """Class counts of the subset differ by at most one, except for a class the subset
    holds entirely (it had no examples left)."""
    available = torch.bincount(labels, minlength=int(labels.max()) + 1).tolist()
    counts = torch.bincount(labels[indices], minlength=len(available)).tolist()
    for a, count_a in enumerate(counts):
        for count_b in counts:
            if count_a < count_b - 1:
                assert count_a == available[a], (counts, available)


@pytest.mark.parametrize(
    "labels, size",
    [(DIGITS_LABELS, 1), (DIGITS_LABELS, 100), (DIGITS_LABELS, 105), (DIGITS_LABELS, 1333),
     (DIGITS_LABELS, 1347), (uneven_labels(), 25), (uneven_labels(), 60), (uneven_labels(), 99)],
)  # fmt: skip
def test_subset_has_its_size_distinct_indices_and_balanced_classes(labels, size):
    indices = data.subset_indices(labels, size)
    assert len(indices) == size and len(set(indices.tolist())) == size
    assert 0 <= int(indices.min()) and int(indices.max()) < len(labels)
    assert torch.equal(indices, indices.sort().values)
    assert_class_balanced(labels, indices)
    if size % 10 == 0 and labels is DIGITS_LABELS and size <= 1310:  # 131 in the rarest class
        assert torch.bincount(labels[indices]).tolist() == [size // 10] * 10


def test_subset_depends_on_neither_the_seed_nor_torch_generator_and_grows_nested():
    torch.manual_seed(1)
    first = data.subset_indices(DIGITS_LABELS, 200)
    torch.manual_seed(2)
    torch.rand(10)
    assert torch.equal(first, data.subset_indices(DIGITS_LABELS, 200))
    larger = set(data.subset_indices(DIGITS_LABELS, 500).tolist())
    assert set(first.tolist()) <= larger
    # not the first 200 of the split: drawn from all of it
    assert int(first.max()) > 1000


@pytest.mark.parametrize("size", [0, -1, 1348, True, 2.0])
def test_a_subset_the_split_cannot_give_is_an_error(size):
    with pytest.raises(data.SubsetError, match="1347"):
        data.subset_indices(DIGITS_LABELS, size)


def test_the_dataset_table_knows_each_training_split_size():
    assert data.info("digits").train_size == len(DIGITS_LABELS)
    if data.fashion_mnist_folder("/nonexistent") is not None:  # Debian's package
        labels = data.load("fashion-mnist", "/nonexistent").train_labels
        assert data.info("fashion-mnist").train_size == len(labels)


def prepared_training_images(tmp_path, seed: int, *extra: str) -> torch.Tensor:
    """The training images a run prepares (aol.engine.train.prepare), as the CLI builds it."""
    out = tmp_path / f"seed{seed}"
    arguments = build_parser().parse_args(
        ["train", *ARGS, "--seed", str(seed), "--out", str(out), *extra]
    )
    config = config_from_arguments(arguments)
    folder = RunFolder(str(out))
    out.mkdir()
    training = prepare(config, folder, config.identity(), None, io.StringIO())
    return training.dataset.train_images


def test_two_seeds_train_on_the_same_subset_of_the_split(tmp_path):
    seed0 = prepared_training_images(tmp_path, 0, "--train-subset", "120")
    seed1 = prepared_training_images(tmp_path, 1, "--train-subset", "120")
    assert seed0.shape == (120, 1, 8, 8) and torch.equal(seed0, seed1)
    digits = data.load("digits")
    expected = digits.train_images[data.subset_indices(digits.train_labels, 120)]
    assert torch.equal(seed0, expected)
    assert len(prepared_training_images(tmp_path, 2)) == len(DIGITS_LABELS)


def test_identity_has_the_subset():
    recipe = {"epochs": 1}
    whole = run_identity("digits", "aol-digits", "aol", 0, "digits", recipe)
    subset = run_identity("digits", "aol-digits", "aol", 0, "digits", recipe, train_subset=120)
    assert whole["train_subset"] is None and subset["train_subset"] == 120
    assert whole != subset


def test_a_short_run_on_a_subset_records_it_and_refuses_another_subset(tmp_path, capsys):
    out = tmp_path / "run"
    run = ["train", *ARGS, "--seed", "0", "--out", str(out)]
    assert main([*run, "--train-subset", "150"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "completed" and result["train_subset"] == 150
    assert torch.load(out / "checkpoint.pt", weights_only=True)["identity"]["train_subset"] == 150
    # the training accuracy counts the 150 images of the subset
    correct = json.loads((out / "metrics.jsonl").read_text())["train_accuracy"] * 150
    assert correct == pytest.approx(round(correct), abs=1e-9)
    # the same command reports the finished run; another subset, or none, is another run
    assert main([*run, "--train-subset", "150"]) == 0
    capsys.readouterr()
    for other in (["--train-subset", "151"], []):
        assert main([*run, *other]) == 2
        error = capsys.readouterr().err
        assert "another run" in error and len(error.strip().splitlines()) == 1
    assert json.loads((out / "result.json").read_text()) == result


def test_runs_saved_before_the_subset_existed_are_runs_on_the_whole_split(tmp_path, capsys):
    out = tmp_path / "run"
    run = ["train", *ARGS, "--seed", "0", "--out", str(out)]
    assert main(run) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["train_subset"] is None
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    del saved["identity"]["train_subset"]  # as written before the option existed
    torch.save(saved, out / "checkpoint.pt")
    del result["train_subset"]
    (out / "result.json").write_text(json.dumps(result))
    assert main(run) == 0  # the finished run is reported
    assert main([*run, "--train-subset", "100"]) == 2
    certify = ["certify", "--run", str(out), "--out", str(tmp_path / "c.json"),
               "--device", "cpu", "--attack-points", "0", "--audit-points", "1",
               "--audit-iterations", "2"]  # fmt: skip
    assert main(certify) == 0


def test_a_budget_counts_the_subsets_steps_per_epoch():
    calibration = {"seconds_per_step": 0.5, "device_name": "a test device"}
    # the whole digits split at batch 100: 14 steps, 7 s an epoch; 200 images: 2 steps, 1 s
    assert budget.steps_per_epoch(len(DIGITS_LABELS), 100) == math.ceil(1347 / 100) == 14
    assert budget.plan(14, calibration, budget.steps_per_epoch(1347, 100)).planned_epochs == 2
    subset_plan = budget.plan(14, calibration, budget.steps_per_epoch(200, 100))
    assert subset_plan.calibrated_epoch_seconds == 1.0 and subset_plan.planned_epochs == 14
    # (tests/test_budget.py trains a budget run on a subset through the CLI)


# ------------------------------------------------------------------ --test-subset


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", *ARGS, "--seed", "0", "--out", str(out)]) == 0
    return out


def test_certify_on_a_test_subset_scores_exactly_those_images(trained_run, tmp_path):
    out = tmp_path / "certify.json"
    certify = ["certify", "--run", str(trained_run), "--out", str(out), "--device", "cpu",
               "--attack-points", "0", "--audit-points", "1", "--audit-iterations", "2",
               "--test-subset", "100"]  # fmt: skip
    assert main(certify) == 0
    report = json.loads(out.read_text())
    assert report["test_points"] == report["test_subset"] == 100
    # independently: the float64 export of the checkpoint on the same 100 test images
    saved = torch.load(trained_run / "checkpoint.pt", weights_only=True)
    model = build_model(saved["identity"])
    model.load_state_dict(saved["model"])
    digits = data.load("digits")
    chosen = data.subset_indices(digits.test_labels, 100, "test")
    assert torch.bincount(digits.test_labels[chosen]).tolist() == [10] * 10
    with torch.no_grad():
        scores = aol.export(model.double().eval())(digits.test_images[chosen].double())
    accuracy = (scores.argmax(1) == digits.test_labels[chosen]).double().mean().item()
    assert report["clean_accuracy"] == pytest.approx(accuracy, abs=1e-12)


def test_monitoring_on_a_test_subset_is_recorded_and_not_part_of_the_identity(tmp_path):
    out = tmp_path / "run"
    run = ["train", *ARGS, "--seed", "0", "--out", str(out)]
    assert main([*run, "--test-subset", "45"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["test_subset"] == 45 and result["train_subset"] is None
    assert round(result["test_accuracy"] * 45, 9) == round(result["test_accuracy"] * 45)
    assert main(run) == 0  # the same run, reported as finished
    assert json.loads((out / "result.json").read_text()) == result


@pytest.mark.parametrize(
    "command, size, words",
    [("train", "451", ["--test-subset", "450 images of the digits test split"]),
     ("train", "0", ["--test-subset", ">= 1"]),
     ("certify", "451", ["--test-subset", "450 images of the digits test split"]),
     ("certify", "x", ["--test-subset", "integer"])],
)  # fmt: skip
def test_a_test_subset_the_split_cannot_give_is_one_line(trained_run, tmp_path, capsys, command,
                                                         size, words):  # fmt: skip
    out = tmp_path / "out"
    if command == "train":
        argv = ["train", *ARGS, "--seed", "0", "--out", str(out)]
    else:
        argv = ["certify", "--run", str(trained_run), "--out", str(out), "--device", "cpu"]
    try:
        code = main([*argv, "--test-subset", size])
    except SystemExit as exit_info:
        code = exit_info.code
    error = capsys.readouterr().err
    assert code == 2 and len(error.strip().splitlines()) == 1, error
    assert all(word in error for word in words), error
    assert not out.exists()
