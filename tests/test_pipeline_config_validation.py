"""A bad config fails before any job runs, with one message naming the offending key."""

import copy
import os

import pytest
from pipeline_support import load_config, run_in_process, write_config
from snakemake_interface_common.exceptions import WorkflowError


def misspelt_key(config):
    config["variants"][0]["epochz"] = config["variants"][0].pop("epochs")
    return "epochz"


def negative_epochs(config):
    config["variants"][0]["epochs"] = -3
    return "variants[0].epochs"


def epochs_and_budget(config):
    config["variants"][0]["budget_seconds"] = 20
    return "variants[name=digits]"


def zero_budget(config):
    config["variants"][0].pop("epochs")
    config["variants"][0]["budget_hours"] = 0
    return "variants[0].budget_hours"


def zero_budget_scale(config):
    config["budget_scale"] = 0
    return "budget_scale"


def unknown_family(config):
    config["experiments"][0]["families"] = ["aol", "no-such-family"]
    return "experiments[name=digits].families"


def unknown_architecture(config):
    config["experiments"][0]["architectures"] = ["aol-tiny"]
    return "experiments[name=digits].architectures"


def unknown_variant(config):
    config["experiments"][0]["variants"] = ["nope"]
    return "experiments[name=digits].variants"


def unknown_recipe(config):
    config["variants"][0]["recipe"] = "papr"
    return "variants[name=digits].recipe"


# What the engine rejects, the config rejects too, before any job (the same checks).


def no_attack_steps(config):
    config["certify"]["attack_steps"] = 0
    return "certify.attack_steps"


def no_attack_restarts(config):
    config["certify"]["attack_restarts"] = 0
    return "certify.attack_restarts"


def zero_radius(config):
    config["certify"]["epsilons"] = ["36/255", "0"]
    return "certify.epsilons"


def radius_over_zero(config):
    config["certify"]["epsilons"] = ["36/0"]
    return "certify.epsilons"


def momentum_one(config):
    config["variants"][0]["momentum"] = 1
    return "variants[0].momentum"


def no_momentum_with_nesterov(config):
    config["variants"][0]["momentum"] = 0  # the digits recipe uses Nesterov momentum
    return "variants[name=digits].momentum"


def infinite_lr(config):
    config["variants"][0]["lr"] = float("inf")
    return "variants[0].lr"


def nan_temperature(config):
    config["variants"][0]["temperature"] = float("nan")
    return "variants[name=digits].temperature"


def unknown_schedule(config):
    config["variants"][0]["schedule"] = "cosine"
    return "variants[0].schedule"


def zero_train_subset(config):
    config["variants"][0]["train_subset"] = 0
    return "variants[0].train_subset"


def train_subset_above_the_split(config):
    config["variants"][0]["train_subset"] = 1348  # digits has 1347 training images
    return "variants[name=digits].train_subset"


def zero_test_subset(config):
    config["certify"]["test_subset"] = 0
    return "certify.test_subset"


def certify_subset_above_the_split(config):
    config["certify"]["test_subset"] = 451  # digits has 450 test images
    return "certify.test_subset"


def seed_above_int64(config):
    config["seeds"] = [0, 2**63]
    return "seeds[1]"


def residual_family_on_an_aol_paper_model(config):
    config["experiments"][0]["architectures"] = ["aol-small"]  # a channel-changing 1x1 conv
    config["experiments"][0]["families"] = ["aol", "sll"]
    return "experiments[name=digits].architectures"


def architecture_too_big_for_digits(config):
    config["experiments"][0]["architectures"] = ["aol-alt"]  # for 32x32 images
    return "experiments[name=digits].architectures"


def no_resources_for_digits(config):
    config["job_resources"] = {"cifar10": config["job_resources"]["default"]}
    return "job_resources"


def resources_without_memory(config):
    del config["job_resources"]["digits"]["mem_mb"]
    return "job_resources.digits"


def name_of_the_shared_runs_folder(config):
    config["name"] = "runs"  # results/runs/ holds the training runs of every config
    return "runs"


@pytest.mark.parametrize(
    "spoil",
    [
        misspelt_key,
        negative_epochs,
        unknown_family,
        epochs_and_budget,
        zero_budget,
        zero_budget_scale,
        unknown_architecture,
        unknown_variant,
        unknown_recipe,
        no_attack_steps,
        no_attack_restarts,
        zero_radius,
        radius_over_zero,
        momentum_one,
        no_momentum_with_nesterov,
        infinite_lr,
        nan_temperature,
        unknown_schedule,
        zero_train_subset,
        train_subset_above_the_split,
        zero_test_subset,
        certify_subset_above_the_split,
        seed_above_int64,
        architecture_too_big_for_digits,
        residual_family_on_an_aol_paper_model,
        no_resources_for_digits,
        resources_without_memory,
        name_of_the_shared_runs_folder,
    ],
)
def test_bad_config_fails_before_any_job(tmp_path, spoil):
    """Checked when the Snakefile is read: even the dry run fails, naming the key."""
    config = copy.deepcopy(load_config("config.yaml"))
    key = spoil(config)
    path = write_config(tmp_path / "bad.yaml", config)
    message = failure_message(tmp_path, path, dry_run=True)
    assert f"config key {key}" in message or repr(key) in message, message
    assert not (tmp_path / "work" / "results").exists()
    assert not (tmp_path / "work" / "logs").exists()


def test_cuda_where_there_is_none_fails_before_any_job(tmp_path, monkeypatch):
    """A dry run may plan a GPU run on a machine without one; a real run fails at its start."""
    config = copy.deepcopy(load_config("config.yaml"))
    config["device"] = "cuda"
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    path = write_config(tmp_path / "bad.yaml", config)
    message = failure_message(tmp_path, path, dry_run=False)
    assert "config key device" in message and "CUDA is not available" in message, message
    assert not (tmp_path / "work" / "results").exists()
    assert not (tmp_path / "work" / "logs").exists()


def failure_message(tmp_path, configfile, dry_run):
    """The error of running the pipeline on ``configfile`` in tmp_path/work."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    cwd = os.getcwd()
    try:
        with pytest.raises((WorkflowError, ValueError)) as error:
            run_in_process(workdir, configfile, dry_run=dry_run)
    finally:
        os.chdir(cwd)  # the API changes into workdir
    return str(error.value)


def test_yaml_syntax_error_fails_before_any_job(tmp_path):
    """Snakemake reads a --configfile before the Snakefile (so before common.smk): its own
    error stops the run, and nothing is started."""
    path = tmp_path / "broken.yaml"
    path.write_text("device: cpu\nseeds: [0, 1\nvariants:\n  - name: x\n")
    message = failure_message(tmp_path, path, dry_run=True)
    assert "YAML" in message, message
    assert not (tmp_path / "work" / "results").exists()
