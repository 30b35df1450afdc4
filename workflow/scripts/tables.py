"""Tables: each experiment's runs as mean +- std over seeds beside the published numbers.

One row per (architecture, family, variant). For every metric (clean accuracy and the
certified robust accuracy at each radius, in %) the row holds the reproduced mean and
standard deviation over the completed seeds, the published value with its source
(results/reference/published.csv) and the difference reproduced - published. Runs
that diverged, failed or whose audit failed are counted in the status column and left
out of the means; a row with no completed run shows its status instead of numbers.

The cost table ("cost") lists the measured time and memory per (dataset, architecture,
family), with the training step and inference times relative to the `standard` family timed
beside it in the same measure job (and the weight transform as a share of its step).

Every table is written as CSV (numbers), Markdown, LaTeX (booktabs) and HTML (report).
"""

import html
import math
import re
import sys

import pandas as pd

from aol.radius import Radius

ROW_KEYS = ["architecture", "family", "variant"]
#: runs.csv (workflow/scripts/collect.py) names the certified accuracy at a radius
#: certified_<radius>, with the radius's text: certified_36/255, certified_1
CERTIFIED_PREFIX = "certified_"


def certified_radius(metric: str) -> Radius | None:
    """The radius of a certified-accuracy metric (certified_36/255 -> 36/255), else None."""
    if not metric.startswith(CERTIFIED_PREFIX):
        return None
    return Radius.parse(metric.removeprefix(CERTIFIED_PREFIX))


def metric_columns(runs: pd.DataFrame) -> list[str]:
    """clean, then certified_<radius> from the smallest radius to the largest."""
    certified = sorted(
        (column for column in runs.columns if certified_radius(column) is not None),
        key=certified_radius,
    )
    return ["clean", *certified]


def metric_label(metric: str) -> str:
    """Clean, or CRA and the radius's text: "CRA 36/255", "CRA 1"."""
    return "Clean" if metric == "clean" else f"CRA {certified_radius(metric)}"


#: results/reference/published.csv names the certified accuracy at radius N/255 cra_N
#: (cra_36, cra_255); runs.csv names it certified_<radius>
PUBLISHED_CERTIFIED = re.compile(r"cra_(\d+)")


def published_metric(name: str) -> str:
    """A metric of published.csv in the names of runs.csv: cra_36 -> certified_36/255,
    cra_255 -> certified_1; other names (clean, epochs_in_2h) as they are."""
    match = PUBLISHED_CERTIFIED.fullmatch(name)
    if match is None:
        return name
    return f"{CERTIFIED_PREFIX}{Radius.parse(match.group(1) + '/255')}"


def load_published(path) -> pd.DataFrame:
    """results/reference/published.csv with its metrics in the names of runs.csv."""
    published = pd.read_csv(path)
    published["metric"] = published["metric"].map(published_metric)
    return published


MATCH_FIELDS = ("method", "setting", "setting_suffix", "table")


def reference_match(row: dict, reference: dict | None) -> dict | None:
    """The method, setting, setting_suffix and table of a row from the experiment's
    reference.match entries (every entry whose architecture/family/variant keys equal the
    row's; later entries win); None when no entry gives a method."""
    if not reference:
        return None
    found = {"method": None, "setting": "", "setting_suffix": "", "table": reference["table"]}
    for entry in reference.get("match", []):
        if all(entry[key] == row[key] for key in ROW_KEYS if key in entry):
            found.update({field: entry[field] for field in MATCH_FIELDS if field in entry})
    return None if found["method"] is None else found


def reference_for(row: dict, reference: dict | None) -> tuple[str, str] | None:
    """(method, setting) of a row's published metrics (the setting with its suffix)."""
    match = reference_match(row, reference)
    if match is None:
        return None
    return match["method"], match["setting"] + match["setting_suffix"]


def published_values(
    published: pd.DataFrame, reference: dict, method: str, setting: str, table: str | None = None
):
    selected = published[
        (published["paper"] == reference["paper"])
        & (published["table"] == (table or reference["table"]))
        & (published["dataset"] == reference["dataset"])
        & (published["method"] == method)
        & (published["setting"].fillna("") == setting)
    ]
    return dict(zip(selected["metric"], selected["value"].astype(float), strict=True))


