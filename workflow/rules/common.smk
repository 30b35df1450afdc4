# Validation of the config, the list of runs it asks for, paths, and target functions.
# Nothing here names a layer family, an architecture or a dataset: all of them come
# from the config and are checked against the registries of the `aol` package.
import re
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate
from snakemake_interface_executor_plugins.settings import DeploymentMethod

import aol.architectures
import aol.families
import aol.engine.data
import aol.engine.measure
import aol.engine.recipes
import aol.engine.runtime
import aol.engine.validation
import aol.radius


class ConfigError(ValueError):
    """A config value that does not fit the schema or the registries."""


def _key_path(path):
    """['variants', 0, 'epochs'] -> 'variants[0].epochs'."""
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
    return text.lstrip(".") or "(top level)"


def _check_schema(config, schema_file):
    """Every schema violation as one line naming its config key (before any default)."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_file).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda error: str(error.absolute_path))
    if errors:
        lines = [f"config key {_key_path(e.absolute_path)}: {e.message}" for e in errors]
        raise ConfigError(f"invalid config ({schema_file}):\n" + "\n".join(lines))


_check_schema(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
validate(config, "../schemas/config.schema.yaml")  # fills in the defaults


def _unique_names(entries, key):
    names = [entry["name"] for entry in entries]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"config key {key}: duplicate names {duplicates}")
    return {entry["name"]: entry for entry in entries}


def _check_names(key, names, known, what):
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(
            f"config key {key}: unknown {what} {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )


VARIANTS = _unique_names(config["variants"], "variants")
EXPERIMENTS = _unique_names(config["experiments"], "experiments")
if "cost" in EXPERIMENTS:
    raise ConfigError("config key experiments: the name 'cost' is taken by the cost table")
REGISTERED_FAMILIES = list(aol.families.names())
REGISTERED_ARCHITECTURES = list(aol.architectures.names())

for _name, _variant in VARIANTS.items():
    _given = [key for key in ("epochs", "budget_seconds", "budget_hours") if _variant.get(key)]
    if len(_given) > 1:
        raise ConfigError(
            f"config key variants[name={_name}]: give one of {', '.join(_given)}, not both"
        )
    if _variant["recipe"] is not None:
        _check_names(
            f"variants[name={_name}].recipe",
            [_variant["recipe"]],
            aol.engine.recipes.RECIPES,
            "recipe",
        )

for _name, _experiment in EXPERIMENTS.items():
    _key = f"experiments[name={_name}]"
    if _experiment["families"] == "all":
        _experiment["families"] = list(REGISTERED_FAMILIES)
    _check_names(f"{_key}.families", _experiment["families"], REGISTERED_FAMILIES, "family")
    _check_names(
        f"{_key}.architectures",
        _experiment["architectures"],
        REGISTERED_ARCHITECTURES,
        "architecture",
    )
    _check_names(f"{_key}.variants", _experiment["variants"], VARIANTS, "variant")

# The engine's own checks (the ones `python -m aol train/certify` make), so that a value the
# engine would reject fails here, before any job, and not in every job.
RECIPE_KEYS = [
    "epochs",
    "batch_size",
    "lr",
    "schedule",
    "weight_decay",
    "momentum",
    "offset",
    "temperature",
]


def _check_recipe(variant, dataset):
    """The variant's recipe with its overrides, as train builds it for the dataset."""
    recipe_name = variant["recipe"] or aol.engine.recipes.default_recipe(dataset)
    overrides = {key: variant.get(key) for key in RECIPE_KEYS}
    recipe = aol.engine.recipes.get(recipe_name).with_overrides(**overrides)
    try:
        recipe.validate()
    except aol.engine.recipes.RecipeError as error:
        raise ConfigError(
            f"config key variants[name={variant['name']}].{error.knob}: {error} "
            f"(recipe {recipe_name}, dataset {dataset})"
        ) from error


def _check_train_subset(variant, dataset):
    """train_subset fits the dataset's training split (python -m aol train checks the same)."""
    size, available = variant["train_subset"], aol.engine.data.info(dataset).train_size
    if size is not None and size > available:
        raise ConfigError(
            f"config key variants[name={variant['name']}].train_subset: {size} is more than "
            f"the {available} images of the {dataset} training split"
        )


