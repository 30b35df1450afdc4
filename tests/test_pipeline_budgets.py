"""Budget runs in the aggregation: result.json's budget fields reach runs.csv; the tables put
our epochs and time beside the budget and 1LLC's numbers and epochs for the same budget
(config/compare.yaml's reference); the trade-off figures draw the Pareto front."""

import itertools
import json
import math

import pandas as pd
import pytest
from pipeline_support import REPOSITORY, load_config, load_script

collect = load_script("collect")
tables = load_script("tables")
figures = load_script("figures")

PUBLISHED = tables.load_published(REPOSITORY / "results" / "reference" / "published.csv")
COMPARE = load_config("compare.yaml")["experiments"][0]
BUDGET_HOURS = {"2h": 2.0, "10h": 10.0}  # compare.yaml's nominal budgets


def budget_run(architecture, family, variant, clean, certified, epochs, step_seconds):
    budget = BUDGET_HOURS[variant] * 3600 * 0.01  # a budget_scale of 0.01
    return dict(
        dataset="cifar10", architecture=architecture, family=family, variant=variant, seed=0,
        status="completed", clean=clean, **{"certified_36/255": certified},
        epochs=epochs, planned_epochs=epochs, train_seconds=step_seconds + 5,
        train_step_seconds=step_seconds, budget_seconds=budget,
        budget_used=step_seconds / budget,
    )  # fmt: skip


RUNS = pd.DataFrame(
    [
        budget_run("convnet-xs", "aol", "2h", 60.0, 50.0, 8, 70.0),
        budget_run("convnet-s", "cayley", "10h", 65.0, 52.0, 10, 380.0),
        budget_run("convnet-s", "spectral", "2h", 50.0, math.nan, 30, 75.0),
    ]
)
EXPERIMENT = {**COMPARE, "architectures": ["convnet-xs", "convnet-s"],
              "families": ["aol", "cayley", "spectral"]}  # fmt: skip


def test_published_metrics_are_read_in_the_names_of_runs_csv():
    assert tables.published_metric("cra_36") == "certified_36/255"
    assert tables.published_metric("cra_255") == "certified_1"
    assert tables.published_metric("epochs_in_2h") == "epochs_in_2h"
    assert len(PUBLISHED) == 1060
    assert not PUBLISHED["metric"].str.startswith("cra_").any()


def test_budget_rows_stand_beside_1llc_numbers_and_epochs():
    table = tables.experiment_table(RUNS, EXPERIMENT, [0], PUBLISHED, BUDGET_HOURS)
    table = table.set_index(["architecture", "family", "variant"])
    aol = table.loc[("convnet-xs", "aol", "2h")]
    # 1LLC Table 9, AOL ConvNetXS 2 h: 68.5 clean, 55.6 certified at 36/255
    assert (aol["clean_published"], aol["certified_36/255_published"]) == (68.5, 55.6)
    assert aol["certified_36/255_delta"] == pytest.approx(50.0 - 55.6)
    assert aol["epochs_published"] == 837  # Table 8: AOL ConvNetXS fits 837 epochs in 2 h
    assert aol["source"].endswith("Table 9, AOL (ConvNetXS 2h)")
    cayley = table.loc[("convnet-s", "cayley", "10h")]
    assert cayley["epochs_published"] == math.floor(214 * 10 / 2)  # Table 8 scaled to 10 h
    assert cayley["clean_published"] == 73.6  # Table 9, Cayley ConvNetS 10 h
    assert (cayley["epochs_mean"], cayley["train_step_seconds_mean"]) == (10, 380.0)
    assert cayley["budget_seconds"] == 360.0
    assert cayley["budget_used_mean"] == pytest.approx(380.0 / 360.0)
    spectral = table.loc[("convnet-s", "spectral", "2h")]  # no 1LLC row
    assert math.isnan(spectral["epochs_published"]) and spectral["source"] == ""
    assert math.isnan(spectral["clean_published"])
    display = tables.display_experiment(table.reset_index())
    row = display.set_index(["Architecture", "Family", "Variant"]).loc[
        ("convnet-s", "cayley", "10h")
    ]
    assert (row["Epochs"], row["Epochs pub."]) == ("10", "1070")
    assert (row["Budget s"], row["Steps s"], row["Used %"]) == ("360", "380", "106")


