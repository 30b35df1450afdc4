"""Conformance checks every layer family must pass, as one public function.

Like scikit-learn's ``check_estimator``: a family shipped anywhere (this repository's
baselines, or another package's ``aol.families`` entry point) tests itself with::

    from aol.testing import check_family
    check_family(MY_FAMILY)                                   # every check that applies
    check_family(MY_FAMILY, checks=["bound_random_weights"])  # one check

A failure raises ``ConformanceError`` (an ``AssertionError``) whose message names the check,
the family and the case (layer, shape, kernel, padding). ``CHECKS`` maps each check's name
to its function; ``BOUND_CHECKS`` names those that apply only to a family with
``lipschitz=True``. Every bound is compared with an independent measurement: the singular
values of the layer's exact float64 Jacobian (``aol.verify.jacobian_singular_values``), at
``NONLINEAR_POINTS`` random points for a family with ``nonlinear=True``. For a family with
``changes_channels=False`` the layer cases keep the channel count (the square shapes), the
small networks widen and narrow as architectures do (``aol.architectures.common``), and
``channel_changes_refused`` checks that its layers refuse ``in != out`` with a ValueError.

Each case runs with the global torch RNG seeded to 0 inside ``torch.random.fork_rng``, so a
check gives the same result whatever ran before it and leaves the caller's RNG untouched.
This module imports torch and the library only.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from aol import families
from aol.architectures.common import channel_changing_conv, channel_changing_linear
from aol.export import export
from aol.families import LayerFamily
from aol.lipschitz import network_lipschitz_bound
from aol.nn.contract import LipschitzLayer
from aol.nn.modules import ConcatenationPooling, FirstChannels
from aol.verify import jacobian_singular_values

#: Slack of ``sigma_max <= lipschitz_bound() + TOLERANCE``, both in float64.
TOLERANCE = 1e-6
#: Spatial size of the inputs whose exact Jacobian is formed (``c x 6 x 6``).
IMAGE_SIZE = 6
KERNEL_SIZES = (1, 3, 5)
#: ``(c_in, c_out)``: channels grow, shrink, stay.
CHANNEL_PAIRS = ((3, 6), (6, 3), (4, 4))
#: ``(in_features, out_features)`` of the dense cases.
DENSE_SHAPES = ((8, 8), (5, 12), (12, 5), (1, 7), (16, 3))
#: Random points at which the exact Jacobian of a nonlinear family's layer is taken.
NONLINEAR_POINTS = 3


class ConformanceError(AssertionError):
    """A family failed a conformance check; the message names the check, family and case."""


def randomise(module: nn.Module, seed: int = 1) -> None:
    """Overwrite every parameter with N(0, 1) noise: a bound must hold for any weights."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(
                torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            )


