"""Aggregation on JSON files in the engine's formats (docs/engine.md): per-run
rows, mean +- std over seeds beside the published number, failed and diverged runs shown
as such, the three table formats, and the figures."""

import html
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from pipeline_support import REPOSITORY, load_script

collect = load_script("collect")
tables = load_script("tables")
figures = load_script("figures")

PUBLISHED = tables.load_published(REPOSITORY / "results" / "reference" / "published.csv")
RADII = ["36/255", "72/255", "108/255", "1"]  # the engine's keys: str(Radius)


def write(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


def fake_run(
    root,
    family,
    seed,
    clean,
    certified,
    status="completed",
    audits_passed=True,
    subset=None,
    test_subset=None,
):
    """result.json, metrics.jsonl and certify.json of one run, as the engine writes them."""
    run = root / "results/runs/digits/aol-digits" / family / "quick" / f"seed{seed}"
    bound = None if certified is None else 1.0
    cra = None if certified is None else dict(zip(RADII, certified, strict=True))
    result = {
        "status": status,
        "epochs_completed": 3,
        "epochs": 3,
        "dataset": "digits",
        "architecture": "aol-digits",
        "family": family,
        "seed": seed,
        "recipe": "paper",
        "hyperparameters": {},
        "train_subset": subset,
        "test_accuracy": None if status == "diverged" else clean,
        "test_certified_accuracy": None if status == "diverged" else cra,
        "lipschitz_bound": bound,
        "train_seconds": 10.0 + seed,
        "train_step_seconds": 8.0 + seed,
        "seconds_per_epoch": 3.0,
        "device": "cpu",
        "device_name": "cpu",
        "torch_version": "2",
        "threads": 1,
        "num_parameters": 1234,
    }
    write(run / "result.json", result)
    with open(run / "metrics.jsonl", "w") as handle:
        for epoch in (1, 2, 3):
            handle.write(
                json.dumps(
                    {
                        "epoch": epoch,
                        "lr": 0.01,
                        "train_loss": 1 / epoch,
                        "train_accuracy": clean * epoch / 3,
                        "test_loss": 1 / epoch,
                        "test_accuracy": clean * epoch / 3,
                        "test_certified_accuracy": cra,
                        "epoch_seconds": 3.0,
                        "elapsed_seconds": 3.0 * epoch,
                    }
                )
                + "\n"
            )
    if status == "diverged":
        certificate = {"status": "diverged", "clean_accuracy": None, "audits_passed": True}
    else:
        certificate = {
            "run": str(run),
            "status": "no_bound" if certified is None else "completed",
            "lipschitz_bound": bound,
            "test_points": test_subset or 100,
            "test_subset": test_subset,
            "clean_accuracy": clean,
            "certified_accuracy": cra or dict.fromkeys(RADII),
            "empirical_robust_accuracy": dict.fromkeys(RADII, 0.5),
            "broken_certificates": dict.fromkeys(RADII, 0),
            "lipschitz_audit": {"passed": audits_passed},
            "attack_audit": {"passed": True},
            "audits_passed": audits_passed,
        }
    write(run / "certify.json", certificate)
    return run


def fake_measurement(root, architecture, train_steps):
    """measure_batch64.json of one (dataset, architecture) as `python -m aol measure` writes
    it: one record per family, with ratios to standard from the same rounds."""

    def timing(seconds):
        return {"median": seconds, "q1": seconds * 0.9, "q3": seconds * 1.1, "repeats": 10}

    standard = train_steps["standard"]
    records = {}
    for family, step in train_steps.items():
        transform = None if family == "standard" else step / 4
        records[family] = {
            "train_step_seconds": timing(step),
            "inference_seconds": timing(step / 2),
            "weight_transform_seconds": None if transform is None else timing(transform),
            "peak_train_memory_bytes": 3 * 2**20,
            "memory_method": "saved tensors",
            "memory_steps": 3,
            "num_parameters": 1234,
            "train_step_vs_standard": step / standard,
            "inference_vs_standard": step / standard,
            "weight_transform_share_of_standard_step": (
                None if transform is None else transform / standard
            ),
        }
    return write(
        root / f"results/runs/digits/{architecture}/measure_batch64.json",
        {
            "architecture": architecture,
            "dataset": "digits",
            "batch_size": 64,
            "device": "cpu",
            "device_name": "cpu",
            "torch_version": "2",
            "threads": 1,
            "repeats": 10,
            "warmup": 2,
            "reference_family": "standard",
            "families": records,
        },
    )


def failed_measurement(root, architecture):
    """What workflow/scripts/guarded.py writes in place of a measure job that crashed."""
    return write(
        root / f"results/runs/digits/{architecture}/measure_batch64.json",
        {"status": "failed", "exit_code": 1, "command": ["python"], "log": "x", "log_tail": []},
    )


@pytest.fixture
def collected(tmp_path):
    runs = [
        fake_run(tmp_path, "aol", 0, 0.80, [0.70, 0.60, 0.50, 0.20]),
        fake_run(tmp_path, "aol", 1, 0.90, [0.74, 0.62, 0.52, 0.24]),
        fake_run(tmp_path, "standard", 0, 0.95, None),
        fake_run(tmp_path, "standard", 1, 0.93, None),
        fake_run(tmp_path, "shaky", 0, 0.5, [0.1] * 4, status="diverged"),
        fake_run(tmp_path, "shaky", 1, 0.5, [0.1] * 4, status="diverged"),
        fake_run(tmp_path, "unsound", 0, 0.9, [0.9] * 4, audits_passed=False),
        fake_run(tmp_path, "unsound", 1, 0.8, [0.7] * 4),
    ]
    crashed = tmp_path / "results/runs/digits/aol-digits/crashy/quick/seed0"
    write(crashed / "result.json", {"status": "failed", "exit_code": 1})
    write(crashed / "certify.json", {"status": "failed", "reason": "training failed"})
    runs.append(crashed)
    measurements = [
        fake_measurement(tmp_path, "aol-digits", {"standard": 0.002, "aol": 0.004}),
        failed_measurement(tmp_path, "convnet-xs"),
    ]
    return collect.collect(
        [run / "result.json" for run in runs],
        [run / "certify.json" for run in runs],
        measurements,
        {str(measurements[1]): ["standard", "aol"]},
    )


EXPERIMENT = {
    "name": "digits",
    "title": "digits: every family",
    "dataset": "digits",
    "architectures": ["aol-digits"],
    "families": ["aol", "standard", "shaky", "unsound", "crashy"],
    "variants": ["quick"],
    "reference": {
        "paper": "Prach & Lampert ECCV 2022 (AOL)",
        "table": "Table 3",
        "dataset": "CIFAR-10",
        "match": [{"family": "aol", "method": "AOL-Small"}],
    },
}


def test_run_status_and_metrics(collected):
    runs, curves, measurements = collected
    status = runs.set_index(["family", "seed"])["status"]
    assert status[("aol", 0)] == "completed"
    assert status[("shaky", 0)] == "diverged"
    assert status[("unsound", 0)] == "audit failed"
    assert status[("unsound", 1)] == "completed"
    assert status[("crashy", 0)] == "failed"
    aol_seed0 = runs[(runs["family"] == "aol") & (runs["seed"] == 0)].iloc[0]
    assert aol_seed0["clean"] == pytest.approx(80.0)
    assert aol_seed0["certified_108/255"] == pytest.approx(50.0)
    assert aol_seed0["certified_1"] == pytest.approx(20.0)
    assert aol_seed0["empirical_36/255"] == pytest.approx(50.0)
    certified = ["certified_36/255", "certified_72/255", "certified_108/255", "certified_1"]
    assert [column for column in runs.columns if column.startswith("certified_")] == certified
    assert [column for column in curves.columns if column.startswith("certified_")] == certified
    assert len(curves) == 8 * 3  # every epoch of every run that has metrics
    assert set(measurements["family"]) == {"aol", "standard"}


def test_mean_std_beside_published(collected):
    runs, _, _ = collected
    table = tables.experiment_table(runs, EXPERIMENT, [0, 1], PUBLISHED).set_index("family")
    assert list(table.index) == EXPERIMENT["families"]
    aol = table.loc["aol"]
    assert aol["clean_mean"] == pytest.approx(np.mean([80.0, 90.0]))
    assert aol["clean_std"] == pytest.approx(np.std([80.0, 90.0], ddof=1))
    assert aol["certified_36/255_mean"] == pytest.approx(72.0)
    assert aol["clean_published"] == 69.8  # AOL paper, Table 3, AOL-Small
    assert aol["certified_1_published"] == 21.8
    assert aol["clean_delta"] == pytest.approx(85.0 - 69.8)
    assert "Table 3" in aol["source"] and "AOL-Small" in aol["source"]
    # no published number: no source, no delta
    assert table.loc["standard", "source"] == ""
    assert math.isnan(table.loc["standard", "clean_delta"])
    assert math.isnan(table.loc["standard", "certified_36/255_mean"])  # no bound, no certificate
    # diverged, failed and audit-failed runs are counted, not averaged
    assert table.loc["shaky", "status"] == "0/2 completed, 2 diverged"
    assert math.isnan(table.loc["shaky", "clean_mean"])
    assert table.loc["crashy", "status"] == "0/1 completed, 1 failed"
    assert table.loc["unsound", "status"] == "1/2 completed, 1 audit failed"
    assert table.loc["unsound", "clean_mean"] == pytest.approx(80.0)


def test_rows_on_subsets_say_how_many_images(collected, tmp_path):
    runs, _, _ = collected
    assert runs["train_subset"].isna().all() and runs["test_subset"].isna().all()
    display = tables.display_experiment(
        tables.experiment_table(runs, EXPERIMENT, [0, 1], PUBLISHED)
    )
    # no row on a subset: no column
    assert "Train images" not in display.columns and "Test images" not in display.columns
    root = tmp_path / "subset"
    runs = [
        fake_run(root, "aol", seed, 0.8, [0.7, 0.6, 0.5, 0.2], subset=500, test_subset=40)
        for seed in (0, 1)
    ]
    runs.append(fake_run(root, "standard", 0, 0.9, None))
    subset_runs, _, _ = collect.collect(
        [run / "result.json" for run in runs], [run / "certify.json" for run in runs], []
    )
    by_family = subset_runs.set_index("family")
    assert by_family["train_subset"]["aol"].tolist() == [500, 500]
    assert by_family["test_subset"]["aol"].tolist() == [40, 40]
    experiment = {**EXPERIMENT, "families": ["aol", "standard"], "reference": None}
    table = tables.experiment_table(subset_runs, experiment, [0, 1], PUBLISHED)
    display = tables.display_experiment(table)
    assert display["Train images"].tolist() == ["500", "all"]
    assert display["Test images"].tolist() == ["40", "all"]
    assert "training split" in tables.column_note("Train images")
    assert "test split" in tables.column_note("Test images")


def test_settings_pick_published_rows():
    """Table 5: the variant picks the setting (offset / temperature) of the published row."""
    experiment = {
        "dataset": "cifar10",
        "architectures": ["aol-small"],
        "families": ["aol"],
        "variants": ["offset-4sqrt2"],
        "reference": {
            "paper": "Prach & Lampert ECCV 2022 (AOL)",
            "table": "Table 5",
            "dataset": "CIFAR-10",
            "match": [
                {"architecture": "aol-small", "method": "AOL-Small"},
                {"variant": "offset-4sqrt2", "setting": "u=4sqrt(2) t=1"},
                {"variant": "paper", "setting": "u=sqrt(2) t=1/4"},
            ],
        },
    }
    row = dict(architecture="aol-small", family="aol", variant="offset-4sqrt2")
    method, setting = tables.reference_for(row, experiment["reference"])
    published = tables.published_values(PUBLISHED, experiment["reference"], method, setting)
    assert published == {"clean": 59.8, "certified_36/255": 55.5, "certified_72/255": 50.9,
                         "certified_108/255": 46.5, "certified_1": 30.8}  # fmt: skip


def test_formats(collected, tmp_path):
    runs, _, _ = collected
    table = tables.experiment_table(runs, EXPERIMENT, [0, 1], PUBLISHED)
    display = tables.display_experiment(table)
    assert display.loc[0, "Clean"] == "85.0 ± 7.1"
    assert display.loc[0, "Clean pub."] == "69.8"
    assert display.loc[0, "Clean Δ"] == "+15.2"
    assert display.loc[2, "Clean"] == "2 diverged"

    class Output:
        csv = tmp_path / "t.csv"
        markdown = tmp_path / "t.md"
        latex = tmp_path / "t.tex"
        html = tmp_path / "t.html"

    tables.write_all(table, display, EXPERIMENT["title"], Output)
    assert len(pd.read_csv(Output.csv)) == len(EXPERIMENT["families"])
    markdown = Output.markdown.read_text().splitlines()
    assert sum(line.startswith("| aol-digits") for line in markdown) == 5
    latex = Output.latex.read_text()
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert latex.count(rule) == 1
    assert "85.0 $\\pm$ 7.1" in latex and "$\\Delta$" in latex
    assert latex.count("\\\\\n") == 1 + len(EXPERIMENT["families"])  # header + rows
    assert "<table" in Output.html.read_text()


def test_no_published_columns_without_published_numbers(collected):
    runs, _, _ = collected
    experiment = {**EXPERIMENT, "reference": None}
    table = tables.experiment_table(runs, experiment, [0, 1], PUBLISHED)
    display = tables.display_experiment(table)
    assert "Clean" in display.columns and "CRA 36/255" in display.columns
    radius_columns = [column for column in display.columns if column.startswith("CRA")]
    assert radius_columns == ["CRA 36/255", "CRA 72/255", "CRA 108/255", "CRA 1"]
    assert not [column for column in display.columns if "pub." in column or "Δ" in column]
    assert "Source" not in display.columns


@pytest.mark.parametrize("reference", [True, False])
def test_html_tables_are_styled_and_explain_their_own_columns(collected, reference):
    runs, _, measurements = collected
    experiment = EXPERIMENT if reference else {**EXPERIMENT, "reference": None}
    table = tables.experiment_table(runs, experiment, [0, 1], PUBLISHED)
    for display in (
        tables.display_experiment(table),
        tables.display_cost(tables.cost_table(measurements)),
    ):
        page = tables.to_html(display, "a title")
        assert "border-collapse" in page and "padding" in page  # cells do not run together
        notes = re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", page)
        assert [name for name, _ in notes] == [html.escape(c) for c in display.columns]
        assert all(note for _, note in notes), notes
        assert ("pub." in page) == ("Clean pub." in display.columns)
    assert ("Source" in page) is False  # the cost table
    legend = tables.to_html(tables.display_experiment(table), "")
    assert ("the published value" in legend) == reference
    assert ("Source</dt>" in legend) == reference


def test_cost_table_ratio_to_standard(collected):
    _, _, measurements = collected
    cost = tables.cost_table(measurements).set_index(["architecture", "family"])
    aol_row = cost.loc[("aol-digits", "aol")]
    assert aol_row["train_step_ms"] == pytest.approx(4.0)
    assert aol_row["train_step_vs_standard"] == pytest.approx(2.0)
    assert aol_row["inference_vs_standard"] == pytest.approx(2.0)
    assert aol_row["weight_transform_share_of_standard_step"] == pytest.approx(0.5)
    assert aol_row["peak_train_memory_mib"] == pytest.approx(3.0)
    assert aol_row["batch_size"] == 64 and aol_row["status"] == "completed"
    standard = cost.loc[("aol-digits", "standard")]
    assert standard["train_step_vs_standard"] == 1.0
    assert math.isnan(standard["weight_transform_ms"])


def test_cost_table_uses_the_ratios_of_the_measure_job(tmp_path):
    """The table copies the job's ratios (taken round by round, under the same machine load)
    instead of dividing medians of two rows: with standard's median changed in the file,
    the ratio stays the one the job wrote."""
    path = fake_measurement(tmp_path, "aol-digits", {"standard": 0.002, "aol": 0.004})
    report = json.loads(path.read_text())
    report["families"]["standard"]["train_step_seconds"]["median"] = 0.001
    write(path, report)
    _, _, measurements = collect.collect([], [], [path])
    cost = tables.cost_table(measurements).set_index("family")
    assert cost.loc["aol", "train_step_vs_standard"] == pytest.approx(2.0)


def test_a_failed_measure_job_gives_a_failed_row_per_family(collected):
    _, _, measurements = collected
    cost = tables.cost_table(measurements)
    failed = cost[cost["architecture"] == "convnet-xs"]
    assert list(failed["family"]) == ["standard", "aol"]
    assert (failed["status"] == "failed").all() and failed["batch_size"].eq(64).all()
    assert failed["train_step_vs_standard"].isna().all()
    display = tables.display_cost(cost).set_index(["Architecture", "Family"])
    assert display.loc[("convnet-xs", "aol"), "Train vs standard"] == ""
    assert display.loc[("aol-digits", "aol"), "Train vs standard"] == "2.00"
    assert display.loc[("aol-digits", "aol"), "Transform / standard step"] == "0.50"


@pytest.mark.parametrize("name", list(figures.FIGURES))
def test_figures_are_drawn(collected, tmp_path, name):
    runs, curves, measurements = collected
    figure = figures.draw(name, runs, curves, measurements)
    for extension in ("png", "pdf"):
        path = tmp_path / f"{name}.{extension}"
        figure.savefig(path)
        assert path.stat().st_size > 1000
    plotted = sum(len(axis.lines) + len(axis.collections) + len(axis.patches)
                  for axis in figure.axes)  # fmt: skip
    assert plotted > 0


def test_figures_place_and_label_each_radius_by_its_value_and_text(collected):
    runs, curves, measurements = collected
    figure = figures.draw("certified_accuracy_vs_epsilon", runs, curves, measurements)
    radii = {round(x, 12) for axis in figure.axes for line in axis.lines for x in line.get_xdata()}
    assert {0.0, round(36 / 255, 12), round(108 / 255, 12), 1.0} <= radii
    figure = figures.draw("accuracy_vs_training_time", runs, curves, measurements)
    assert [axis.get_title() for axis in figure.axes] == ["clean accuracy", "certified at 36/255"]
    figure = figures.draw("training_curves", runs, curves, measurements)
    labels = {text.get_text() for legend in figure.legends for text in legend.get_texts()}
    assert {"test accuracy", "certified at 36/255"} <= labels


def legend_texts(figure) -> set[str]:
    legends = [*figure.legends, *(axis.get_legend() for axis in figure.axes)]
    return {text.get_text() for legend in legends if legend for text in legend.get_texts()}


def test_figures_say_what_they_compare_and_share_the_accuracy_range(collected):
    runs, curves, measurements = collected
    figure = figures.draw("certified_accuracy_vs_epsilon", runs, curves, measurements)
    titles = [axis.get_title() for axis in figure.axes]
    assert "digits, aol-digits network, variant quick: certified accuracy by radius" in titles
    assert not any(" / " in title for title in titles)
    assert {axis.get_ylim() for axis in figure.axes} == {(0, 100)}
    # error bars over the seeds (line collections), not only the mean line
    assert any(len(axis.collections) for axis in figure.axes)
    figure = figures.draw("accuracy_vs_training_time", runs, curves, measurements)
    assert {axis.get_ylim() for axis in figure.axes} == {(0, 100)}
    assert "aol-digits" not in legend_texts(figure)  # one architecture: no legend entry for it


def test_training_curves_mark_the_certificate_of_each_family(collected):
    runs, curves, measurements = collected
    figure = figures.draw("training_curves", runs, curves, measurements)
    stars = [line for axis in figure.axes for line in axis.lines if line.get_marker() == "*"]
    completed = runs[runs["status"] == "completed"]
    certified = completed.groupby("family")["certified_36/255"].mean().dropna()
    assert sorted(line.get_ydata()[0] for line in stars) == pytest.approx(sorted(certified))
    assert "certify, float64 (36/255)" in legend_texts(figure)


def test_cost_figure_has_quartile_error_bars_and_no_single_architecture_legend(collected):
    runs, curves, measurements = collected
    single = measurements[measurements["architecture"] == "aol-digits"]
    figure = figures.draw("time_and_memory", runs, curves, single)
    assert "aol-digits" not in legend_texts(figure)
    assert sum(len(axis.collections) for axis in figure.axes[:2]) >= 2  # error bars
    assert "aol-digits" in figure._suptitle.get_text()
