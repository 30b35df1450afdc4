"""The layer benchmark's bookkeeping: multiply-add counts, weight transforms, training mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import aol
from aol import families
from aol.architectures.common import ZeroChannelConcatenation
from aol.engine.bench.layers import measure_case, output_square_mean
from aol.engine.cost import model_multiply_adds, training_step, weight_transform


def small_network(family):
    """conv 3 -> 4, flatten, dense to 6; for residual families, whose layers keep their size,
    zero channels 3 -> 4, conv 4 -> 4, flatten, dense 100 -> 100."""
    if not family.changes_channels:
        return nn.Sequential(
            ZeroChannelConcatenation(4), family.conv(4, 4, 3), family.activation(),
            nn.Flatten(), family.linear(100, 100),
        )  # fmt: skip
    return nn.Sequential(
        family.conv(3, 4, 3), family.activation(), nn.Flatten(), family.linear(4 * 5 * 5, 6)
    )


def test_standard_count_is_the_plain_conv_and_dense_cost():
    batch = 7
    network = small_network(families.get("standard"))
    count = model_multiply_adds(network, torch.randn(batch, 3, 5, 5))
    assert count == batch * 5 * 5 * 3 * 4 * 9 + batch * 100 * 6


def test_family_counts_follow_table_one_terms():
    batch = 7
    x = torch.randn(batch, 3, 5, 5)
    conv = batch * 5 * 5 * 3 * 4 * 9
    soc = model_multiply_adds(small_network(families.get("soc")), x)
    # SOC runs 5 convolutions of max(3, 4) = 4 channels plus the Gram bound and a dense series
    assert soc == 5 * batch * 25 * 16 * 9 + 4**3 * 9 * 25 + 5 * batch * 100**2 + 100**3
    spectral = model_multiply_adds(small_network(families.get("spectral")), x)
    # one Gram-iteration step on the 4x3x3x3 kernel (3x3 taps of 3x4 correlated into 5x5
    # offsets of 3x3), six on the 6x100 matrix (the first 100x6x100, then 100x100x100 each)
    conv_gram = 3 * 3 * 5 * 5 * 4 * 3 * 3
    dense_gram = 100 * 100 * 6 + 5 * 100**3
    assert spectral == conv + conv_gram + batch * 600 + dense_gram
    aol_count = model_multiply_adds(small_network(families.get("aol")), x)
    assert aol_count == conv + 4 * 9 * 81 + batch * 600 + 6 * 100**2


def test_unknown_parametrised_module_gives_no_prediction():
    network = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    assert model_multiply_adds(network, torch.randn(3, 4)) is None


def test_weight_transform_exists_for_constrained_families_only():
    x = torch.randn(2, 3, 5, 5)
    for name in families.names():
        network = small_network(families.get(name))
        network(x)  # Cayley's transform depends on the input size seen
        transform = weight_transform(network)
        assert (transform is None) == (name == "standard")
        if transform is not None:
            transform()


def test_training_step_refuses_a_model_left_in_eval_mode():
    network = small_network(families.get("aol"))
    step = training_step(network, output_square_mean(network, torch.randn(2, 3, 5, 5)))
    step()
    aol.export(network)  # leaves the original in its mode
    network.eval()
    with pytest.raises(RuntimeError, match="eval mode"):
        step()


def test_bench_rows_are_ratios_to_standard_of_the_same_run():
    rows = measure_case("dense", ["standard", "aol"], 4, 2, torch.device("cpu"))
    standard, aol_row = rows
    assert [row["family"] for row in rows] == ["standard", "aol"]
    assert standard["train_ratio"] == 1.0 and standard["transform_ms"] == 0.0
    assert aol_row["train_ratio"] == pytest.approx(aol_row["train_ms"] / standard["train_ms"])
    assert aol_row["transform_ms"] > 0
    assert aol_row["transform_share"] == pytest.approx(
        aol_row["transform_ms"] / standard["train_ms"]
    )
    # AOL's dense layer holds one more weight-sized tensor for its rescaling
    assert aol_row["memory_ratio"] > 1.0


def test_python_m_aol_bench_is_python_m_aol_space_bench(capsys):
    """``python -m aol.bench layers`` runs the same parser as ``python -m aol bench layers``;
    a bad argument is the same one-line usage error (exit 2)."""
    import subprocess
    import sys

    help_text = subprocess.run(
        [sys.executable, "-m", "aol.bench", "layers", "--help"], capture_output=True, text=True
    )
    assert help_text.returncode == 0 and "usage: aol bench layers" in help_text.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "aol.bench", "layers", "--cases", "nope"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stderr