def published_epochs(
    published: pd.DataFrame, reference: dict, match: dict | None, budget_hours: float | None
) -> float:
    """The epochs the paper trained for the row's nominal budget: its epoch count for
    reference.epochs.budget_hours scaled to the budget and floored (1LLC scales its Table 8
    2 h counts so: berndprach/1LipschitzLayersCompared@01e3f2a make_tree.py get_epochs)."""
    counts = reference.get("epochs") if reference else None
    if not counts or match is None or budget_hours is None:
        return math.nan
    values = published_values(
        published, reference, match["method"], match["setting"], counts["table"]
    )
    if counts["metric"] not in values:
        return math.nan
    return float(math.floor(values[counts["metric"]] * budget_hours / counts["budget_hours"]))


def status_summary(statuses: pd.Series) -> str:
    counts = statuses.value_counts()
    completed = int(counts.get("completed", 0))
    text = f"{completed}/{len(statuses)} completed"
    others = [f"{count} {status}" for status, count in counts.items() if status != "completed"]
    return ", ".join([text, *others])


def mean_of(frame: pd.DataFrame, column: str) -> float:
    """The mean of a column of the completed runs (NaN when none or no such column)."""
    return frame[column].mean() if column in frame and len(frame) else math.nan


def budget_columns(completed: pd.DataFrame, epochs_published: float) -> dict:
    """Epochs and training time of the row beside the budget: the planned epochs (the
    configured ones without a budget), the training steps' seconds and their share of the
    budget (NaN without a budget), and the paper's epoch count for the same budget."""
    return {
        "epochs_mean": mean_of(completed, "epochs"),
        "epochs_published": epochs_published,
        "budget_seconds": mean_of(completed, "budget_seconds"),
        "train_step_seconds_mean": mean_of(completed, "train_step_seconds"),
        "budget_used_mean": mean_of(completed, "budget_used"),
    }


def experiment_table(
    runs: pd.DataFrame,
    experiment: dict,
    seeds: list[int],
    published: pd.DataFrame,
    budget_hours: dict | None = None,
) -> pd.DataFrame:
    """The numeric table of one experiment (one row per architecture, family, variant);
    ``budget_hours``: {variant: its nominal budget}, for the paper's epoch counts."""
    selected = runs[
        (runs["dataset"] == experiment["dataset"])
        & runs["architecture"].isin(experiment["architectures"])
        & runs["family"].isin(experiment["families"])
        & runs["variant"].isin(experiment["variants"])
        & runs["seed"].isin(seeds)
    ]
    metrics = metric_columns(runs)
    rows = []
    for architecture in experiment["architectures"]:
        for family in experiment["families"]:
            for variant in experiment["variants"]:
                group = selected[
                    (selected["architecture"] == architecture)
                    & (selected["family"] == family)
                    & (selected["variant"] == variant)
                ]
                row = dict(architecture=architecture, family=family, variant=variant)
                hours = (budget_hours or {}).get(variant)
                rows.append(experiment_row(row, group, metrics, experiment, published, hours))
    return pd.DataFrame(rows)


def experiment_row(
    row: dict,
    group: pd.DataFrame,
    metrics: list[str],
    experiment: dict,
    published: pd.DataFrame,
    budget_hours: float | None,
) -> dict:
    """One row: the runs' statuses, each metric's mean and std beside the published value,
    the time and epochs beside the budget, the source of the published numbers."""
    completed = group[group["status"] == "completed"]
    row["seeds"] = len(group)
    row["completed"] = len(completed)
    row["status"] = status_summary(group["status"]) if len(group) else "missing"
    reference = experiment.get("reference")
    match = reference_match(row, reference)
    method_setting = reference_for(row, reference)
    values = (
        published_values(published, reference, *method_setting, match["table"]) if match else {}
    )
    for metric in metrics:
        observed = completed[metric].dropna() if metric in completed else pd.Series([])
        mean = observed.mean() if len(observed) else math.nan
        row[f"{metric}_mean"] = mean
        row[f"{metric}_std"] = observed.std(ddof=1) if len(observed) > 1 else math.nan
        row[f"{metric}_published"] = values.get(metric, math.nan)
        row[f"{metric}_delta"] = mean - values.get(metric, math.nan)
    row["train_seconds_mean"] = mean_of(completed, "train_seconds")
    row["train_subset"] = mean_of(completed, "train_subset")  # NaN: the whole split
    row["test_subset"] = mean_of(completed, "test_subset")
    epochs = published_epochs(published, reference, match, budget_hours)
    row.update(budget_columns(completed, epochs))
    row["source"] = ""
    if match and values:
        method, setting = method_setting
        row["source"] = f"{reference['paper']}, {match['table']}, {method}" + (
            f" ({setting})" if setting else ""
        )
    return row


