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


@pytest.mark.parametrize(
    "spoil",
    [
        misspelt_key,
        negative_epochs,
        unknown_family,
        unknown_architecture,
        unknown_variant,
        unknown_recipe,
    ],
)
def test_bad_config_fails_before_any_job(tmp_path, spoil):
    config = copy.deepcopy(load_config("config.yaml"))
    key = spoil(config)
    path = write_config(tmp_path / "bad.yaml", config)
    workdir = tmp_path / "work"
    workdir.mkdir()
    cwd = os.getcwd()
    try:
        with pytest.raises((WorkflowError, ValueError)) as error:
            run_in_process(workdir, path)
    finally:
        os.chdir(cwd)  # the API changes into workdir
    message = str(error.value)
    assert f"config key {key}" in message or repr(key) in message, message
    assert not (workdir / "results").exists()
    assert not (workdir / "logs").exists()
