"""The smoke config through --profile profiles/slurm on a real SLURM cluster: every train,
certify and measure job is an sbatch job, and the tables come out complete.

Runs on the one-node cluster that `.ci/slurm-cluster start` sets up (what .ci/run does);
on another cluster only with AOL_TEST_SLURM=1 (it submits a few one-CPU jobs); skips with
the reason otherwise."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from pipeline_support import REPOSITORY, snakemake_command, write_config

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
def test_profile_polls_with_squeue_where_accounting_is_off():
    """sacct exists on this cluster but keeps no accounting (slurm.conf
    AccountingStorageType=accounting_storage/none), so it never reports a finished job; the
    profile asks scontrol and polls with squeue instead."""
    from snakemake.profiles import ProfileConfigFileParser

    with open(REPOSITORY / "profiles" / "slurm" / "profile.yaml") as handle:
        profile = ProfileConfigFileParser().parse(handle)
    assert profile["slurm-status-command"] == "squeue"


def our_queued_jobs(before: set[str]) -> set[str]:
    """Ids of the SLURM jobs pending or running now that were not in `before`."""
    answer = subprocess.run(
        ["squeue", "-h", "-o", "%i", "-t", "PENDING,RUNNING,CONFIGURING,COMPLETING"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return set(answer.stdout.split()) - before


#: what the SLURM test runs: the smoke config with two families and one epoch (the engine
#: jobs are the same kind for every family; the end-to-end test runs every family locally)
SMALL_SMOKE = {
    "name": "smoke",
    "variants": [{"name": "smoke", "recipe": "digits", "epochs": 1}],
    "experiments": [
        {
            "name": "smoke",
            "dataset": "digits",
            "architectures": ["aol-digits"],
            "families": ["aol", "standard"],
            "variants": ["smoke"],
        }
    ],
}


def smoke_on_slurm(workdir, *overrides):
    """config/smoke.yaml, made smaller (SMALL_SMOKE) and then by ``overrides`` (config
    files), through the SLURM profile as a user runs it: no thread, memory or status-command
    override (the profile and config/ decide; the cluster has no accounting); only a shorter
    first wait before status checks and the logs of successful jobs kept."""
    small = write_config(workdir.parent / "small-smoke.yaml", SMALL_SMOKE)
    configs = [REPOSITORY / "config" / "smoke.yaml", small, *overrides]
    return snakemake_command(
        workdir,
        "--configfile",
        *map(str, configs),
        "--profile",
        str(REPOSITORY / "profiles" / "slurm"),
        "--slurm-init-seconds-before-status-checks",
        "5",
        "--slurm-keep-successful-logs",
    )


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_a_job_no_node_can_run_stops_before_any_submission(tmp_path):
    before = our_queued_jobs(set())
    too_big = {"job_resources": {"digits": {"threads": 4096, "mem_mb": 2000, "runtime": {}}}}
    too_big["job_resources"]["digits"]["runtime"] = {"train": 5, "certify": 5, "measure": 5}
    config = write_config(tmp_path / "too-big.yaml", too_big)
    result = subprocess.run(
        smoke_on_slurm(tmp_path / "work", config),
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "train jobs of dataset digits can never start" in result.stderr
    assert "job_resources.digits.threads (4096 CPUs" in result.stderr
    assert not our_queued_jobs(before)
    assert not (tmp_path / "work/.snakemake/slurm_logs").exists()


def restore_ctrl_c():
    """SIGINT handled as usual in the child, also when pytest itself runs in the background
    (a shell starts background commands with SIGINT ignored, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_once_a_job_runs(workdir) -> set[str]:
    """Start the smoke pipeline, Ctrl-C it (SIGINT to its process group) once a SLURM job
    of it runs; the ids of its jobs that were queued or running then."""
    before = our_queued_jobs(set())
    run = subprocess.Popen(
        smoke_on_slurm(workdir),
        cwd=REPOSITORY,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, like a terminal's Ctrl-C reaches
        preexec_fn=restore_ctrl_c,
    )
    deadline = time.monotonic() + 300
    queued = set()
    while len(queued) < 2:
        assert run.poll() is None, "the pipeline ended before it was interrupted"
        assert time.monotonic() < deadline, "no SLURM job started in time"
        time.sleep(1)
        queued = our_queued_jobs(before)
    os.killpg(run.pid, signal.SIGINT)
    run.wait(timeout=180)
    return queued


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_smoke_pipeline_on_slurm(tmp_path):
    workdir = tmp_path / "work"
    # Ctrl-C cancels every job it submitted; the same command then resumes
    interrupted = interrupt_once_a_job_runs(workdir)
    assert interrupted
    assert not our_queued_jobs(set()) & interrupted

    result = subprocess.run(
        smoke_on_slurm(workdir), cwd=REPOSITORY, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, result.stderr[-4000:]
    families = set(SMALL_SMOKE["experiments"][0]["families"])
    assert families <= set(aol.families.names())
    tables = workdir / "results/smoke/tables"
    smoke = pd.read_csv(tables / "smoke.csv")
    assert set(smoke["family"]) == families
    assert (smoke["status"] == "1/1 completed").all(), smoke["status"]
    cost = pd.read_csv(tables / "cost.csv")
    assert set(cost["family"]) == families
    # every engine job went through sbatch: SLURM logs (named by job id) in one folder per
    # job (an interrupted job has a second log there)
    logs = workdir / ".snakemake" / "slurm_logs"
    # one train and certify job per family; one measure job for all of aol-digits' families
    for rule, jobs in (("train", len(families)), ("certify", len(families)), ("measure", 1)):
        job_logs = list((logs / f"rule_{rule}").rglob("*.log"))
        assert len({log.parent for log in job_logs}) == jobs
        assert all(log.stem.isdigit() for log in job_logs)