def _check_test_subset(dataset):
    """certify.test_subset fits the dataset's test split (as train and certify check it)."""
    size, available = config["certify"]["test_subset"], aol.engine.data.info(dataset).test_size
    if size is not None and size > available:
        raise ConfigError(
            f"config key certify.test_subset: {size} is more than the {available} images of "
            f"the {dataset} test split"
        )


def _check_models(key, experiment):
    for architecture in experiment["architectures"]:
        for family in experiment["families"]:
            try:
                aol.engine.validation.model_fits_dataset(
                    architecture, family, experiment["dataset"]
                )
            except ValueError as error:
                raise ConfigError(f"config key {key}.architectures: {error}") from error


def _check_engine_settings():
    for name, experiment in EXPERIMENTS.items():
        for variant in experiment["variants"]:
            _check_recipe(VARIANTS[variant], experiment["dataset"])
            _check_train_subset(VARIANTS[variant], experiment["dataset"])
        _check_models(f"experiments[name={name}]", experiment)
        _check_test_subset(experiment["dataset"])
    for seed in config["seeds"]:
        try:
            aol.engine.validation.seed(seed)
        except ValueError as error:
            raise ConfigError(f"config key seeds: {error}") from error
    for key in aol.engine.validation.ATTACK_MINIMUMS:
        value = config["certify"].get(key)
        try:
            if value is not None:
                aol.engine.validation.attack_setting(key, value)
        except ValueError as error:
            raise ConfigError(f"config key certify.{key}: {error}") from error


_check_engine_settings()
SEEDS = [int(seed) for seed in config["seeds"]]
DOWNLOADABLE = ["cifar10", "cifar100"]
GPUS_PER_JOB = 1 if config["device"] == "cuda" else 0

# The same (dataset, architecture, family, variant) may appear in several experiments;
# it is trained once. Sorted and de-duplicated so that the DAG does not depend on order.
RUNS = sorted(
    {
        (experiment["dataset"], architecture, family, variant, seed)
        for experiment in EXPERIMENTS.values()
        for architecture in experiment["architectures"]
        for family in experiment["families"]
        for variant in experiment["variants"]
        for seed in SEEDS
    }
)
# One measure job per (dataset, architecture): its families and the reference family of the
# ratios, timed side by side in one process (`python -m aol measure --families ...`).
MEASUREMENTS = {
    (dataset, architecture): aol.engine.measure.measured_families(
        sorted({run[2] for run in RUNS if run[:2] == (dataset, architecture)})
    )
    for dataset, architecture in sorted({run[:2] for run in RUNS})
}


def _alternatives(values):
    return "|".join(sorted({re.escape(str(value)) for value in values}))


wildcard_constraints:
    dataset=_alternatives(run[0] for run in RUNS),
    architecture=_alternatives(run[1] for run in RUNS),
    family=_alternatives(run[2] for run in RUNS),
    variant=_alternatives(run[3] for run in RUNS),
    seed=r"\d+",
    batch_size=r"\d+",
    recipe=_alternatives(aol.engine.recipes.RECIPES),


# The interpreter running Snakemake runs the engine and the glue too, so the pipeline
# works without an activated virtual environment (e.g. `.venv/bin/python -m snakemake`);
# with --sdm conda, the `python` of the rule's environment (workflow/envs/aol.yaml).
SOFTWARE_ENVIRONMENT = "../envs/aol.yaml"
if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
    PYTHON = "python"
else:
    PYTHON = shlex.quote(sys.executable)
ENGINE = f"{PYTHON} -m aol"
GUARD = f"{PYTHON} {shlex.quote(str(Path(workflow.basedir) / 'workflow/scripts/guarded.py'))}"

# committed with the workflow, so found beside the Snakefile whatever the working directory
PUBLISHED = str(Path(workflow.basedir) / "results/reference/published.csv")


DEFAULT_CONFIG = (Path(workflow.basedir) / "config/config.yaml").resolve()


