"""Figures of the pipeline (seaborn), each saved as PNG and PDF.

- certified_accuracy_vs_epsilon: certified robust accuracy (%) against the radius, one
  line per family (mean over seeds, band = standard deviation), one panel per
  (dataset, architecture, variant). Radius 0 is the clean accuracy. Families without a
  guaranteed bound have no certified accuracy and appear only at radius 0.
- accuracy_vs_training_time: clean and certified (smallest radius) accuracy against the
  training wall time, one point per run: the accuracy/cost trade-off.
- time_and_memory: training-step time, inference time (error bars: quartiles of the
  repeats) and peak training memory per family, one bar group per architecture.
- training_curves: test accuracy and certified accuracy (smallest radius) per epoch as
  training monitored them (float32), and a star at the last epoch for the certificate.
- certified_accuracy_vs_training_time / certified_accuracy_vs_memory: certified accuracy at
  36/255 against the training steps' seconds / the peak training memory, one point per
  (architecture, family) (mean over seeds), one panel per (dataset, variant), with the Pareto
  front (no other point is both cheaper and more accurate) drawn: the trade-off plots of
  "1-Lipschitz Layers Compared" (Prach et al., CVPR 2024, Fig. 1) for budget runs.

Titles say in words what is compared; a hue or style that holds one value gets no legend
entry; accuracy panels share the 0-100 % range.

Only completed runs are drawn; the tables list the others.
"""

import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from aol.radius import Radius  # noqa: E402

#: runs.csv and curves.csv (workflow/scripts/collect.py) name the certified accuracy at a
#: radius certified_<radius>, with the radius's text: certified_36/255, certified_1
CERTIFIED_PREFIX = "certified_"


def certified_columns(frame: pd.DataFrame) -> dict[str, Radius]:
    """The certified-accuracy columns and their radii, from the smallest radius up."""
    radii = {
        column: Radius.parse(column.removeprefix(CERTIFIED_PREFIX))
        for column in frame.columns
        if column.startswith(CERTIFIED_PREFIX)
    }
    return dict(sorted(radii.items(), key=lambda item: item[1]))


def metric_label(metric: str, radii: dict[str, Radius], other: str) -> str:
    """ "certified at 36/255" for a certified-accuracy column, else ``other``."""
    return f"certified at {radii[metric]}" if metric in radii else other


def panel(frame: pd.DataFrame) -> pd.Series:
    """A panel's title in words: "digits, aol-digits network, variant digits"."""
    return (
        frame["dataset"]
        + ", "
        + frame["architecture"]
        + " network, variant "
        + frame["variant"].astype(str)
    )


def drop_single_entry(frame: pd.DataFrame, column: str) -> str | None:
    """column for a hue/style when it holds two values or more; None (no legend entry that
    names the only value) otherwise."""
    return column if frame[column].nunique() > 1 else None


def percent_axes(grid) -> None:
    """The same y range, 0-100 %, on every panel of an accuracy figure."""
    for axis in grid.axes.flat:
        axis.set_ylim(0, 100)


def lines_per_panel(long: pd.DataFrame, x: str, **style):
    """``accuracy`` against ``x``: a line per family (mean over seeds, +-sd error bars), a panel
    per dataset, architecture and variant (``panel``), on the 0-100 % range; ``style``: more
    arguments of ``sns.relplot``."""
    grid = sns.relplot(
        data=long,
        x=x,
        y="accuracy",
        hue="family",
        col="panel",
        col_wrap=min(3, long["panel"].nunique()),
        kind="line",
        errorbar="sd",
        err_style="bars",
        height=3.2,
        **style,
    )
    percent_axes(grid)
    return grid


def empty_figure(message: str):
    figure, axis = plt.subplots(figsize=(5, 2))
    axis.axis("off")
    axis.text(0.5, 0.5, message, ha="center", va="center")
    return figure


def certified_accuracy_vs_epsilon(runs: pd.DataFrame, curves, measurements):
    completed = runs[runs["status"] == "completed"]
    if completed.empty:
        return empty_figure("no completed run")
    radii = certified_columns(completed)
    long = completed.assign(panel=panel(completed)).melt(
        id_vars=["panel", "family", "seed"],
        value_vars=["clean", *radii],
        var_name="metric",
        value_name="accuracy",
    )
    long["epsilon"] = long["metric"].map(
        lambda metric: float(radii[metric]) if metric in radii else 0.0
    )
    long = long.dropna(subset=["accuracy"])
    grid = lines_per_panel(long, "epsilon", marker="o", facet_kws={"sharey": True})
    grid.set_axis_labels("radius ε (pixel scale [0, 1])", "certified accuracy (%)")
    grid.set_titles("{col_name}: certified accuracy by radius")
    return grid.figure


