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


def reference_for(row: dict, reference: dict | None) -> tuple[str, str] | None:
    """(method, setting) of a row from the experiment's reference.match entries."""
    if not reference:
        return None
    method, setting = None, ""
    for entry in reference.get("match", []):
        if all(entry[key] == row[key] for key in ROW_KEYS if key in entry):
            method = entry.get("method", method)
            setting = entry.get("setting", setting)
    return None if method is None else (method, setting)


def published_values(published: pd.DataFrame, reference: dict, method: str, setting: str):
    selected = published[
        (published["paper"] == reference["paper"])
        & (published["table"] == reference["table"])
        & (published["dataset"] == reference["dataset"])
        & (published["method"] == method)
        & (published["setting"].fillna("") == setting)
    ]
    return dict(zip(selected["metric"], selected["value"].astype(float), strict=True))


def status_summary(statuses: pd.Series) -> str:
    counts = statuses.value_counts()
    completed = int(counts.get("completed", 0))
    text = f"{completed}/{len(statuses)} completed"
    others = [f"{count} {status}" for status, count in counts.items() if status != "completed"]
    return ", ".join([text, *others])


def experiment_table(
    runs: pd.DataFrame, experiment: dict, seeds: list[int], published: pd.DataFrame
) -> pd.DataFrame:
    """The numeric table of one experiment (one row per architecture, family, variant)."""
    selected = runs[
        (runs["dataset"] == experiment["dataset"])
        & runs["architecture"].isin(experiment["architectures"])
        & runs["family"].isin(experiment["families"])
        & runs["variant"].isin(experiment["variants"])
        & runs["seed"].isin(seeds)
    ]
    metrics = metric_columns(runs)
    reference = experiment.get("reference")
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
                completed = group[group["status"] == "completed"]
                row["seeds"] = len(group)
                row["completed"] = len(completed)
                row["status"] = status_summary(group["status"]) if len(group) else "missing"
                match = reference_for(row, reference)
                values = published_values(published, reference, *match) if match else {}
                for metric in metrics:
                    observed = completed[metric].dropna() if metric in completed else pd.Series([])
                    mean = observed.mean() if len(observed) else math.nan
                    std = observed.std(ddof=1) if len(observed) > 1 else math.nan
                    row[f"{metric}_mean"] = mean
                    row[f"{metric}_std"] = std
                    row[f"{metric}_published"] = values.get(metric, math.nan)
                    row[f"{metric}_delta"] = mean - values.get(metric, math.nan)
                row["train_seconds_mean"] = (
                    completed["train_seconds"].mean() if len(completed) else math.nan
                )
                row["source"] = (
                    f"{reference['paper']}, {reference['table']}, {match[0]}"
                    + (f" ({match[1]})" if match[1] else "")
                    if match and values
                    else ""
                )
                rows.append(row)
    return pd.DataFrame(rows)


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
    if published:
        display["Source"] = table["source"]
    return display


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
        published = pd.read_csv(snakemake.input.reference)
        table = experiment_table(runs, experiment, snakemake.params.seeds, published)
        display = display_experiment(table)
        title = experiment.get("title") or experiment["name"]
    write_all(table, display, title, snakemake.output)


if __name__ == "__main__" and "snakemake" in globals():
    sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
    main(snakemake)  # noqa: F821