def _config_name():
    """The config's name: config key `name`, else the file name (without .yaml) of the last
    --configfile, else "default" (config/config.yaml, given or not)."""
    name = config.get("name")
    given = [Path(path).resolve() for path in workflow.config_settings.configfiles]
    if name is None and given and given[-1] != DEFAULT_CONFIG:
        name = given[-1].stem
    name = name or "default"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or name in ("runs", "reference"):
        raise ConfigError(
            f"config name {name!r} (results/{name}/): results/runs and results/reference "
            "are taken; give a folder name with config key name"
        )
    return name


CONFIG_NAME = _config_name()


def config_output(path):
    """Where an output that depends on the config lives: results/<config name>/<path>
    (its log: logs/<config name>/<path>). Every aggregated output (summaries, tables,
    figures, report) and every output whose content depends on config values other than a
    training run's identity (certificates, measurements) goes through here, so two configs
    never write the same file. Training runs (RUN_DIR) are shared: the engine resumes or
    reports a run folder only under the same identity (aol/engine/run_folder.py)."""
    return f"results/{CONFIG_NAME}/{path}"


def config_log(path):
    return f"logs/{CONFIG_NAME}/{path}"


RUN_DIR = "results/runs/{dataset}/{architecture}/{family}/{variant}/seed{seed}"
RUN_PATH = "{dataset}/{architecture}/{family}/{variant}/seed{seed}"
CERTIFY_FILE = config_output(f"certify/{RUN_PATH}/certify.json")
MEASURE_FILE = config_output("measure/{dataset}/{architecture}/measure_batch{batch_size}.json")
CALIBRATION_FILE = config_output(
    "calibration/{dataset}/{architecture}/{family}/"
    "calibration_{recipe}_batch{batch_size}_{precision}.json"
)
TABLE_FORMATS = ["csv", "md", "tex", "html"]
FIGURES = [
    "certified_accuracy_vs_epsilon",
    "accuracy_vs_training_time",
    "training_curves",
    "certified_accuracy_vs_training_time",
]
if config["measure"]["enabled"]:
    FIGURES += ["time_and_memory", "certified_accuracy_vs_memory"]


def resources_of(dataset):
    """config job_resources of the dataset, else its entry "default"."""
    table = config["job_resources"]
    if dataset not in table and "default" not in table:
        raise ConfigError(
            f"config key job_resources: no entry for dataset {dataset} and no entry default"
        )
    return table.get(dataset, table.get("default"))


for _dataset in sorted({run[0] for run in RUNS}):
    resources_of(_dataset)


def job_threads(wildcards):
    return resources_of(wildcards.dataset)["threads"]


def job_mem_mb(wildcards, attempt):
    """Memory of the job in MB; a retried job gets attempt times the first one's."""
    return resources_of(wildcards.dataset)["mem_mb"] * attempt


def job_runtime(rule):
    """The runtime resource (minutes, attempt times the first one's) of the rule's jobs."""

    def runtime(wildcards, attempt):
        return resources_of(wildcards.dataset)["runtime"][rule] * attempt

    return runtime


def _job_needs(slurm_nodes):
    """The first attempt of every kind of engine job, as slurm_nodes.JobNeed."""
    needs = []
    for dataset in sorted({run[0] for run in RUNS}):
        key = "job_resources." + (dataset if dataset in config["job_resources"] else "default")
        values = resources_of(dataset)
        for rule_name in ("train", "certify", "measure"):
            needs.append(
                slurm_nodes.JobNeed(
                    what=f"{rule_name} jobs of dataset {dataset}",
                    key=key,
                    cpus=values["threads"],
                    mem_mb=values["mem_mb"],
                    gpus=GPUS_PER_JOB,
                    minutes=values["runtime"][rule_name],
                    runtime_key=f"runtime.{rule_name}",
                )
            )
    return needs


def check_slurm_fit():
    """With the SLURM executor: every job fits a node of the partition it goes to
    (SBATCH_PARTITION, else the cluster's default), or the pipeline stops now, naming the
    config value to lower; SLURM itself would leave such a job PENDING forever."""
    plugin = workflow.executor_plugin
    if plugin is None or plugin.name.removeprefix("snakemake-executor-plugin-") != "slurm":
        return
    import importlib.util

    path = Path(workflow.basedir) / "workflow/scripts/slurm_nodes.py"
    spec = importlib.util.spec_from_file_location("slurm_nodes", path)
    slurm_nodes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(slurm_nodes)
    reasons = slurm_nodes.check_jobs_fit(_job_needs(slurm_nodes))
    if reasons:
        raise ConfigError("\n".join(reasons))


