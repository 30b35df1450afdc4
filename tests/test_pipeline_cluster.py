"""The SLURM fit check (workflow/scripts/slurm_nodes.py): what `sinfo` reports, and the
one line that says which config value to lower when no node of the partition can ever run
a job (SLURM itself would leave it PENDING forever)."""

import math

import pytest
from pipeline_support import load_script

slurm_nodes = load_script("slurm_nodes")

# a 2-CPU default partition and a GPU partition with a 2-day limit
SINFO = "debug*|2|8000|(null)|infinite\ngpu|32|256000+|gpu:a100:4(S:0-1)|2-00:00:00\n"


def need(cpus=1, mem_mb=2000, gpus=0, minutes=60):
    return slurm_nodes.JobNeed(
        what="train jobs of dataset digits",
        key="job_resources.digits",
        cpus=cpus,
        mem_mb=mem_mb,
        gpus=gpus,
        minutes=minutes,
        runtime_key="runtime.train",
    )


@pytest.mark.parametrize(
    ("limit", "minutes"),
    [
        ("infinite", math.inf),
        ("UNLIMITED", math.inf),
        ("30", 30),
        ("30:30", 30.5),
        ("2:00:00", 120),
        ("1-00", 1440),
        ("1-12:30", 2190),
        ("2-00:00:30", 2880.5),
    ],
)
def test_time_limits_in_minutes(limit, minutes):
    assert slurm_nodes.parse_minutes(limit) == minutes


@pytest.mark.parametrize(
    ("gres", "gpus"),
    [("(null)", 0), ("gpu:2", 2), ("gpu:a100:4(S:0-1)", 4), ("gpu:a100:2,gpu:v100:1", 3)],
)
def test_gpus_in_generic_resources(gres, gpus):
    assert slurm_nodes.parse_gpus(gres) == gpus


def test_sinfo_nodes_and_default_partition():
    nodes = slurm_nodes.parse_sinfo(SINFO)
    assert [(n.partition, n.default, n.cpus, n.mem_mb, n.gpus) for n in nodes] == [
        ("debug", True, 2, 8000, 0),
        ("gpu", False, 32, 256000, 4),
    ]
    assert nodes[1].minutes == 2880
    assert slurm_nodes.target_partition(nodes, None) == "debug"
    assert slurm_nodes.target_partition(nodes, "gpu") == "gpu"


def test_a_digits_job_fits_a_two_cpu_node():
    nodes = slurm_nodes.parse_sinfo(SINFO)
    assert slurm_nodes.unfit_reason(need(), nodes, "debug") is None


def test_a_job_too_big_for_the_partition_names_the_value_to_lower():
    nodes = slurm_nodes.parse_sinfo(SINFO)
    reason = slurm_nodes.unfit_reason(need(cpus=8, mem_mb=16000, gpus=1), nodes, "debug")
    assert reason.startswith(
        "train jobs of dataset digits can never start on SLURM partition debug"
    )
    assert "job_resources.digits.threads (8 CPUs; a node has 2)" in reason
    assert "job_resources.digits.mem_mb (16000 MB; a node has 8000 MB)" in reason
    assert "device (1 GPU" in reason
    # the GPU partition runs it, but not for longer than its limit
    assert slurm_nodes.unfit_reason(need(cpus=8, mem_mb=16000, gpus=1), nodes, "gpu") is None
    too_long = slurm_nodes.unfit_reason(need(minutes=3000), nodes, "gpu")
    assert "job_resources.digits.runtime.train (3000 min; the limit is 2880 min)" in too_long
    missing = slurm_nodes.unfit_reason(need(), nodes, "long")
    assert missing == "SLURM partition 'long' has no nodes (partitions: debug, gpu)"
