"""Gather the per-run JSON files of the engine into three flat CSV files.

- runs.csv: one row per trained run (dataset, architecture, family, variant, seed),
  with its status and its final metrics in percent: clean, certified_<radius> and
  empirical_<radius> per radius (the radius's text, e.g. certified_36/255, certified_1);
- curves.csv: one row per finished epoch of every run (from metrics.jsonl), with
  test_accuracy and certified_<radius> in percent;
- measurements.csv: one row per measured (dataset, architecture, family), from one file per
  (dataset, architecture) in which every family was timed side by side with `standard`,
  with the ratios to `standard` of that same run.

The status of a run says what the tables show for it: "completed", "diverged",
"failed" (the engine crashed; see the run's log), "certify failed" or "audit failed"
(a certificate was contradicted by the Lipschitz or attack audit: its numbers are not
trusted). Nothing here raises on a bad run; it becomes a row with that status.
"""

import json
import math
import sys
from pathlib import Path

import pandas as pd

from aol.engine.run_folder import RunFolder
from aol.radius import Radius

RUN_KEYS = ["dataset", "architecture", "family", "variant", "seed"]


def read_json(path: Path) -> dict:
    with open(path) as handle:
        return json.load(handle)


def identity_from_path(result_path: Path) -> dict:
    """(dataset, architecture, family, variant, seed) from .../D/A/F/V/seedS/result.json: the
    pipeline's run folder layout (RUN_DIR in workflow/rules/common.smk), the only place that
    names the variant; a failed run's record has no identity of its own."""
    dataset, architecture, family, variant, seed_folder = result_path.parts[-6:-1]
    return dict(
        dataset=dataset,
        architecture=architecture,
        family=family,
        variant=variant,
        seed=int(seed_folder.removeprefix("seed")),
    )


def run_key(path: Path) -> tuple:
    """The run a result or certificate file belongs to: both end in D/A/F/V/seedS/<file>
    (the certificate under results/<config name>/certify/, see config_output in
    workflow/rules/common.smk)."""
    return tuple(identity_from_path(path).values())


def percent(value) -> float:
    return math.nan if value is None else 100.0 * float(value)


def certified_column(radius: Radius) -> str:
    """The column of the certified accuracy at a radius: certified_36/255, certified_1."""
    return f"certified_{radius}"


def empirical_column(radius: Radius) -> str:
    """The column of the accuracy under the attack audit at a radius: empirical_36/255."""
    return f"empirical_{radius}"


def per_radius(values: dict, column) -> dict:
    """{"36/255": 0.7, ...} (a JSON object keyed by radius) -> {column(radius): 70.0, ...}."""
    return {column(Radius.parse(key)): percent(value) for key, value in values.items()}


def run_status(result: dict, certificate: dict | None) -> str:
    if result.get("status") != "completed":
        return str(result.get("status", "failed"))
    if certificate is None:
        return "completed"
    if certificate.get("status") == "failed":
        return "certify failed"
    if certificate.get("status") == "diverged":
        return "diverged"
    if not certificate.get("audits_passed", False):
        return "audit failed"
    return "completed"


def run_row(result_path: Path, certificate_path: Path | None) -> dict:
    result = RunFolder(result_path.parent).read_result()
    certificate = (
        read_json(certificate_path)
        if certificate_path is not None and certificate_path.exists()
        else None
    )
    row = identity_from_path(result_path)
    row["status"] = run_status(result, certificate)
    row["train_status"] = result.get("status", "failed")
    row["certify_status"] = None if certificate is None else certificate.get("status")
    row["audits_passed"] = None if certificate is None else certificate.get("audits_passed")
    # the test images behind the metrics (null: the whole test split)
    row["test_subset"] = (certificate or result).get("test_subset")
    if certificate is not None and certificate.get("status") in ("completed", "no_bound"):
        row["clean"] = percent(certificate.get("clean_accuracy"))
        certified = certificate.get("certified_accuracy") or {}
        empirical = certificate.get("empirical_robust_accuracy") or {}
        row["lipschitz_bound"] = certificate.get("lipschitz_bound")
        row["broken_certificates"] = sum(
            int(value) for value in (certificate.get("broken_certificates") or {}).values()
        )
    else:
        row["clean"] = percent(result.get("test_accuracy"))
        certified = result.get("test_certified_accuracy") or {}
        empirical = {}
        row["lipschitz_bound"] = result.get("lipschitz_bound")
    row.update(per_radius(certified, certified_column))
    row.update(per_radius(empirical, empirical_column))
    for key in (
        "train_subset",
        "epochs_completed",
        "epochs",
        "train_seconds",
        "train_step_seconds",
        "seconds_per_epoch",
        "budget_seconds",
        "planned_epochs",
        "budget_used",
        "num_parameters",
        "device",
        "device_name",
        "threads",
    ):
        row[key] = result.get(key)
    row["run_dir"] = str(result_path.parent)
    return row