def cost_table(measurements: pd.DataFrame) -> pd.DataFrame:
    """Time (ms, median), ratios to `standard` and peak memory (MiB) per (dataset,
    architecture, family). The ratios are those of the measure job, where every family of an
    architecture was timed side by side with `standard`, round by round; they are not
    recomputed here from medians of different rows."""
    return pd.DataFrame(
        {
            "dataset": measurements["dataset"],
            "architecture": measurements["architecture"],
            "family": measurements["family"],
            "status": measurements["status"],
            "batch_size": measurements["batch_size"],
            "train_step_ms": 1e3 * measurements["train_step_seconds_median"],
            "train_step_ms_q1": 1e3 * measurements["train_step_seconds_q1"],
            "train_step_ms_q3": 1e3 * measurements["train_step_seconds_q3"],
            "train_step_vs_standard": measurements["train_step_vs_standard"],
            "inference_ms": 1e3 * measurements["inference_seconds_median"],
            "inference_vs_standard": measurements["inference_vs_standard"],
            "weight_transform_ms": 1e3 * measurements["weight_transform_seconds_median"],
            "weight_transform_share_of_standard_step": measurements[
                "weight_transform_share_of_standard_step"
            ],
            "peak_train_memory_mib": measurements["peak_train_memory_bytes"] / 2**20,
            "memory_method": measurements["memory_method"],
            "num_parameters": measurements["num_parameters"],
            "device_name": measurements["device_name"],
        }
    )


# ---------------------------------------------------------------- formatting


def _number(value: float, digits: int = 1) -> str:
    return "" if pd.isna(value) else f"{value:.{digits}f}"


def _signed(value: float) -> str:
    return "" if pd.isna(value) else f"{value:+.1f}"


def _mean_std(row: pd.Series, metric: str, plus_minus: str) -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if pd.isna(mean):
        return "no bound" if row["completed"] else row["status"].split(", ")[-1]
    return _number(mean) if pd.isna(std) else f"{mean:.1f} {plus_minus} {std:.1f}"


def display_experiment(table: pd.DataFrame, plus_minus: str = "±") -> pd.DataFrame:
    """The human-readable table: strings, mean ± std beside published and delta."""
    means = [column.removesuffix("_mean") for column in table.columns if column.endswith("_mean")]
    metrics = [m for m in means if m == "clean" or certified_radius(m) is not None]
    display = pd.DataFrame(
        {
            "Architecture": table["architecture"],
            "Family": table["family"],
            "Variant": table["variant"],
            "Runs": table["status"],
        }
    )
    # an experiment without any published number gets no empty pub./delta/source columns
    published = any(table[f"{metric}_published"].notna().any() for metric in metrics)
    for metric in metrics:
        label = metric_label(metric)
        display[label] = [_mean_std(row, metric, plus_minus) for _, row in table.iterrows()]
        if published:
            display[f"{label} pub."] = table[f"{metric}_published"].map(_number)
            display[f"{label} Δ"] = table[f"{metric}_delta"].map(_signed)
    display["Train s"] = table["train_seconds_mean"].map(lambda v: _number(v, 0))
    add_budget_columns(display, table)
    if published:
        display["Source"] = table["source"]
    return display


