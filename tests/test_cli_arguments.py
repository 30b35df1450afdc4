"""Bad arguments of ``python -m aol``: one line on stderr naming the argument, exit status 2,
before any work (no run folder, no report), never a traceback."""

import json

import pytest

from aol.engine.cli import main

TRAIN = ["train", "--dataset", "digits", "--architecture", "aol-digits", "--family", "aol",
         "--seed", "0", "--device", "cpu", "--threads", "1", "--epochs", "1"]  # fmt: skip


def exit_status(argv):
    """main's return value, or the status of the SystemExit argparse raises."""
    try:
        return main(argv)
    except SystemExit as exit_info:
        return exit_info.code


def replaced(arguments, flag, *values):
    """``arguments`` with ``flag`` given ``values`` (replacing its value when present)."""
    arguments = list(arguments)
    if flag in arguments:
        index = arguments.index(flag)
        del arguments[index : index + 2]
    return [*arguments, flag, *values]


def assert_one_line_error(capsys, code, *words):
    error = capsys.readouterr().err
    assert code == 2, error
    lines = error.strip().splitlines()
    assert len(lines) == 1, error
    assert "Traceback" not in error
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    "flag, values, words",
    [
        ("--seed", ["9223372036854775808"], ["--seed", "9223372036854775807"]),  # 2^63
        ("--seed", ["-1"], ["--seed"]),
        ("--threads", ["1e10"], ["--threads", "integer"]),
        ("--threads", ["10000000000"], ["--threads"]),
        ("--threads", ["0"], ["--threads"]),
        ("--radii", ["1e400"], ["--radii", "1e400"]),
        ("--radii", ["0"], ["--radii"]),
        ("--radii", ["36/0"], ["--radii"]),
        ("--lr", ["1e39"], ["--lr", "lr must be"]),  # overflows float32, torch's SGD factor
        ("--lr", ["inf"], ["--lr"]),
        ("--lr", ["nan"], ["--lr"]),
        ("--lr", ["0"], ["--lr"]),
        ("--weight-decay", ["inf"], ["--weight-decay"]),
        ("--weight-decay", ["nan"], ["--weight-decay"]),
        ("--weight-decay", ["-1e-4"], ["--weight-decay"]),
        ("--temperature", ["inf"], ["--temperature"]),
        ("--temperature", ["nan"], ["--temperature"]),
        ("--temperature", ["0"], ["--temperature"]),
        ("--offset", ["inf"], ["--offset"]),
        ("--offset", ["nan"], ["--offset"]),
        ("--offset", ["-0.5"], ["--offset"]),
        ("--momentum", ["1"], ["--momentum"]),
        ("--momentum", ["nan"], ["--momentum"]),
        ("--momentum", ["0", "--nesterov"], ["--momentum", "Nesterov"]),
        ("--epochs", ["0"], ["--epochs"]),
        ("--train-subset", ["0"], ["--train-subset", ">= 1"]),
        ("--train-subset", ["1e3"], ["--train-subset", "integer"]),
        ("--train-subset", ["1348"], ["--train-subset", "1347 images of the digits"]),
        ("--no-such-flag", [], ["--no-such-flag", "aol --help"]),  # the top-level parser's
    ],
)
def test_bad_train_arguments(tmp_path, capsys, flag, values, words):
    out = tmp_path / "run"
    code = exit_status([*replaced(TRAIN, flag, *values), "--out", str(out)])
    assert_one_line_error(capsys, code, *words)
    assert not out.exists()


@pytest.mark.parametrize("family", ["sll", "cpl"])
def test_an_architecture_a_residual_family_cannot_build_is_refused(tmp_path, capsys, family):
    """AOL-Small's first 1x1 conv changes the channel count; SLL and CPL layers cannot."""
    out = tmp_path / "run"
    arguments = replaced(replaced(TRAIN, "--architecture", "aol-small"), "--family", family)
    code = exit_status([*arguments, "--out", str(out)])
    assert_one_line_error(capsys, code, "aol-small", f"'{family}'", "change the number of channels")
    assert not out.exists()


@pytest.mark.parametrize(
    "flag, values",
    [
        ("--epsilons", ["1e400"]),
        ("--radii", ["36/0"]),
        ("--attack-steps", ["0"]),
        ("--attack-restarts", ["0"]),
        ("--attack-points", ["-1"]),
        ("--threads", ["1e10"]),
    ],
)
def test_bad_certify_arguments(tmp_path, capsys, flag, values):
    out = tmp_path / "certify.json"
    code = exit_status(["certify", "--run", str(tmp_path), "--out", str(out), flag, *values])
    assert_one_line_error(capsys, code, flag)
    assert not out.exists()


@pytest.mark.parametrize(
    "flag, values",
    [("--threads", ["1e10"]), ("--batch-size", ["0"]), ("--repeats", ["5"])],
)
def test_bad_measure_arguments(tmp_path, capsys, flag, values):
    out = tmp_path / "measure.json"
    arguments = ["measure", "--architecture", "aol-digits", "--families", "aol"]
    arguments += ["--dataset", "digits", "--batch-size", "10", "--device", "cpu"]
    code = exit_status([*replaced(arguments, flag, *values), "--out", str(out)])
    assert_one_line_error(capsys, code, flag)
    assert not out.exists()


def test_the_largest_seed_is_accepted(tmp_path, capsys):
    """2^63 - 1 passes the check; the run then fails for another, stated reason."""
    out = tmp_path / "run"
    arguments = replaced(TRAIN, "--seed", "9223372036854775807")
    code = exit_status([*replaced(arguments, "--architecture", "aol-alt"), "--out", str(out)])
    assert_one_line_error(capsys, code, "32x32")


def test_a_huge_learning_rate_is_an_experiment_recorded_as_diverged(tmp_path):
    """Up to float32's largest number a learning rate is legitimate: the run diverges and
    says so (status diverged, exit 0) instead of crashing inside the optimiser."""
    out = tmp_path / "run"
    code = exit_status([*replaced(TRAIN, "--lr", "3e38"), "--batch-size", "600", "--out", str(out)])
    assert code == 0
    result = json.load(open(out / "result.json"))
    assert result["status"] == "diverged" and result["epochs_completed"] == 0


@pytest.mark.parametrize(
    "knob, value",
    [
        ("lr", float("nan")),
        ("lr", 1e39),  # float32 overflows: torch's SGD would crash, not diverge
        ("weight_decay", float("inf")),
        ("temperature", float("inf")),
        ("offset", float("nan")),
        ("momentum", float("nan")),
    ],
)
def test_recipe_errors_name_the_knob(knob, value):
    """The pipeline names the config key from RecipeError.knob."""
    from aol.engine import recipes

    with pytest.raises(recipes.RecipeError, match=knob) as error:
        recipes.get("paper").with_overrides(**{knob: value}).validate()
    assert error.value.knob == knob


def test_largest_float32_values_are_accepted():
    import torch

    from aol.engine import recipes

    largest = recipes.FLOAT32_MAX
    assert largest == torch.finfo(torch.float32).max
    recipes.get("paper").with_overrides(lr=largest, weight_decay=largest).validate()