def curve_rows(result_path: Path) -> list[dict]:
    identity = identity_from_path(result_path)
    rows = []
    for epoch in RunFolder(result_path.parent).read_metrics():
        row = dict(identity)
        for key in ("epoch", "lr", "train_loss", "train_accuracy", "test_loss"):
            row[key] = epoch.get(key)
        row["test_accuracy"] = percent(epoch.get("test_accuracy"))
        row.update(per_radius(epoch.get("test_certified_accuracy") or {}, certified_column))
        row["elapsed_seconds"] = epoch.get("elapsed_seconds")
        rows.append(row)
    return rows


MEASUREMENT_KEYS = ["dataset", "architecture", "family"]
MEASURED_TIMINGS = ("train_step_seconds", "inference_seconds", "weight_transform_seconds")
# ratios to the reference family, from the rounds of the same measure job
SAME_RUN_RATIOS = (
    "train_step_vs_standard",
    "inference_vs_standard",
    "weight_transform_share_of_standard_step",
)


def measurement_rows(path: Path, requested_families: list[str]) -> list[dict]:
    """One row per family of .../D/A/measure_batchB.json; a failed job (the guard's failure
    record, without families) gives a failed row for each family it was asked to measure."""
    measurement = read_json(path)
    dataset, architecture = path.parts[-3:-1]
    shared = dict(dataset=dataset, architecture=architecture)
    shared["status"] = measurement.get("status", "completed")
    shared["batch_size"] = int(path.stem.removeprefix("measure_batch"))
    for key in ("device", "device_name", "threads"):
        shared[key] = measurement.get(key)
    records = measurement.get("families") or dict.fromkeys(requested_families or [None], {})
    rows = []
    for family, record in records.items():
        row = {**shared, "family": family}
        for timing in MEASURED_TIMINGS:
            values = record.get(timing) or {}
            for statistic in ("median", "q1", "q3", "repeats"):
                row[f"{timing}_{statistic}"] = values.get(statistic)
        for key in ("peak_train_memory_bytes", "memory_method", "num_parameters"):
            row[key] = record.get(key)
        for ratio in SAME_RUN_RATIOS:
            row[ratio] = record.get(ratio)
        rows.append(row)
    return rows


def collect(result_paths, certificate_paths, measurement_paths, measured_families=None):
    """runs, curves, measurements; ``measured_families``: {measure file: families asked},
    for the rows of a measure job that failed."""
    certificates = {run_key(Path(path)): Path(path) for path in certificate_paths}
    runs, curves = [], []
    for path in map(Path, result_paths):
        runs.append(run_row(path, certificates.get(run_key(path))))
        curves.extend(curve_rows(path))
    measured_families = measured_families or {}
    measurements = [
        row
        for path in measurement_paths
        for row in measurement_rows(Path(path), measured_families.get(str(path), []))
    ]
    return (
        pd.DataFrame(runs, columns=_columns(runs, RUN_KEYS)),
        pd.DataFrame(curves, columns=_columns(curves, RUN_KEYS + ["epoch"])),
        pd.DataFrame(measurements, columns=_columns(measurements, MEASUREMENT_KEYS)),
    )


def _columns(rows: list[dict], first: list[str]) -> list[str]:
    """first, then every other key in order of appearance (so empty frames keep headers)."""
    columns = list(first)
    for row in rows:
        columns += [key for key in row if key not in columns]
    return columns


def main(snakemake) -> None:
    runs, curves, measurements = collect(
        snakemake.input.results,
        snakemake.input.certificates,
        snakemake.input.measurements,
        snakemake.params.measured_families,
    )
    runs.to_csv(snakemake.output.runs, index=False)
    curves.to_csv(snakemake.output.curves, index=False)
    measurements.to_csv(snakemake.output.measurements, index=False)
    not_completed = runs[runs["status"] != "completed"]
    for _, row in not_completed.iterrows():
        print(f"run {row['run_dir']}: {row['status']}", file=sys.stderr)


if __name__ == "__main__" and "snakemake" in globals():
    sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
    main(snakemake)  # noqa: F821
