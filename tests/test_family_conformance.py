"""Conformance suite, written once and run over every registered layer family.

A family added later (a baseline module, or another package's entry point) is
checked here with no new test code. The checks compare each layer's stated
``lipschitz_bound()`` with an independent measurement: the singular values of
the exact float64 Jacobian.
"""

from __future__ import annotations

import copy

import pytest
import torch

import aol
from aol import families
from aol.verify import jacobian_singular_values

FAMILY_NAMES = families.names()
KERNEL_SIZES = (1, 3, 5)
CHANNEL_PAIRS = ((3, 6), (6, 3), (4, 4))  # c_in < c_out, c_in > c_out, square
DENSE_SHAPES = ((8, 8), (5, 12), (12, 5), (1, 7), (16, 3))
IMAGE_SIZE = 6
TOLERANCE = 1e-6  # the tolerance on sigma_max <= bound, in float64


BOUNDED_FAMILY_NAMES = [name for name in FAMILY_NAMES if families.get(name).lipschitz]


def conv_cases():
    cases = []
    for name in BOUNDED_FAMILY_NAMES:
        family = families.get(name)
        for padding_mode in family.padding_modes:
            for kernel_size in KERNEL_SIZES:
                for c_in, c_out in CHANNEL_PAIRS:
                    cases.append(
                        pytest.param(
                            name,
                            padding_mode,
                            kernel_size,
                            c_in,
                            c_out,
                            id=f"{name}-{padding_mode}-k{kernel_size}-{c_in}to{c_out}",
                        )
                    )
    return cases


def dense_cases():
    return [
        pytest.param(name, n_in, n_out, id=f"{name}-{n_in}to{n_out}")
        for name in BOUNDED_FAMILY_NAMES
        for n_in, n_out in DENSE_SHAPES
    ]


def build_conv(name, padding_mode, kernel_size, c_in, c_out):
    family = families.get(name)
    layer = family.conv(c_in, c_out, kernel_size, padding_mode=padding_mode).double()
    return layer, (c_in, IMAGE_SIZE, IMAGE_SIZE)


def build_dense(name, in_features, out_features):
    return families.get(name).linear(in_features, out_features).double(), (in_features,)


