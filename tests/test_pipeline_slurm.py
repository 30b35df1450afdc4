"""The smoke config through --profile profiles/slurm on a real SLURM cluster: every train,
certify and measure job is an sbatch job, and the tables come out complete.

Runs on the one-node cluster that `.ci/slurm-cluster start` sets up (what .ci/run does);
on another cluster only with AOL_TEST_SLURM=1 (it submits a few one-CPU jobs); skips with
the reason otherwise."""

import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from pipeline_support import REPOSITORY, run_snakemake

import aol.families

CI_CLUSTER_MARKER = "# written by aol-harness .ci/slurm-cluster"


def unavailable_reason() -> str | None:
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')"
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "SLURM is not installed (no sinfo/sbatch); .ci/slurm-cluster start makes one"
    try:
        states = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 30 s"
    if states.returncode != 0 or not {"idle", "mixed", "allocated"} & set(states.stdout.split()):
        return f"no SLURM node up (sinfo: {(states.stdout + states.stderr).strip()!r})"
    conf = Path("/etc/slurm/slurm.conf")
    local = conf.exists() and CI_CLUSTER_MARKER in conf.read_text()
    if not local and os.environ.get("AOL_TEST_SLURM") != "1":
        return "SLURM is up but is not the local test cluster; AOL_TEST_SLURM=1 submits to it"
    return None


REASON = unavailable_reason()


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_smoke_pipeline_on_slurm(tmp_path):
    workdir = tmp_path / "work"
    result = run_snakemake(
        workdir,
        "--configfile",
        str(REPOSITORY / "config" / "smoke.yaml"),
        "--profile",
        str(REPOSITORY / "profiles" / "slurm"),
        # CPU overrides for a small node without accounting (see .ci/slurm-cluster)
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "5",
        "--slurm-keep-successful-logs",
        "--set-threads",
        "train=1",
        "certify=1",
        "measure=1",
        "--set-resources",
        "train:mem_mb=1500",
        "certify:mem_mb=1500",
        "measure:mem_mb=1500",
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    families = set(aol.families.names())
    smoke = pd.read_csv(workdir / "results/tables/smoke.csv")
    assert set(smoke["family"]) == families
    assert (smoke["status"] == "1/1 completed").all(), smoke["status"]
    cost = pd.read_csv(workdir / "results/tables/cost.csv")
    assert set(cost["family"]) == families
    # every engine job went through sbatch: one SLURM log (named by job id) per job
    logs = workdir / ".snakemake" / "slurm_logs"
    # one train and certify job per family; one measure job for all of aol-digits' families
    for rule, jobs in (("train", len(families)), ("certify", len(families)), ("measure", 1)):
        job_logs = list((logs / f"rule_{rule}").rglob("*.log"))
        assert len(job_logs) == jobs
        assert all(log.stem.isdigit() for log in job_logs)