def check_device():
    """device: cuda must exist where the jobs run. Checked when a real run starts here (the
    onstart handler of the Snakefile; not in a dry run, which may plan a GPU run on a laptop,
    nor with a cluster executor, whose jobs run on other machines and check it themselves)."""
    if not workflow.local_exec:
        return
    try:
        aol.engine.runtime.resolve_device(config["device"])
    except ValueError as error:
        raise ConfigError(f"config key device: {error}") from error


onstart:
    check_device()
    check_slurm_fit()


def run_fields(run):
    dataset, architecture, family, variant, seed = run
    return dict(
        dataset=dataset, architecture=architecture, family=family, variant=variant, seed=seed
    )


def experiment_of(wildcards):
    """The experiment a table shows; None for the cost table."""
    return EXPERIMENTS.get(wildcards.table)


def run_dir(wildcards):
    return RUN_DIR.format(**wildcards)


def _radii(values):
    """certify.epsilons, parsed once: the radii's canonical texts (36/255, 0.5, 1)."""
    try:
        return [str(aol.radius.Radius.parse(value)) for value in values]
    except ValueError as error:
        raise ConfigError(f"config key certify.epsilons: {error}") from error


RADII = _radii(config["certify"]["epsilons"])


def train_arguments(wildcards):
    """Flags of `python -m aol train` for the variant, besides the run's identity; the
    monitoring certificate uses the radii and test subset of certify.epsilons and
    certify.test_subset."""
    variant = VARIANTS[wildcards.variant]
    arguments = ["--device", config["device"], "--radii", *RADII]
    if config["certify"]["test_subset"] is not None:
        arguments += ["--test-subset", str(config["certify"]["test_subset"])]
    for key in (
        "recipe",
        "epochs",
        "batch_size",
        "train_subset",
        "lr",
        "schedule",
        "weight_decay",
        "momentum",
        "offset",
        "temperature",
        "checkpoint_every",
        "eval_every",
    ):
        if variant.get(key) is not None:
            arguments += [f"--{key.replace('_', '-')}", str(variant[key])]
    if variant["precision"] != "fp32":  # the engine's default: fp32 runs keep their command
        arguments += ["--precision", variant["precision"]]
    if budget_seconds(variant) is not None:
        arguments += ["--budget-seconds", repr(budget_seconds(variant))]
        arguments += ["--calibration", calibration_file(wildcards)]
    arguments += ["--data-dir", config["data_dir"]]
    return shlex.join(arguments)


def nominal_budget_seconds(variant):
    """The variant's training budget in seconds as the config gives it (before budget_scale);
    None for a variant trained for a number of epochs."""
    if variant.get("budget_hours"):
        return float(variant["budget_hours"]) * 3600
    if variant.get("budget_seconds"):
        return float(variant["budget_seconds"])
    return None


def budget_seconds(variant):
    """The seconds the variant's runs train for on this machine (budget_scale applied)."""
    nominal = nominal_budget_seconds(variant)
    return None if nominal is None else nominal * float(config["budget_scale"])


def nominal_budget_hours():
    """{variant: its nominal budget in hours}: the tables match published rows by it."""
    return {
        name: nominal_budget_seconds(variant) / 3600
        for name, variant in VARIANTS.items()
        if nominal_budget_seconds(variant) is not None
    }


def calibration_file(wildcards):
    """The calibration of a budget run (CALIBRATION_FILE), None without a budget."""
    variant = VARIANTS[wildcards.variant]
    if budget_seconds(variant) is None:
        return None
    recipe_name = variant["recipe"] or aol.engine.recipes.default_recipe(wildcards.dataset)
    batch_size = variant["batch_size"] or aol.engine.recipes.get(recipe_name).batch_size
    return CALIBRATION_FILE.format(
        dataset=wildcards.dataset,
        architecture=wildcards.architecture,
        family=wildcards.family,
        recipe=recipe_name,
        batch_size=batch_size,
        precision=variant["precision"],
    )


