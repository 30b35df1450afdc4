"""Helpers for the pipeline tests: run Snakemake on the repository's Snakefile in a
scratch working directory, and load the glue scripts of workflow/scripts/ as modules."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPOSITORY = Path(__file__).resolve().parents[1]
SNAKEFILE = REPOSITORY / "Snakefile"
CONFIGS = sorted((REPOSITORY / "config").glob("*.yaml"))
PROFILES = ["profiles/gpu", "profiles/slurm"]


def snakemake_command(workdir: Path, *arguments: str) -> list[str]:
    """python -m snakemake on the repository's Snakefile, run in workdir (outputs go there)."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        *arguments,
    ]


def run_snakemake(workdir: Path, *arguments: str, timeout: float = 600, env=None):
    return subprocess.run(
        snakemake_command(workdir, *arguments),
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
    )


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def load_config(name: str) -> dict:
    return yaml.safe_load((REPOSITORY / "config" / name).read_text())


def load_script(name: str):
    """workflow/scripts/NAME.py as a module (they run main() only under Snakemake)."""
    path = REPOSITORY / "workflow" / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"workflow_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake run or dry run as {rule: count}."""
    lines = output.splitlines()
    start = lines.index("Job stats:") + 3
    counts = {}
    for line in lines[start:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def run_in_process(workdir: Path, configfile: Path, dry_run: bool = False) -> None:
    """Run the pipeline through Snakemake's Python API in this process (no second torch
    import); errors are raised (snakemake_interface_common.exceptions.WorkflowError)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        ResourceSettings,
    )

    with SnakemakeApi(OutputSettings(quiet={Quietness.PROGRESS})) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[configfile]),
            snakefile=SNAKEFILE,
            workdir=workdir,
        )
        workflow.dag(DAGSettings()).execute_workflow(executor="dryrun" if dry_run else "local")
