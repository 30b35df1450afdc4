"""The library and the baselines import torch and the library only: nothing of the engine or
of the pipeline's stack (checked in a fresh interpreter's ``sys.modules``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import aol

ENGINE_AND_PIPELINE = ("pandas", "seaborn", "snakemake", "torchvision", "sklearn", "aol.engine")


def modules_after(statement: str) -> set[str]:
    """The names in ``sys.modules`` after ``statement`` runs in a fresh interpreter."""
    repository = Path(aol.__file__).resolve().parents[1]
    path = [str(repository), os.environ.get("PYTHONPATH", "")]
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{statement}; import json, sys; print(json.dumps(list(sys.modules)))",
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def imported(modules: set[str], package: str) -> list[str]:
    return sorted(name for name in modules if name == package or name.startswith(package + "."))


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        pytest.param("import aol, baselines", ENGINE_AND_PIPELINE, id="aol-and-baselines"),
        pytest.param("import aol.testing", (*ENGINE_AND_PIPELINE, "pytest"), id="aol.testing"),
    ],
)
def test_library_imports_nothing_of_the_engine_or_the_pipeline(statement, forbidden):
    modules = modules_after(statement)
    assert "torch" in modules  # the check sees what was imported
    for package in forbidden:
        assert imported(modules, package) == [], f"{statement!r} imported {package}"


def test_every_registered_family_loads_without_the_engine():
    modules = modules_after("import aol; [aol.families.get(name) for name in aol.families.names()]")
    assert imported(modules, "baselines")  # the baseline families were loaded
    for package in ENGINE_AND_PIPELINE:
        assert imported(modules, package) == [], f"loading the families imported {package}"
