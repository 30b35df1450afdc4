"""The default pipeline end to end with the real engine (smoke-sized: 2 epochs), and an
interrupted training that a rerun finishes without redoing its finished epochs."""

import copy
import json
import os
import signal
import subprocess
import time

import pandas as pd
from pipeline_support import (
    REPOSITORY,
    load_config,
    run_snakemake,
    snakemake_command,
    write_config,
)

import aol.families

FIGURES = [
    "certified_accuracy_vs_epsilon",
    "accuracy_vs_training_time",
    "training_curves",
    "time_and_memory",
]


def smoke_sized_default(path):
    """config/config.yaml with 1 seed, 2 epochs and a small audit: the same experiment."""
    config = copy.deepcopy(load_config("config.yaml"))
    config["seeds"] = [0]
    config["variants"][0]["epochs"] = 2
    config["certify"] = {"attack_points": 32, "attack_steps": 5, "attack_restarts": 1}
    config["measure"]["repeats"] = 10
    config["measure"]["warmup"] = 1
    return write_config(path, config)


def test_default_pipeline_end_to_end(tmp_path):
    config = smoke_sized_default(tmp_path / "smoke-default.yaml")
    workdir = tmp_path / "work"
    result = run_snakemake(workdir, "--cores", "2", "--configfile", str(config), timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    out = workdir / "results/smoke-default"  # the config's outputs: named after its file

    families = set(aol.families.names())
    seeds = [0]
    for name in ("digits", "cost"):
        for extension in ("csv", "md", "tex", "html"):
            assert (out / f"tables/{name}.{extension}").stat().st_size > 0
    digits = pd.read_csv(out / "tables/digits.csv")
    assert set(digits["family"]) == families and len(digits) == len(families)
    assert (digits["status"] == f"{len(seeds)}/{len(seeds)} completed").all(), digits["status"]
    assert digits["clean_mean"].between(0, 100).all()
    cost = pd.read_csv(out / "tables/cost.csv")
    assert set(cost["family"]) == families and (cost["status"] == "completed").all()
    markdown = (out / "tables/digits.md").read_text()
    assert all(f"| {family} |" in markdown for family in families)
    for figure in FIGURES:
        for extension in ("png", "pdf"):
            assert (out / f"figures/{figure}.{extension}").stat().st_size > 1000

    report = run_snakemake(
        workdir,
        "--configfile",
        str(config),
        "--report",
        "results/smoke-default/report.html",
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    html = (out / "report.html").read_text(errors="replace")
    assert len(html) > 100_000 and "certified_accuracy_vs_epsilon" in html


def read_epochs(metrics):
    if not metrics.exists():
        return []
    lines = [line for line in metrics.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def test_interrupted_training_resumes(tmp_path):
    epochs = 10
    config = {
        "device": "cpu",
        "seeds": [0],
        "variants": [{"name": "resume", "epochs": epochs, "batch_size": 64, "checkpoint_every": 1}],
        "experiments": [
            {
                "name": "resume",
                "dataset": "digits",
                "architectures": ["aol-digits"],
                "families": ["aol"],
                "variants": ["resume"],
            }  # fmt: skip
        ],
    }
    path = write_config(tmp_path / "resume.yaml", config)
    workdir = tmp_path / "work"
    run = workdir / "results/runs/digits/aol-digits/aol/resume/seed0"
    target = str(run.relative_to(workdir) / "result.json")
    arguments = [target, "--cores", "1", "--configfile", str(path)]  # targets first

    first = subprocess.Popen(
        snakemake_command(workdir, *arguments),
        cwd=REPOSITORY,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, like a terminal's Ctrl-C reaches
    )
    deadline = time.monotonic() + 300
    while len(read_epochs(run / "metrics.jsonl")) < 3:
        assert first.poll() is None, "training finished or failed before it was interrupted"
        assert time.monotonic() < deadline, "training did not reach epoch 3 in time"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGINT)
    first.wait(timeout=120)
    before = read_epochs(run / "metrics.jsonl")
    assert not (run / "result.json").exists()
    assert (run / "checkpoint.pt").exists()
    assert len(before) < epochs, "interrupted too late to test resuming"

    second = run_snakemake(workdir, *arguments, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    after = read_epochs(run / "metrics.jsonl")
    assert [epoch["epoch"] for epoch in after] == list(range(1, epochs + 1))
    # Epochs finished before the interruption are not trained again: their records
    # (with their wall-clock times) are unchanged. The last one may have been cut
    # between writing metrics and checkpoint, so it is allowed to be redone.
    finished = before[:-1]
    assert finished, "no epoch finished before the interruption"
    assert after[: len(finished)] == finished
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "completed" and result["epochs_completed"] == epochs
