"""Redoing one run (docs/pipeline.md, "Redo one run"): delete its run folder and force its
result with --forcerun; Snakemake then retrains it, certifies it again and rebuilds every
table and figure downstream, while the other runs are kept."""

import json

import pandas as pd
from pipeline_support import run_snakemake, write_config

CONFIG = {
    "device": "cpu",
    "seeds": [0],
    "figures": False,
    "measure": {"enabled": False},
    "certify": {"attack_points": 8, "attack_steps": 2, "attack_restarts": 1},
    "variants": [{"name": "redo", "recipe": "digits", "epochs": 1}],
    "experiments": [
        {
            "name": "redo",
            "dataset": "digits",
            "architectures": ["aol-digits"],
            "families": ["aol", "standard"],
            "variants": ["redo"],
        }
    ],
}
RUN = "results/runs/digits/aol-digits/aol/redo/seed0"
CERTIFICATE = "results/redo/certify/digits/aol-digits/aol/redo/seed0/certify.json"
TABLE = "results/redo/tables/redo.csv"


def clean_accuracy(workdir, family):
    table = pd.read_csv(workdir / TABLE)
    return table.loc[table["family"] == family, "clean_mean"].item()


def test_redo_one_run_rebuilds_it_and_the_tables(tmp_path):
    config = write_config(tmp_path / "redo.yaml", CONFIG)
    workdir = tmp_path / "work"
    first = run_snakemake(workdir, "--cores", "2", "--configfile", str(config))
    assert first.returncode == 0, first.stderr[-3000:]
    reproduced = clean_accuracy(workdir, "aol")
    standard_result = workdir / "results/runs/digits/aol-digits/standard/redo/seed0/result.json"
    standard_written = standard_result.stat().st_mtime_ns

    # stale numbers in the tables: a certificate that says 12.5% clean accuracy
    certificate = json.loads((workdir / CERTIFICATE).read_text())
    certificate["clean_accuracy"] = 0.125
    (workdir / CERTIFICATE).write_text(json.dumps(certificate))
    stale = run_snakemake(
        workdir, "--cores", "1", "--configfile", str(config), "--forcerun", "collect"
    )
    assert stale.returncode == 0, stale.stderr[-3000:]
    assert clean_accuracy(workdir, "aol") == 12.5

    # the documented way to redo one run
    for path in (workdir / RUN).iterdir():
        path.unlink()
    (workdir / RUN).rmdir()
    redo = run_snakemake(
        workdir, "--cores", "2", "--configfile", str(config), "--forcerun", f"{RUN}/result.json"
    )
    assert redo.returncode == 0, redo.stderr[-3000:]
    assert (workdir / RUN / "result.json").exists() and (workdir / RUN / "checkpoint.pt").exists()
    assert clean_accuracy(workdir, "aol") == reproduced != 12.5
    assert standard_result.stat().st_mtime_ns == standard_written  # the other run is kept
