"""Dry runs of every config with every profile: the DAG plans exactly the runs the config
asks for, and the profiles give train/measure jobs the resources they promise."""

import itertools
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from pipeline_support import CONFIGS, PROFILES, REPOSITORY, job_counts, run_snakemake

import aol.families

try:
    import snakemake_executor_plugin_slurm  # noqa: F401

    HAVE_SLURM_PLUGIN = True
except ImportError:
    HAVE_SLURM_PLUGIN = False

# Without a profile the same DAG is built by the end-to-end and validation tests.
CASES = list(itertools.product([config.name for config in CONFIGS], PROFILES))


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory):
    """All dry runs, two at a time (each starts Python and imports torch)."""

    def dry_run(case):
        config, profile = case
        if profile == "profiles/slurm" and not HAVE_SLURM_PLUGIN:
            return None
        workdir = tmp_path_factory.mktemp("dry-run")
        arguments = ["--dry-run", "--configfile", str(REPOSITORY / "config" / config)]
        arguments += ["--profile", str(REPOSITORY / profile)]
        return run_snakemake(workdir, *arguments, timeout=300)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(CASES, pool.map(dry_run, CASES), strict=True))


def expected_measure_jobs(config: dict) -> dict[tuple[str, str], set[str]]:
    """{(dataset, architecture): families}: one measure job per pair, timing all of its
    families and standard (the reference of the ratios) side by side."""
    if not config.get("measure", {}).get("enabled", True):
        return {}
    jobs: dict[tuple[str, str], set[str]] = {}
    for experiment in config["experiments"]:
        families = experiment.get("families", "all")
        if families == "all":
            families = aol.families.names()
        for architecture in experiment["architectures"]:
            key = (experiment["dataset"], architecture)
            jobs.setdefault(key, {"standard"}).update(families)
    return jobs


def planned_measure_jobs(output: str) -> dict[tuple[str, str], set[str]]:
    """The (dataset, architecture) and --families of every printed `aol measure` command."""
    jobs = {}
    for command in re.findall(r"aol measure (.*)", output):
        options = {}
        for option in f" {command}".split(" --")[1:]:
            name, *values = option.split()
            options[name] = values
        key = (options["dataset"][0], options["architecture"][0])
        jobs[key] = set(options["families"])
    return jobs


def expected_calibrations(config: dict) -> int:
    """One calibration per (dataset, architecture, family) of the budget variants (the
    shipped configs give each budget variant's recipe and batch size one value)."""
    budgets = {
        variant["name"]
        for variant in config["variants"]
        if variant.get("budget_seconds") or variant.get("budget_hours")
    }
    calibrated = set()
    for experiment in config["experiments"]:
        families = experiment.get("families", "all")
        if families == "all":
            families = aol.families.names()
        if budgets & set(experiment.get("variants", ["default"])):
            for architecture, family in itertools.product(experiment["architectures"], families):
                calibrated.add((experiment["dataset"], architecture, family))
    return len(calibrated)


def expected_training_runs(config: dict) -> int:
    runs = set()
    for experiment in config["experiments"]:
        families = experiment.get("families", "all")
        if families == "all":
            families = aol.families.names()
        for architecture, family, variant in itertools.product(
            experiment["architectures"], families, experiment.get("variants", ["default"])
        ):
            runs.add((experiment["dataset"], architecture, family, variant))
    return len(runs) * len(config["seeds"])


@pytest.mark.parametrize(("config", "profile"), CASES, ids=[f"{c}-{p}" for c, p in CASES])
def test_dry_run_plans_every_run(dry_runs, config, profile):
    result = dry_runs[(config, profile)]
    if result is None:
        pytest.skip("snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout + result.stderr
    settings = yaml.safe_load((REPOSITORY / "config" / config).read_text())
    counts = job_counts(output)
    trained = expected_training_runs(settings)
    assert counts["train"] == trained
    assert counts["certify"] == trained
    expected_measurements = expected_measure_jobs(settings)
    assert counts.get("measure", 0) == len(expected_measurements)
    assert planned_measure_jobs(output) == expected_measurements
    assert counts["table"] == len(settings["experiments"]) + 1  # + the cost table
    assert counts["figure"] == 6
    assert counts.get("calibrate", 0) == expected_calibrations(settings)

    resources = re.findall(
        r"rule (train|certify|measure):\n(.*?)resources: ([^\n]*)", output, re.DOTALL
    )
    assert resources, "no train/measure job printed"
    gpus = "1" if settings["device"] == "cuda" else "0"
    for rule, job, line in resources:
        assert f"gpu={gpus}" in line
        # every profile: the job's threads, memory and run time are the config's for its
        # dataset (job_resources; digits: 1 CPU, 2 GB; CIFAR: "default", 16 GB, 720 min)
        dataset = re.search(r"wildcards: dataset=([^,\n]+)", job).group(1)
        wanted = job_resources(config, dataset)
        assert f"mem_mb={wanted['mem_mb']}" in line
        assert f"runtime={wanted['runtime'][rule]}" in line
        threads = re.search(r"threads: (\d+)", job)  # not printed for one thread
        planned = int(threads.group(1)) if threads else 1
        assert planned == wanted["threads"] or profile == "profiles/gpu"  # capped at --cores
    if config == "paper.yaml":
        train_lines = [line for rule, _, line in resources if rule == "train"]
        assert all("runtime=720" in line and "mem_mb=16000" in line for line in train_lines)


def job_resources(config: str, dataset: str) -> dict:
    """job_resources of config/config.yaml with CONFIG's merged on top, for the dataset."""
    table = dict(
        yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())["job_resources"]
    )
    table.update(
        yaml.safe_load((REPOSITORY / "config" / config).read_text()).get("job_resources", {})
    )
    return table.get(dataset, table["default"])


def planned_outputs(output: str) -> set[str]:
    return {path for line in re.findall(r"output: ([^\n]*)", output) for path in line.split(", ")}


# training runs (same identity, same run) and downloaded datasets are shared
SHARED = ("results/runs/", "resources/")


def test_configs_share_no_output(dry_runs):
    """Each config's outputs but the training runs live under results/<config name>/
    (the file name of the --configfile), so no two configs write the same file."""
    outputs = {}
    for config in CONFIGS:
        result = dry_runs[(config.name, "profiles/gpu")]
        assert result.returncode == 0, result.stderr[-3000:]
        name = "default" if config.name == "config.yaml" else config.stem
        outputs[name] = planned_outputs(result.stdout + result.stderr)
        own = {path for path in outputs[name] if not path.startswith(SHARED)}
        assert own and all(path.startswith(f"results/{name}/") for path in own), own
    assert {"default", "smoke"} <= set(outputs)
    for first, second in itertools.combinations(outputs, 2):
        shared = outputs[first] & outputs[second]
        assert all(path.startswith(SHARED) for path in shared), (first, second, shared)
    assert not outputs["default"] & outputs["smoke"]


def rule_names() -> set[str]:
    rules = set()
    for path in (REPOSITORY / "workflow" / "rules").glob("*.smk"):
        rules |= set(re.findall(r"^rule (\w+):", path.read_text(), re.MULTILINE))
    return rules


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_name_only_rules_of_the_workflow(profile):
    """set-threads / set-resources for a rule that does not exist (renamed, removed) are
    ignored by Snakemake without a word; the jobs would then run with the defaults."""
    settings = yaml.safe_load((REPOSITORY / profile / "profile.yaml").read_text())
    named = set(settings.get("set-threads", {})) | set(settings.get("set-resources", {}))
    assert named <= rule_names(), named - rule_names()
    assert {"train", "certify", "measure"} <= rule_names()