def randomise(layer, seed=1):
    """Overwrite every parameter with N(0, 1) noise: a bound must hold for any weights."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.copy_(
                torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            )


def maximise_output_norm(layer, input_shape, steps=20, lr=0.1):
    """20 Adam steps on the raw parameters that push ``||f(x)||^2`` up (adversarial weights)."""
    x = torch.randn(8, *input_shape, dtype=torch.float64)
    optimiser = torch.optim.Adam(layer.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        (-layer(x).square().sum()).backward()
        optimiser.step()


def assert_bound_holds(layer, input_shape):
    layer.train(False)
    sigma_max = jacobian_singular_values(layer, input_shape)[0].item()
    bound = layer.lipschitz_bound()
    assert sigma_max <= bound + TOLERANCE, f"exact norm {sigma_max} exceeds stated bound {bound}"
    return sigma_max, bound


@pytest.mark.parametrize(("name", "padding_mode", "kernel_size", "c_in", "c_out"), conv_cases())
def test_conv_bound_random_weights(name, padding_mode, kernel_size, c_in, c_out):
    layer, input_shape = build_conv(name, padding_mode, kernel_size, c_in, c_out)
    randomise(layer)
    assert_bound_holds(layer, input_shape)


@pytest.mark.parametrize(("name", "padding_mode", "kernel_size", "c_in", "c_out"), conv_cases())
def test_conv_bound_adversarial_weights(name, padding_mode, kernel_size, c_in, c_out):
    layer, input_shape = build_conv(name, padding_mode, kernel_size, c_in, c_out)
    randomise(layer, seed=2)
    maximise_output_norm(layer, input_shape)
    assert_bound_holds(layer, input_shape)


@pytest.mark.parametrize(("name", "in_features", "out_features"), dense_cases())
def test_dense_bound_random_and_adversarial_weights(name, in_features, out_features):
    layer, input_shape = build_dense(name, in_features, out_features)
    randomise(layer)
    assert_bound_holds(layer, input_shape)
    maximise_output_norm(layer, input_shape)
    assert_bound_holds(layer, input_shape)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_network_bound_is_product_and_holds(name):
    """A small conv -> activation -> pooling -> dense network: the composed bound holds."""
    family = families.get(name)
    network = torch.nn.Sequential(
        family.conv(2, 4, 3),
        family.activation(),
        family.conv(4, 4, 3),
        family.activation(),
        aol.ConcatenationPooling(2),
        torch.nn.Flatten(),
        family.linear(4 * 4 * 3 * 3, 6),
        aol.FirstChannels(4),
    ).double()
    randomise(network, seed=3)
    bound = aol.network_lipschitz_bound(network)
    if not family.lipschitz:
        assert bound is None
        return
    layer_bounds = [m.lipschitz_bound() for m in (network[0], network[2], network[6])]
    assert bound == pytest.approx(layer_bounds[0] * layer_bounds[1] * layer_bounds[2])
    network.train(False)
    for seed in range(3):  # the network is nonlinear: check the Jacobian at several points
        sigma_max = jacobian_singular_values(network, (2, 6, 6), seed=seed)[0].item()
        assert sigma_max <= bound + TOLERANCE


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_export_matches_and_leaves_original_untouched(name):
    family = families.get(name)
    network = torch.nn.Sequential(
        family.conv(3, 8, 3), family.activation(), torch.nn.Flatten(), family.linear(8 * 36, 10)
    )
    randomise(network, seed=4)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.mul_(0.3)
    x = torch.rand(5, 3, 6, 6)
    network.train(False)
    expected = network(x)
    exported = aol.export(network)
    assert not exported.training
    torch.testing.assert_close(exported(x), expected, rtol=1e-6, atol=1e-6)
    # the original keeps its own parameters and type
    assert type(network[0]) is type(family.conv(3, 8, 3))
    with torch.no_grad():
        next(exported.parameters()).add_(1.0)
    torch.testing.assert_close(network(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_gradients_reach_every_parameter(name):
    family = families.get(name)
    for layer, x in (
        (family.conv(3, 6, 3), torch.randn(4, 3, 6, 6)),
        (family.linear(5, 7), torch.randn(4, 5)),
    ):
        randomise(layer, seed=5)
        layer(x).square().sum().backward()
        for parameter_name, parameter in layer.named_parameters():
            assert parameter.grad is not None, parameter_name
            assert torch.isfinite(parameter.grad).all(), parameter_name
            assert parameter.grad.abs().sum() > 0, parameter_name


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_gradients_match_finite_differences(name):
    """gradcheck fails if a weight transform were detached from the graph."""
    family = families.get(name)
    layer = family.conv(2, 3, 3).double()
    randomise(layer, seed=6)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    parameters = dict(layer.named_parameters())

    def as_function(*values):
        state = dict(zip(parameters, values, strict=True))
        return torch.func.functional_call(layer, state, (x,))

    assert torch.autograd.gradcheck(as_function, tuple(parameters.values()))


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_state_dict_round_trip(name):
    family = families.get(name)
    source = torch.nn.Sequential(family.conv(3, 6, 3), family.activation(), family.conv(6, 4, 1))
    randomise(source, seed=7)
    target = torch.nn.Sequential(family.conv(3, 6, 3), family.activation(), family.conv(6, 4, 1))
    target.load_state_dict(copy.deepcopy(source.state_dict()))
    x = torch.randn(2, 3, 6, 6)
    source.train(False)
    target.train(False)
    torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_unknown_family_lists_registered_names():
    with pytest.raises(KeyError) as error:
        families.get("no-such-family")
    message = str(error.value)
    for name in FAMILY_NAMES:
        assert name in message


def test_required_families_are_registered():
    assert {"aol", "standard"} <= set(FAMILY_NAMES)
    assert "aol" in BOUNDED_FAMILY_NAMES
    assert "standard" not in BOUNDED_FAMILY_NAMES


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_states_a_bound_exactly_when_it_says_so(name):
    family = families.get(name)
    for layer in (family.conv(3, 4, 3), family.linear(3, 4)):
        assert hasattr(layer, "lipschitz_bound") == family.lipschitz
        if family.lipschitz:
            bound = layer.lipschitz_bound()
            assert 0 < bound < float("inf")