def accuracy_vs_training_time(runs: pd.DataFrame, curves, measurements):
    completed = runs[runs["status"] == "completed"]
    if completed.empty:
        return empty_figure("no completed run")
    radii = certified_columns(completed)
    value_vars = ["clean", *list(radii)[:1]]
    long = completed.melt(
        id_vars=["family", "architecture", "train_seconds"],
        value_vars=value_vars,
        var_name="metric",
        value_name="accuracy",
    ).dropna(subset=["accuracy"])
    long["metric"] = long["metric"].map(lambda m: metric_label(m, radii, "clean accuracy"))
    grid = sns.relplot(
        data=long,
        x="train_seconds",
        y="accuracy",
        hue="family",
        style=drop_single_entry(long, "architecture"),
        col="metric",
        s=70,
        height=3.4,
        facet_kws={"sharey": True},
    )
    seconds = long["train_seconds"].dropna()
    logarithmic = len(seconds) and seconds.min() > 0 and seconds.max() / seconds.min() > 20
    if logarithmic:
        grid.set(xscale="log")
    scale = ", log scale" if logarithmic else ""
    grid.set_axis_labels(f"training wall time (s{scale})", "accuracy (%)")
    grid.set_titles("{col_name}")
    percent_axes(grid)
    architectures = ", ".join(sorted(long["architecture"].unique()))
    grid.figure.suptitle(f"accuracy against training time, {architectures}", y=1.03)
    return grid.figure


def time_and_memory(runs, curves, measurements: pd.DataFrame):
    measured = measurements[measurements["status"] == "completed"]
    if measured.empty:
        return empty_figure("no completed measurement")
    timings = {
        "train_step_seconds": "training step (ms)",
        "inference_seconds": "inference, exported (ms)",
    }
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    hue = drop_single_entry(measured, "architecture")
    for axis, (timing, label) in zip(axes, timings.items(), strict=False):
        bars(axis, measured, f"{timing}_median", 1e3, hue, spread=timing)
        axis.set_ylabel(f"{label}, median; bars: quartiles")
    bars(axes[2], measured, "peak_train_memory_bytes", 2.0**-20, hue)
    axes[2].set_ylabel("peak training memory (MiB)")
    architectures = ", ".join(sorted(measured["architecture"].unique()))
    figure.suptitle(f"time and memory per layer family, {architectures} network")
    figure.tight_layout()
    return figure


def bars(axis, measured: pd.DataFrame, column: str, scale: float, hue, spread=None) -> None:
    """One bar per family (and architecture); with ``spread``, error bars from its quartiles
    (the measurement's repeats)."""
    data = measured.assign(value=measured[column] * scale).reset_index(drop=True)
    sns.barplot(data=data, x="family", y="value", hue=hue, ax=axis, errorbar=None)
    if spread is not None and hue is None:
        low = (data["value"] - data[f"{spread}_q1"] * scale).clip(lower=0)
        high = (data[f"{spread}_q3"] * scale - data["value"]).clip(lower=0)
        positions = [tick for tick, _ in enumerate(data["family"])]
        axis.errorbar(positions, data["value"], yerr=[low, high], fmt="none", ecolor="black")
    axis.set_xlabel("")
    axis.tick_params(axis="x", rotation=30)


def training_curves(runs, curves: pd.DataFrame, measurements):
    """Per epoch the monitoring values of training (test accuracy, certified accuracy at the
    smallest radius: float32, whose bound carries a float32 rounding allowance, so it sits
    below the certificate); a star at the last epoch marks the certified accuracy of
    `python -m aol certify` (float64, exported weights), the number the tables show."""
    if curves.empty:
        return empty_figure("no finished epoch")
    radii = certified_columns(curves)
    value_vars = ["test_accuracy", *list(radii)[:1]]
    long = (
        curves.assign(panel=panel(curves))
        .melt(
            id_vars=["panel", "family", "seed", "epoch"],
            value_vars=value_vars,
            var_name="metric",
            value_name="accuracy",
        )
        .dropna(subset=["accuracy"])
    )
    long["metric"] = long["metric"].map(lambda m: metric_label(m, radii, "test accuracy"))
    families = sorted(long["family"].unique())
    palette = dict(zip(families, sns.color_palette(n_colors=len(families)), strict=True))
    grid = lines_per_panel(long, "epoch", style="metric", palette=palette)
    if radii:
        mark_certificates(grid, runs, curves, next(iter(radii)), palette)
    grid.set_axis_labels("epoch", "accuracy (%)")
    grid.set_titles("{col_name}: accuracy during training")
    return grid.figure


#: the radius of the trade-off figures, 1LLC's headline radius (Table 2)
PARETO_RADIUS = Radius.parse("36/255")
MODEL_KEYS = ["dataset", "variant", "architecture", "family"]