def maximise_output_norm(layer: nn.Module, input_shape, steps: int = 20, lr: float = 0.1) -> None:
    """Adam steps on the raw parameters that push ``||f(x)||^2`` up (adversarial weights).

    ``x`` is 8 float64 samples of ``input_shape`` from the global torch RNG.
    """
    x = torch.randn(8, *input_shape, dtype=torch.float64)
    optimiser = torch.optim.Adam(layer.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        (-layer(x).square().sum()).backward()
        optimiser.step()


def assert_bound_holds(layer: nn.Module, input_shape, points: int = 1) -> tuple[float, float]:
    """In eval mode, ``sigma_max`` of the exact Jacobian at ``points`` random inputs of
    ``input_shape`` is at most ``lipschitz_bound() + TOLERANCE``; returns the largest
    ``(sigma_max, bound)``."""
    layer.train(False)
    sigma_max = max(
        jacobian_singular_values(layer, input_shape, seed=seed)[0].item() for seed in range(points)
    )
    bound = layer.lipschitz_bound()
    if not sigma_max <= bound + TOLERANCE:
        raise AssertionError(f"exact norm {sigma_max} exceeds stated bound {bound}")
    return sigma_max, bound


def _expect(condition: bool, message: str) -> None:
    """``assert`` that survives ``python -O``."""
    if not condition:
        raise AssertionError(message)


@contextmanager
def _case(check: str, family: LayerFamily, **case) -> Iterator[None]:
    """Run one case with the global RNG seeded to 0 (forked), reporting any failure as a
    ``ConformanceError`` naming the check, the family and the case."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            yield
        except Exception as error:
            described = ", ".join(f"{key}={value!r}" for key, value in case.items())
            raise ConformanceError(
                f"check {check!r} failed for family {family.name!r} ({described}): "
                f"{type(error).__name__}: {error}"
            ) from error


def _points(family: LayerFamily) -> int:
    return NONLINEAR_POINTS if family.nonlinear else 1


def _sizes(family: LayerFamily, size_in: int, size_out: int) -> tuple[int, int]:
    """``(size_in, size_out)``, or ``(size_out, size_out)`` for a family whose layers keep
    their channel count."""
    return (size_in, size_out) if family.changes_channels else (size_out, size_out)


def _conv_cases(family: LayerFamily) -> Iterator[dict]:
    pairs = [pair for pair in CHANNEL_PAIRS if family.changes_channels or pair[0] == pair[1]]
    for padding_mode in family.padding_modes:
        for kernel_size in KERNEL_SIZES:
            for c_in, c_out in pairs:
                yield {
                    "layer": "conv",
                    "in_channels": c_in,
                    "out_channels": c_out,
                    "kernel_size": kernel_size,
                    "padding_mode": padding_mode,
                    "input_shape": (c_in, IMAGE_SIZE, IMAGE_SIZE),
                }


def _dense_cases(family: LayerFamily) -> Iterator[dict]:
    shapes = [shape for shape in DENSE_SHAPES if family.changes_channels or shape[0] == shape[1]]
    for n_in, n_out in shapes:
        yield {
            "layer": "linear",
            "in_features": n_in,
            "out_features": n_out,
            "input_shape": (n_in,),
        }


def _build(family: LayerFamily, case: dict) -> nn.Module:
    """The float64 layer of a case from ``_conv_cases``, ``_dense_cases`` or
    ``_strided_and_dilated_cases``."""
    if case["layer"] == "conv":
        optional = {name: case[name] for name in OPTIONAL_CONV_ARGUMENTS if name in case}
        layer = family.conv(
            case["in_channels"],
            case["out_channels"],
            case["kernel_size"],
            padding_mode=case["padding_mode"],
            **optional,
        )
    else:
        layer = family.linear(case["in_features"], case["out_features"])
    return layer.double()


def check_bound_random_weights(family: LayerFamily) -> None:
    """The exact norm is at most the stated bound at N(0, 1) weights: convolutions of every
    kernel size in ``KERNEL_SIZES``, channel pair in ``CHANNEL_PAIRS`` and supported padding on
    ``c x 6 x 6`` inputs, dense layers of every shape in ``DENSE_SHAPES``, and strided and
    dilated convs where the family supports them (``_strided_and_dilated_cases``)."""
    cases = (*_conv_cases(family), *_dense_cases(family), *_strided_and_dilated_cases(family))
    for case in cases:
        with _case("bound_random_weights", family, **case):
            layer = _build(family, case)
            randomise(layer, seed=1)
            assert_bound_holds(layer, case["input_shape"], _points(family))


def check_bound_adversarial_weights(family: LayerFamily) -> None:
    """As ``bound_random_weights``, after 20 Adam steps (training mode) that push the output
    norm up from N(0, 1) weights."""
    for case in (*_conv_cases(family), *_dense_cases(family)):
        with _case("bound_adversarial_weights", family, **case):
            layer = _build(family, case)
            randomise(layer, seed=2 if case["layer"] == "conv" else 1)
            maximise_output_norm(layer, case["input_shape"])
            assert_bound_holds(layer, case["input_shape"], _points(family))


def _small_network(family: LayerFamily) -> nn.Sequential:
    """conv -> activation -> conv -> activation -> pooling -> dense -> first channels."""
    return nn.Sequential(
        *channel_changing_conv(family, 2, 4, 3),
        family.activation(),
        family.conv(4, 4, 3),
        family.activation(),
        ConcatenationPooling(2),
        nn.Flatten(),
        *channel_changing_linear(family, 4 * 4 * 3 * 3, 6),
        FirstChannels(4),
    )


def check_network_bound(family: LayerFamily) -> None:
    """A small network's bound (``aol.network_lipschitz_bound``) is the product of its layers'
    bounds and holds for the exact Jacobian at 3 points; ``None`` for a family without bounds."""
    with _case("network_bound", family, network="conv-act-conv-act-pool-dense", input=(2, 6, 6)):
        network = _small_network(family).double()
        randomise(network, seed=3)
        bound = network_lipschitz_bound(network)
        if not family.lipschitz:
            _expect(bound is None, f"a family without bounds got a network bound {bound}")
            return
        product = math.prod(
            module.lipschitz_bound() for module in network if hasattr(module, "lipschitz_bound")
        )
        _expect(
            bound is not None and math.isclose(bound, product, rel_tol=1e-6),
            f"network bound {bound} is not the product {product} of its layers' bounds",
        )
        network.train(False)
        for seed in range(3):  # the network is nonlinear: check the Jacobian at several points
            sigma_max = jacobian_singular_values(network, (2, 6, 6), seed=seed)[0].item()
            _expect(
                sigma_max <= bound + TOLERANCE,
                f"exact norm {sigma_max} at point {seed} exceeds the network bound {bound}",
            )


def check_export(family: LayerFamily) -> None:
    """``aol.export`` of a conv -> activation -> dense network computes what the network
    computes in eval mode (1e-6), is in eval mode, and shares nothing with the original."""
    with _case("export", family, network="conv(3->8, k3)-act-dense", input=(5, 3, 6, 6)):
        network = nn.Sequential(
            *channel_changing_conv(family, 3, 8, 3),
            family.activation(),
            nn.Flatten(),
            *channel_changing_linear(family, 8 * 36, 10),
        )
        layer_types = [type(module) for module in network]
        randomise(network, seed=4)
        with torch.no_grad():
            for parameter in network.parameters():
                parameter.mul_(0.3)
        x = torch.rand(5, 3, 6, 6)
        network.train(False)
        expected = network(x)
        exported = export(network)
        _expect(not exported.training, "the exported model is not in eval mode")
        torch.testing.assert_close(exported(x), expected, rtol=1e-6, atol=1e-6)
        _expect(
            [type(module) for module in network] == layer_types,
            "export replaced a layer of the original model",
        )
        with torch.no_grad():
            next(exported.parameters()).add_(1.0)
        torch.testing.assert_close(network(x), expected, rtol=0, atol=0)


def check_gradients_reach_every_parameter(family: LayerFamily) -> None:
    """A loss on the output of a conv (3->6, k3) and a dense layer (5->7) gives every parameter
    a finite, non-zero gradient."""
    (c_in, c_out), (n_in, n_out) = _sizes(family, 3, 6), _sizes(family, 5, 7)
    for build, x, description in (
        (lambda: family.conv(c_in, c_out, 3), torch.randn(4, c_in, 6, 6), "conv(3->6, k3)"),
        (lambda: family.linear(n_in, n_out), torch.randn(4, n_in), "linear(5->7)"),
    ):
        with _case("gradients_reach_every_parameter", family, layer=description):
            layer = build()
            randomise(layer, seed=5)
            layer(x).square().sum().backward()
            for name, parameter in layer.named_parameters():
                _expect(parameter.grad is not None, f"no gradient reaches {name}")
                _expect(bool(torch.isfinite(parameter.grad).all()), f"{name}: non-finite grad")
                _expect(bool(parameter.grad.abs().sum() > 0), f"{name}: gradient is zero")


def check_gradients_match_finite_differences(family: LayerFamily) -> None:
    """``torch.autograd.gradcheck`` of a conv (2->3, k3) in its parameters, in float64: fails
    if a weight transform were detached from the graph or its backward were wrong."""
    with _case("gradients_match_finite_differences", family, layer="conv(2->3, k3)"):
        c_in, c_out = _sizes(family, 2, 3)
        layer = family.conv(c_in, c_out, 3).double()
        randomise(layer, seed=6)
        x = torch.randn(1, c_in, 5, 5, dtype=torch.float64)
        parameters = dict(layer.named_parameters())

        def as_function(*values):
            state = dict(zip(parameters, values, strict=True))
            return torch.func.functional_call(layer, state, (x,))

        _expect(
            torch.autograd.gradcheck(as_function, tuple(parameters.values())), "gradcheck failed"
        )


def check_state_dict_round_trip(family: LayerFamily) -> None:
    """A network loaded from another's ``state_dict`` computes exactly the same outputs."""
    with _case("state_dict_round_trip", family, network="conv(3->6, k3)-act-conv(6->4, k1)"):

        def build():
            return nn.Sequential(
                *channel_changing_conv(family, 3, 6, 3),
                family.activation(),
                *channel_changing_conv(family, 6, 4, 1),
            )

        source = build()
        randomise(source, seed=7)
        target = build()
        target.load_state_dict(copy.deepcopy(source.state_dict()))
        x = torch.randn(2, 3, 6, 6)
        source.train(False)
        target.train(False)
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def check_states_bound_iff_lipschitz(family: LayerFamily) -> None:
    """Its conv and dense layers have ``lipschitz_bound()`` exactly when the family says
    ``lipschitz=True``, and then it is positive and finite."""
    c_in, c_out = _sizes(family, 3, 4)
    for build, description in (
        (lambda: family.conv(c_in, c_out, 3), "conv(3->4, k3)"),
        (lambda: family.linear(c_in, c_out), "linear(3->4)"),
    ):
        with _case("states_bound_iff_lipschitz", family, layer=description):
            layer = build()
            states_bound = hasattr(layer, "lipschitz_bound")
            _expect(
                states_bound == family.lipschitz,
                f"lipschitz={family.lipschitz} but the layer "
                f"{'has' if states_bound else 'lacks'} lipschitz_bound()",
            )
            if family.lipschitz:
                bound = layer.lipschitz_bound()
                _expect(0 < bound < math.inf, f"bound {bound} is not positive and finite")


def _check_contract_methods(layer: nn.Module, input_shape: tuple[int, ...]) -> None:
    _expect(isinstance(layer, LipschitzLayer), f"{type(layer).__name__} is no aol.LipschitzLayer")
    bound = layer.lipschitz_bound()
    _expect(
        isinstance(bound, numbers.Real) and 0 < bound < math.inf,
        f"lipschitz_bound() returned {bound!r}, not a positive finite float",
    )
    layer(torch.randn(2, *input_shape))
    transformed = layer.weight_transform()
    _expect(
        isinstance(transformed, torch.Tensor),
        f"weight_transform() returned {type(transformed).__name__}, not a tensor",
    )
    exported = layer.export()
    _expect(isinstance(exported, nn.Module), f"export() returned {type(exported).__name__}")
    count = layer.multiply_adds(input_shape, 2)
    _expect(
        isinstance(count, numbers.Integral) and not isinstance(count, bool) and count > 0,
        f"multiply_adds({input_shape}, 2) returned {count!r}, not a positive int",
    )


def check_layer_contract(family: LayerFamily) -> None:
    """Every conv (each supported padding) and dense layer is an ``aol.LipschitzLayer`` whose
    ``lipschitz_bound()`` is a positive finite float, ``weight_transform()`` returns a tensor
    after one forward, ``export()`` a module, ``multiply_adds(input_shape, batch_size)`` a
    positive int."""
    (c_in, c_out), (n_in, n_out) = _sizes(family, 3, 6), _sizes(family, 5, 7)
    for padding_mode in family.padding_modes:
        with _case("layer_contract", family, layer="conv(3->6, k3)", padding_mode=padding_mode):
            layer = family.conv(c_in, c_out, 3, padding_mode=padding_mode)
            _check_contract_methods(layer, (c_in, IMAGE_SIZE, IMAGE_SIZE))
    with _case("layer_contract", family, layer="linear(5->7)"):
        _check_contract_methods(family.linear(n_in, n_out), (n_in,))


#: torch's ``nn.Conv2d`` positional order after the sizes; the values build a valid layer.
_TORCH_CONV_ORDER = ("stride", "padding", "dilation", "groups", "bias", "padding_mode")


def _expect_value_error(argument: str, build: Callable[..., nn.Module], *args, **kwargs) -> None:
    """``build(*args, **kwargs)`` raises a ``ValueError`` that names ``argument``."""
    try:
        build(*args, **kwargs)
    except ValueError as error:
        _expect(argument in str(error).lower(), f"the ValueError does not name {argument!r}")
        return
    raise AssertionError(f"{argument}=2 was accepted; expected a ValueError")


#: The constructor arguments a conv class may declare support for (``supports_<name>``).
OPTIONAL_CONV_ARGUMENTS = ("stride", "dilation")


def _strided_and_dilated_cases(family: LayerFamily) -> Iterator[dict]:
    """``stride=2`` / ``dilation=2`` convs (4 -> 4, 3x3, every padding, on odd-sized 4 x 7 x 7
    inputs) for the arguments the family's conv declares it supports."""
    for argument in OPTIONAL_CONV_ARGUMENTS:
        if not getattr(family.conv_factory, f"supports_{argument}", False):
            continue
        for padding_mode in family.padding_modes:
            yield {
                "layer": "conv", "in_channels": 4, "out_channels": 4, "kernel_size": 3,
                "padding_mode": padding_mode, argument: 2,
                "input_shape": (4, IMAGE_SIZE + 1, IMAGE_SIZE + 1),
            }  # fmt: skip


def check_constructor_arguments(family: LayerFamily) -> None:
    """The conv constructor takes torch's positional order (``in_channels, out_channels,
    kernel_size, stride, padding, dilation, groups, bias, padding_mode``: the 8th is bias) and
    rejects stride=2, dilation=2 and groups=2, positional or keyword, with a ``ValueError``
    that names the argument (not a ``TypeError``). A conv class that declares
    ``supports_stride`` / ``supports_dilation`` must instead build with it (its bound is then
    checked by ``bound_random_weights``)."""
    mode = family.default_padding_mode
    valid = (1, "same", 1, 1, True, mode)
    for bias in (True, False):
        arguments = (4, 4, 3, *valid[:4], bias, mode)
        with _case("constructor_arguments", family, argument=f"bias={bias}", call=arguments):
            layer = family.conv_factory(*arguments)
            has_bias = getattr(layer, "bias", None) is not None
            _expect(has_bias == bias, f"the 8th positional argument bias={bias} was not bias")
    for argument in ("stride", "dilation", "groups"):
        position = _TORCH_CONV_ORDER.index(argument)
        arguments = (4, 4, 3, *valid[:position], 2, *valid[position + 1 :])
        if getattr(family.conv_factory, f"supports_{argument}", False):
            with _case("constructor_arguments", family, argument=f"{argument}=2", call=arguments):
                layer = family.conv_factory(*arguments)
                _expect(getattr(layer, argument) == (2, 2), f"{argument}=2 was not {argument}")
            continue
        with _case("constructor_arguments", family, argument=f"{argument}=2", call=arguments):
            _expect_value_error(argument, family.conv_factory, *arguments)
        keyword = {argument: 2}
        with _case("constructor_arguments", family, argument=f"{argument}=2", call=keyword):
            _expect_value_error(argument, family.conv, 4, 4, 3, **keyword)


def check_channel_changes_refused(family: LayerFamily) -> None:
    """A family with ``changes_channels=False`` refuses conv(3->6) and linear(5->7) with a
    ``ValueError`` naming the channels or features (a family that changes them builds them in
    every other check)."""
    if family.changes_channels:
        return
    for build, argument in (
        (lambda: family.conv(3, 6, 3), "channels"),
        (lambda: family.linear(5, 7), "features"),
    ):
        with _case("channel_changes_refused", family, argument=argument):
            try:
                build()
            except ValueError as error:
                _expect(argument in str(error).lower(), f"the ValueError does not name {argument}")
                continue
            raise AssertionError(f"a layer changing its {argument} was built")


#: Every check by name, in the order ``check_family`` runs them.
CHECKS: dict[str, Callable[[LayerFamily], None]] = {
    "layer_contract": check_layer_contract,
    "constructor_arguments": check_constructor_arguments,
    "states_bound_iff_lipschitz": check_states_bound_iff_lipschitz,
    "bound_random_weights": check_bound_random_weights,
    "bound_adversarial_weights": check_bound_adversarial_weights,
    "network_bound": check_network_bound,
    "export": check_export,
    "state_dict_round_trip": check_state_dict_round_trip,
    "gradients_reach_every_parameter": check_gradients_reach_every_parameter,
    "gradients_match_finite_differences": check_gradients_match_finite_differences,
    "channel_changes_refused": check_channel_changes_refused,
}

#: The checks that apply only to a family with ``lipschitz=True``.
BOUND_CHECKS = frozenset(
    {"layer_contract", "constructor_arguments", "bound_random_weights", "bound_adversarial_weights"}
)


def check_names(family: LayerFamily | str) -> tuple[str, ...]:
    """The names of the checks that apply to ``family``, in ``CHECKS`` order."""
    family = _as_family(family)
    return tuple(name for name in CHECKS if family.lipschitz or name not in BOUND_CHECKS)


def check_family(family: LayerFamily | str, checks: Iterable[str] | None = None) -> None:
    """Run the conformance checks (default: every one that applies) on ``family``.

    ``family`` is a ``LayerFamily`` or the name of a registered one; ``checks`` names of
    ``CHECKS`` (one name or several). Raises ``ConformanceError`` at the first failing case,
    and ``ValueError`` for an unknown check name or a check of ``BOUND_CHECKS`` asked of a
    family with ``lipschitz=False``.
    """
    family = _as_family(family)
    applicable = check_names(family)
    if isinstance(checks, str):
        checks = [checks]
    selected = applicable if checks is None else tuple(checks)
    for name in selected:
        if name not in CHECKS:
            raise ValueError(f"unknown check {name!r}; checks: {', '.join(CHECKS)}")
        if name not in applicable:
            raise ValueError(
                f"check {name!r} needs a family with lipschitz=True; {family.name!r} is not"
            )
    for name in selected:
        CHECKS[name](family)


def _as_family(family: LayerFamily | str) -> LayerFamily:
    return families.get(family) if isinstance(family, str) else family
