"""workflow/scripts/orthogonality.py: the AOL paper's Figures 1-2 for a trained run."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from aol import AOLConv2d, AOLLinear, ConcatenationPooling, FirstChannels, MaxMin
from aol.testing import randomise

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))
import orthogonality  # noqa: E402


def small_network() -> torch.nn.Sequential:
    return torch.nn.Sequential(
        ConcatenationPooling(2),
        AOLConv2d(4, 8, 1),
        MaxMin(),
        AOLConv2d(8, 8, 3),
        FirstChannels(4),
        torch.nn.Flatten(),
        AOLLinear(16, 6),
    ).double()


def test_spectra_are_the_exact_singular_values_and_the_heat_map_is_a_3x3_conv():
    model = small_network()
    randomise(model, seed=3)
    values, heat_label, gram = orthogonality.spectra(model, torch.zeros(1, 1, 4, 4).double())
    assert list(values) == [
        "1: AOLConv2d on 4x2x2", "3: AOLConv2d on 8x2x2", "6: AOLLinear on 16",
    ]  # fmt: skip
    assert heat_label == "3: AOLConv2d on 8x2x2"
    jacobian = orthogonality.layer_jacobian(model[3], (8, 2, 2))
    torch.testing.assert_close(gram, (jacobian.T @ jacobian).abs())
    for (label, singular_values), layer, shape in zip(
        values.items(), (model[1], model[3], model[6]), ((4, 2, 2), (8, 2, 2), (16,)), strict=True
    ):
        expected = torch.linalg.svdvals(orthogonality.layer_jacobian(layer, shape))
        torch.testing.assert_close(singular_values, expected, atol=1e-7, rtol=0)
        assert singular_values[0] <= 1 + 1e-9, label  # AOL's bound


def test_large_inputs_are_measured_on_a_smaller_image_and_the_figure_draws():
    assert orthogonality.measured_shape((192, 8, 8)) == (192, 2, 2)
    assert orthogonality.measured_shape((4, 8, 8)) == (4, 8, 8)
    assert orthogonality.measured_shape((4096,)) == (4096,)
    model = small_network()
    values, heat_label, gram = orthogonality.spectra(model, torch.zeros(1, 1, 4, 4).double())
    figure = orthogonality.draw(values, heat_label, gram, "test")
    assert len(figure.axes) == 3  # heat map, its colour bar, spectra