def model_points(runs: pd.DataFrame, measurements: pd.DataFrame) -> pd.DataFrame:
    """Completed runs' mean certified accuracy at PARETO_RADIUS, training steps' seconds and
    (where measured) peak training memory in MiB per (dataset, variant, architecture, family)."""
    certified = f"{CERTIFIED_PREFIX}{PARETO_RADIUS}"
    completed = runs[runs["status"] == "completed"]
    if certified not in completed or "train_step_seconds" not in completed:
        return pd.DataFrame(columns=[*MODEL_KEYS, "certified", "seconds", "memory_mib"])
    points = (
        completed.groupby(MODEL_KEYS)[[certified, "train_step_seconds"]]
        .mean()
        .reset_index()
        .rename(columns={certified: "certified", "train_step_seconds": "seconds"})
    )
    points["memory_mib"] = float("nan")
    if {"status", "peak_train_memory_bytes"} <= set(measurements.columns):  # measure enabled
        memory = measurements[measurements["status"] == "completed"][
            ["dataset", "architecture", "family", "peak_train_memory_bytes"]
        ]
        points = points.drop(columns="memory_mib").merge(
            memory, on=["dataset", "architecture", "family"], how="left"
        )
        points["memory_mib"] = points.pop("peak_train_memory_bytes") / 2**20
    return points.dropna(subset=["certified"])


def pareto_front(points: pd.DataFrame, cost: str) -> pd.DataFrame:
    """The points that no other point beats in both cost (lower) and certified accuracy
    (higher), by increasing cost."""
    front, best = [], -float("inf")
    for _, point in points.sort_values([cost, "certified"], ascending=[True, False]).iterrows():
        if point["certified"] > best:
            front.append(point)
            best = point["certified"]
    return pd.DataFrame(front)


def certified_accuracy_vs_cost(points: pd.DataFrame, cost: str, label: str):
    points = points.dropna(subset=[cost])
    if points.empty:
        return empty_figure(f"no completed run with a certified accuracy and {label}")
    panels = sorted(points.groupby(["dataset", "variant"]).groups)
    figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for axis, (dataset, variant) in zip(axes[0], panels, strict=True):
        panel_points = points[(points["dataset"] == dataset) & (points["variant"] == variant)]
        sns.scatterplot(
            data=panel_points, x=cost, y="certified", hue="family", style="architecture",
            s=70, ax=axis, legend=axis is axes[0][-1],
        )  # fmt: skip
        front = pareto_front(panel_points, cost)
        axis.step(front[cost], front["certified"], where="post", color="black", lw=1)
        axis.set_title(f"{dataset}, {variant}: certified accuracy against {label}")
        axis.set_xlabel(label)
        axis.set_ylim(0, 100)
        axis.set_ylabel(f"certified accuracy at {PARETO_RADIUS} (%)")
        low, high = panel_points[cost].min(), panel_points[cost].max()
        if low > 0 and high / low > 20:
            axis.set_xscale("log")
    if axes[0][-1].get_legend() is not None:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1, 1))
    figure.tight_layout()
    return figure


def certified_accuracy_vs_training_time(runs, curves, measurements):
    points = model_points(runs, measurements)
    return certified_accuracy_vs_cost(points, "seconds", "training steps (s)")


def certified_accuracy_vs_memory(runs, curves, measurements):
    points = model_points(runs, measurements)
    return certified_accuracy_vs_cost(points, "memory_mib", "peak training memory (MiB)")


def mark_certificates(grid, runs: pd.DataFrame, curves: pd.DataFrame, column: str, palette):
    """A star per family at its last epoch: the mean certified accuracy (runs.csv, from
    certify) at the radius of ``column``."""
    completed = runs[runs["status"] == "completed"]
    if column not in completed:
        return
    last_epoch = curves.assign(panel=panel(curves)).groupby("panel")["epoch"].max()
    certified = completed.assign(panel=panel(completed)).groupby(["panel", "family"])[column]
    for (title, family), value in certified.mean().dropna().items():
        axis = grid.axes_dict.get(title)
        if axis is not None and title in last_epoch:
            axis.plot(last_epoch[title], value, marker="*", markersize=12, linestyle="none",
                      color=palette.get(family, "black"), markeredgecolor="black")  # fmt: skip
    star = plt.Line2D([], [], marker="*", linestyle="none", color="grey", markersize=12)
    label = f"certify, float64 ({column.removeprefix(CERTIFIED_PREFIX)})"
    grid.figure.legend([star], [label], loc="lower center", bbox_to_anchor=(0.5, -0.08))


FIGURES = {
    "certified_accuracy_vs_epsilon": certified_accuracy_vs_epsilon,
    "accuracy_vs_training_time": accuracy_vs_training_time,
    "time_and_memory": time_and_memory,
    "training_curves": training_curves,
    "certified_accuracy_vs_training_time": certified_accuracy_vs_training_time,
    "certified_accuracy_vs_memory": certified_accuracy_vs_memory,
}


def draw(name: str, runs: pd.DataFrame, curves: pd.DataFrame, measurements: pd.DataFrame):
    sns.set_theme(style="whitegrid", context="paper")
    return FIGURES[name](runs, curves, measurements)


def main(snakemake) -> None:
    figure = draw(
        snakemake.wildcards.figure,
        pd.read_csv(snakemake.input.runs),
        pd.read_csv(snakemake.input.curves),
        pd.read_csv(snakemake.input.measurements),
    )
    figure.savefig(snakemake.output.png, dpi=150, bbox_inches="tight")
    figure.savefig(snakemake.output.pdf, bbox_inches="tight")


if __name__ == "__main__" and "snakemake" in globals():
    sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
    main(snakemake)  # noqa: F821