def test_tables_without_budgets_have_no_budget_columns():
    runs = RUNS.drop(columns=["budget_seconds", "budget_used", "planned_epochs"])
    experiment = {**EXPERIMENT, "reference": None}
    display = tables.display_experiment(tables.experiment_table(runs, experiment, [0], PUBLISHED))
    assert "Epochs" in display.columns
    assert not {"Epochs pub.", "Budget s", "Steps s", "Used %"} & set(display.columns)


def test_collect_keeps_the_budget_fields(tmp_path):
    run = tmp_path / "results/runs/digits/aol-digits/aol/equal-time/seed0"
    run.mkdir(parents=True)
    result = {"status": "completed", "epochs": 7, "planned_epochs": 7, "budget_seconds": 20.0,
              "train_step_seconds": 19.0, "budget_used": 0.95, "train_seconds": 21.0,
              "test_accuracy": 0.9, "test_certified_accuracy": {"36/255": 0.5}}  # fmt: skip
    (run / "result.json").write_text(json.dumps(result))
    (run / "metrics.jsonl").write_text("")
    row = collect.run_row(run / "result.json", None)
    for key in ("planned_epochs", "budget_seconds", "train_step_seconds", "budget_used"):
        assert row[key] == result[key]
    assert row["variant"] == "equal-time" and row["certified_36/255"] == 50.0


def dominated(point, others, cost):
    return any(
        o[cost] <= point[cost] and o["certified"] >= point["certified"]
        and (o[cost] < point[cost] or o["certified"] > point["certified"])
        for o in others
    )  # fmt: skip


def test_pareto_front_is_exactly_the_undominated_points():
    costs, accuracies = [1, 2, 3, 4, 5], [50, 40, 60, 60, 70]
    points = pd.DataFrame(
        [{"seconds": c, "certified": a, "family": f"f{c}{a}"}
         for c, a in itertools.product(costs, accuracies)][::3]
    )  # fmt: skip
    front = figures.pareto_front(points, "seconds")
    records = points.to_dict("records")
    expected = {r["family"] for r in records if not dominated(r, records, "seconds")}
    assert set(front["family"]) == expected
    assert list(front["seconds"]) == sorted(front["seconds"])
    assert front["certified"].is_monotonic_increasing


def test_trade_off_figures_draw_points_and_front():
    measurements = pd.DataFrame(
        dict(dataset="cifar10", architecture=a, family=f, status="completed",
             peak_train_memory_bytes=m * 2**20)
        for a, f, m in [("convnet-xs", "aol", 100), ("convnet-s", "cayley", 300)]
    )  # fmt: skip
    points = figures.model_points(RUNS, measurements)
    assert len(points) == 2  # spectral has no certified accuracy
    assert points.set_index("family").loc["cayley", "memory_mib"] == 300
    for name in ("certified_accuracy_vs_training_time", "certified_accuracy_vs_memory"):
        figure = figures.draw(name, RUNS, pd.DataFrame(), measurements)
        titles = [axis.get_title() for axis in figure.axes]
        assert [title.split(":")[0] for title in titles] == ["cifar10, 10h", "cifar10, 2h"]
        assert all(axis.lines and axis.collections for axis in figure.axes)
    # without measure jobs (measurements.csv has only its key columns): no memory, a time plot
    unmeasured = pd.DataFrame(columns=["dataset", "architecture", "family"])
    assert figures.model_points(RUNS, unmeasured)["memory_mib"].isna().all()
    figure = figures.draw("certified_accuracy_vs_training_time", RUNS, pd.DataFrame(), unmeasured)
    assert all(axis.lines and axis.collections for axis in figure.axes)