def add_budget_columns(display: pd.DataFrame, table: pd.DataFrame) -> None:
    """The training and test images of rows on subsets (where any row has one), epochs
    (ours, and the paper's for the same budget where it gave one) and, for an experiment
    with budgets, the budget, the training steps' seconds and their share."""
    for column, label in (("train_subset", "Train images"), ("test_subset", "Test images")):
        if column in table and table[column].notna().any():
            display[label] = table[column].map(lambda v: "all" if pd.isna(v) else _number(v, 0))
    display["Epochs"] = table["epochs_mean"].map(lambda v: _number(v, 0))
    if table["epochs_published"].notna().any():
        display["Epochs pub."] = table["epochs_published"].map(lambda v: _number(v, 0))
    if table["budget_seconds"].notna().any():
        display["Budget s"] = table["budget_seconds"].map(lambda v: _number(v, 0))
        display["Steps s"] = table["train_step_seconds_mean"].map(lambda v: _number(v, 0))
        display["Used %"] = (100 * table["budget_used_mean"]).map(lambda v: _number(v, 0))


def display_cost(table: pd.DataFrame) -> pd.DataFrame:
    def two_digits(column: str) -> pd.Series:
        return table[column].map(lambda v: _number(v, 2))

    return pd.DataFrame(
        {
            "Dataset": table["dataset"],
            "Architecture": table["architecture"],
            "Family": table["family"],
            "Status": table["status"],
            "Train step ms": two_digits("train_step_ms"),
            "Train vs standard": two_digits("train_step_vs_standard"),
            "Inference ms": two_digits("inference_ms"),
            "Inference vs standard": two_digits("inference_vs_standard"),
            "Weight transform ms": two_digits("weight_transform_ms"),
            "Transform / standard step": two_digits("weight_transform_share_of_standard_step"),
            "Peak train MiB": table["peak_train_memory_mib"].map(lambda v: _number(v, 1)),
            "Parameters": table["num_parameters"].map(lambda v: "" if pd.isna(v) else f"{v:,.0f}"),
            "Device": table["device_name"].fillna(""),
        }
    )


def to_markdown(display: pd.DataFrame, title: str) -> str:
    def cell(value) -> str:
        return str(value).replace("|", "\\|")

    lines = [f"# {title}", ""] if title else []
    lines.append("| " + " | ".join(map(cell, display.columns)) + " |")
    lines.append("|" + "|".join("---" for _ in display.columns) + "|")
    for _, row in display.iterrows():
        lines.append("| " + " | ".join(cell(value) for value in row) + " |")
    return "\n".join(lines) + "\n"


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
}


def latex_escape(text) -> str:
    return "".join(LATEX_SPECIAL.get(character, character) for character in str(text))