def train_inputs(wildcards):
    """The dataset's download marker (dataset_files) and a budget run's calibration."""
    inputs = dataset_files(wildcards)
    calibration = calibration_file(wildcards)
    if calibration is not None:
        inputs["calibration"] = calibration
    return inputs


def calibrate_arguments(wildcards):
    """Flags of `python -m aol calibrate` besides the run's dataset/architecture/family."""
    arguments = ["--recipe", wildcards.recipe, "--batch-size", wildcards.batch_size]
    arguments += ["--precision", wildcards.precision]
    arguments += ["--device", config["device"], "--data-dir", config["data_dir"]]
    for key in ("steps", "warmup"):
        arguments += [f"--{key}", str(config["calibration"][key])]
    return shlex.join(arguments)


def dataset_files(wildcards):
    """The download marker of a CIFAR dataset when the config lets the pipeline fetch it
    (rule download_dataset); nothing for digits, which ships with scikit-learn."""
    if config["download"] and wildcards.dataset in DOWNLOADABLE:
        return {"dataset": f"{config['data_dir']}/.{wildcards.dataset}.downloaded"}
    return {}


def certify_arguments(wildcards):
    certify = config["certify"]
    arguments = ["--device", config["device"], "--data-dir", config["data_dir"]]
    arguments += ["--radii", *RADII]
    for key in ("test_subset", "attack_points", "attack_steps", "attack_restarts"):
        if certify.get(key) is not None:
            arguments += [f"--{key.replace('_', '-')}", str(certify[key])]
    return shlex.join(arguments)


def measure_arguments(wildcards):
    """Flags of `python -m aol measure` besides the architecture and the batch size."""
    measure = config["measure"]
    arguments = ["--families", *MEASUREMENTS[(wildcards.dataset, wildcards.architecture)]]
    arguments += ["--dataset", wildcards.dataset, "--device", config["device"]]
    for key in ("repeats", "warmup"):
        if measure.get(key) is not None:
            arguments += [f"--{key}", str(measure[key])]
    return shlex.join(arguments)


def result_files():
    return [f"{RUN_DIR}/result.json".format(**run_fields(run)) for run in RUNS]


def certify_files():
    if not config["certify"]["enabled"]:
        return []
    return [CERTIFY_FILE.format(**run_fields(run)) for run in RUNS]


def measured_families():
    """{measure file: the families it measures}: collect gives a failed job a row for each."""
    if not config["measure"]["enabled"]:
        return {}
    batch_size = config["measure"]["batch_size"]
    return {
        MEASURE_FILE.format(dataset=dataset, architecture=architecture, batch_size=batch_size): (
            families
        )
        for (dataset, architecture), families in MEASUREMENTS.items()
    }


def measure_files():
    return list(measured_families())


def table_names():
    names = list(EXPERIMENTS)
    if config["measure"]["enabled"]:
        names.append("cost")
    return names


ORTHOGONALITY_FIGURE = config_output("figures/orthogonality.{ext}")


def orthogonality_run():
    """The run whose trained layers the orthogonality figure shows (the AOL paper's Figures
    1-2, which show AOL-STD): the first AOL run of aol-std if any, else the first AOL run;
    None when no run uses the aol family."""
    runs = sorted((run for run in RUNS if run[2] == "aol"), key=lambda run: run[1] != "aol-std")
    return run_fields(runs[0]) if runs else None


def orthogonality_result(wildcards):
    return f"{RUN_DIR}/result.json".format(**orthogonality_run())


def orthogonality_input_shape(wildcards):
    info = aol.engine.data.info(orthogonality_run()["dataset"])
    return [info.channels, info.image_size, info.image_size]


def final_targets():
    targets = expand(config_output("tables/{table}.{ext}"), table=table_names(), ext=TABLE_FORMATS)
    if config["figures"]:
        targets += expand(
            config_output("figures/{figure}.{ext}"), figure=FIGURES, ext=["png", "pdf"]
        )
        if orthogonality_run() is not None:
            targets += expand(ORTHOGONALITY_FIGURE, ext=["png", "pdf"])
    return targets