def test_budget_pipeline_calibrates_then_trains_the_derived_epochs(tmp_path):
    """A tiny budget experiment through Snakemake: the calibration job's file is an input of
    the train job, whose epochs follow from it and from budget_scale."""
    from pipeline_support import run_snakemake, write_config

    config = {
        "device": "cpu",
        "seeds": [0],
        "budget_scale": 0.5,
        "variants": [{"name": "tiny", "recipe": "digits", "budget_seconds": 4, "batch_size": 300}],
        "experiments": [{"name": "tiny_budget", "dataset": "digits",
                         "architectures": ["aol-digits"], "families": ["aol"],
                         "variants": ["tiny"]}],
        "calibration": {"steps": 2, "warmup": 1},
        "certify": {"enabled": False},
        "measure": {"enabled": False},
        "figures": False,
    }  # fmt: skip
    path = write_config(tmp_path / "tiny-budget.yaml", config)
    workdir = tmp_path / "work"
    result = run_snakemake(workdir, "--cores", "1", "--configfile", str(path), timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    runs = workdir / "results/runs/digits/aol-digits/aol"
    calibrations = workdir / "results/tiny-budget/calibration/digits/aol-digits/aol"
    calibration = json.loads((calibrations / "calibration_digits_batch300_fp32.json").read_text())
    assert calibration["device_name"].startswith("cpu") and calibration["timed_steps"] == 2
    trained = json.loads((runs / "tiny/seed0/result.json").read_text())
    assert trained["budget_seconds"] == 2.0  # 4 s times budget_scale 0.5
    expected = max(1, math.floor(2.0 / calibration["seconds_per_epoch"] + 0.5))
    assert trained["planned_epochs"] == trained["epochs_completed"] == expected
    assert trained["budget"]["calibrated_epoch_seconds"] == calibration["seconds_per_epoch"]
    table = pd.read_csv(workdir / "results/tiny-budget/tables/tiny_budget.csv")
    assert table.loc[0, "budget_seconds"] == 2.0 and table.loc[0, "epochs_mean"] == expected


def test_a_bf16_budget_variant_is_calibrated_and_trained_in_bf16(tmp_path):
    """A variant's precision reaches both the calibration job (its own file) and the train
    job; an fp32 variant's commands carry no --precision (the engine's default)."""
    from pipeline_support import run_snakemake, write_config

    config = {
        "seeds": [0],
        "variants": [{"name": "fast", "recipe": "digits", "budget_seconds": 4},
                     {"name": "half", "recipe": "digits", "budget_seconds": 4,
                      "precision": "bf16"}],
        "experiments": [{"name": "precisions", "dataset": "digits",
                         "architectures": ["aol-digits"], "families": ["aol"],
                         "variants": ["fast", "half"]}],
    }  # fmt: skip
    path = write_config(tmp_path / "precisions.yaml", config)
    result = run_snakemake(tmp_path / "work", "-n", "-p", "--configfile", str(path))
    assert result.returncode == 0, result.stderr[-4000:]
    commands = [line for line in result.stdout.splitlines() if "-m aol " in line]
    calibrations = [line for line in commands if " calibrate " in line]
    assert len(calibrations) == 2
    assert sum("calibration_digits_batch50_bf16.json" in line for line in calibrations) == 1
    for line in calibrations:
        assert ("--precision bf16" in line) == ("_bf16.json" in line)
        assert ("--precision fp32" in line) == ("_fp32.json" in line)
    trains = {line.split("/aol/")[1].split("/")[0]: line for line in commands if " train " in line}
    assert "--precision bf16" in trains["half"] and "_bf16.json" in trains["half"]
    assert "--precision" not in trains["fast"] and "_fp32.json" in trains["fast"]