def to_latex(display: pd.DataFrame, title: str) -> str:
    """A booktabs table (needs \\usepackage{booktabs} in the document)."""
    alignment = "l" * 3 + "r" * (len(display.columns) - 3)
    lines = [
        "% generated by workflow/scripts/tables.py; needs \\usepackage{booktabs}",
        "\\begin{table}",
        "\\centering",
    ]
    if title:
        lines.append(f"\\caption{{{latex_escape(title)}}}")
    lines += [
        f"\\begin{{tabular}}{{{alignment}}}",
        "\\toprule",
        " & ".join(latex_escape(column) for column in display.columns) + " \\\\",
        "\\midrule",
    ]
    for _, row in display.iterrows():
        lines.append(" & ".join(latex_escape(value) for value in row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


# the report shows the HTML table as it is: without a style its cells run together
TABLE_STYLE = """<style>
body { font-family: sans-serif; margin: 1em; }
table.table { border-collapse: collapse; font-size: 0.9em; }
table.table th, table.table td { border: 1px solid #bbb; padding: 0.25em 0.6em; }
table.table th { background: #eee; text-align: left; }
table.table td { text-align: right; white-space: nowrap; }
table.table td:nth-child(-n+3) { text-align: left; }
table.table tbody tr:nth-child(even) { background: #f7f7f7; }
dl.columns { font-size: 0.85em; }
dl.columns dt { font-weight: bold; float: left; margin-right: 0.5em; }
</style>"""

FIXED_COLUMN_NOTES = {
    "Dataset": "the dataset",
    "Architecture": "the network (aol.architectures)",
    "Family": "the layer family (aol.families)",
    "Variant": "the training recipe of the config (variants)",
    "Runs": "completed seeds / all seeds, and how many diverged or failed",
    "Status": "whether the measurement completed",
    "Clean": "clean test accuracy in %, mean ± std over the completed seeds",
    "Train s": "training wall time in seconds, mean over the completed seeds",
    "Train images": "images of the training split per epoch (variant key train_subset; all: "
    "the whole split)",
    "Test images": "images of the test split behind Clean and CRA (certify.test_subset; all: "
    "the whole split)",
    "Epochs": "epochs trained (a budget run: the epochs its calibration planned), mean",
    "Epochs pub.": "the epochs 1-Lipschitz Layers Compared trained for the same budget (Table 8)",
    "Budget s": "the training budget in seconds of the target device (times budget_scale)",
    "Steps s": "seconds the training steps took (evaluations excluded), mean",
    "Used %": "training-step seconds / budget in %, mean over the completed seeds",
    "Source": "the paper and table of the published numbers",
    "Train step ms": "median time of one training step (forward, backward, update)",
    "Train vs standard": "the training step relative to the standard family's",
    "Inference ms": "median time of one forward pass of the exported model",
    "Inference vs standard": "inference relative to the standard family's",
    "Weight transform ms": "median time of computing the constrained weights once",
    "Transform / standard step": "the weight transform relative to a standard training step",
    "Peak train MiB": "peak memory of a training step",
    "Parameters": "trainable parameters",
    "Device": "where it was measured",
}


def column_note(column: str) -> str:
    """What a column of a displayed table holds (the HTML table lists its own columns)."""
    if column in FIXED_COLUMN_NOTES:
        return FIXED_COLUMN_NOTES[column]
    base, _, suffix = column.rpartition(" ")
    if suffix == "pub.":
        return f"{base}: the published value"
    if suffix == "Δ":
        return f"{base}: reproduced mean − published value"
    if column.startswith("CRA "):
        return (
            f"certified robust accuracy in % at l2 radius {column[4:]} (pixel scale [0, 1]), "
            "mean ± std over the completed seeds; no bound: the family guarantees none"
        )
    return ""


def to_html(display: pd.DataFrame, title: str) -> str:
    body = display.to_html(index=False, border=0, classes="table", na_rep="")
    heading = f"<h2>{html.escape(title)}</h2>\n" if title else ""
    notes = "".join(
        f"<dt>{html.escape(column)}</dt><dd>{html.escape(column_note(column))}</dd>"
        for column in display.columns
    )
    head = f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'>{TABLE_STYLE}</head><body>\n"
    legend = f"<dl class='columns'>{notes}</dl>"
    return f"{head}{heading}{body}\n{legend}\n</body></html>\n"


def write_all(table: pd.DataFrame, display: pd.DataFrame, title: str, output) -> None:
    table.to_csv(output.csv, index=False)
    with open(output.markdown, "w") as handle:
        handle.write(to_markdown(display, title))
    with open(output.latex, "w") as handle:
        handle.write(to_latex(display, title))
    with open(output.html, "w") as handle:
        handle.write(to_html(display, title))


def main(snakemake) -> None:
    experiment = snakemake.params.experiment
    if experiment is None:  # the cost table
        measurements = pd.read_csv(snakemake.input.measurements)
        table = cost_table(measurements)
        display = display_cost(table)
        title = "Time and memory per layer family (median over repeats)"
    else:
        runs = pd.read_csv(snakemake.input.runs)
        published = load_published(snakemake.input.reference)
        table = experiment_table(
            runs, experiment, snakemake.params.seeds, published, snakemake.params.budget_hours
        )
        display = display_experiment(table)
        title = experiment.get("title") or experiment["name"]
    write_all(table, display, title, snakemake.output)


if __name__ == "__main__" and "snakemake" in globals():
    sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
    main(snakemake)  # noqa: F821
