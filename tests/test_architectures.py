"""Architectures: published parameter counts, shapes, every family, bounds vs exact Jacobians."""

import dataclasses

import pytest
import torch

import aol
from aol import architectures, families
from aol.architectures.common import missing_features
from aol.verify import jacobian_singular_values

CIFAR = {"num_classes": 10, "in_channels": 3, "image_size": 32}


def count_on_meta(name, family="aol", **shape):
    with torch.device("meta"):
        model = architectures.build(name, family, **(shape or CIFAR))
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name, expected",
    # paper Sec. 5: 4,030,080 conv parameters + 14 ((64 w)^2 + 64 w) dense parameters
    [("aol-small", 18_724_480), ("aol-medium", 62_779_008), ("aol-large", 136_193_664)],
)
def test_aol_paper_parameter_counts(name, expected):
    assert count_on_meta(name) == expected


def test_aol_digits_parameter_count():
    # hand count of the docstring's layers on 1x8x8 digits: 1x1 conv 4 -> 64, four 3x3
    # convs 64 -> 64, 1x1 conv 64 -> 64, four dense 256 -> 256, all with biases
    expected = (4 * 64 + 64) + 4 * (64 * 64 * 9 + 64) + (64 * 64 + 64) + 4 * (256 * 256 + 256)
    digits = {"num_classes": 10, "in_channels": 1, "image_size": 8}
    assert count_on_meta("aol-digits", **digits) == expected == 415_360


def convnet_count(width):
    """1LLC ConvNet parameters counted by hand (Prach et al., CVPR 2024, Sec. 4; biases)."""
    total = width * width + width  # 1x1 stem
    channels = width
    for kernel in (3, 3, 3, 3, 1):
        total += 5 * (channels * channels * kernel * kernel + channels)
        channels *= 2
    return total + channels * channels + channels  # 1x1 head


@pytest.mark.parametrize(
    "name, width, published_millions",
    [("convnet-xs", 16, 1.57), ("convnet-s", 32, 6.28), ("convnet-m", 64, 25.12)],
)
def test_convnet_parameter_counts(name, width, published_millions):
    count = count_on_meta(name)
    assert count == convnet_count(width)
    assert round(count / 1e6, 2) == published_millions


#: The architectures whose layers must change the channel count (the AOL paper's models);
#: the others (ConvNets, aol-digits) build from a family whose layers keep it.
NEED_CHANNEL_CHANGES = {
    "aol-small", "aol-medium", "aol-large", "aol-fc", "aol-std", "aol-alt", "aol-dil",
    "aol-std-strided", "aol-alt-strided", "aol-dil-strided",
}  # fmt: skip


@pytest.mark.parametrize("family", families.names())
@pytest.mark.parametrize("name", architectures.names())
def test_every_architecture_and_family_gives_class_scores_on_cifar(name, family):
    if missing_features(families.get(family), architectures.requirements(name)):
        with pytest.raises(architectures.UnsupportedFamilyError, match=name):
            architectures.build(name, family, **CIFAR)
        return
    if name in NEED_CHANNEL_CHANGES and not families.get(family).changes_channels:
        with pytest.raises(architectures.FamilyNotSupportedError, match=f"'{family}'"):
            architectures.build(name, family, **CIFAR)
        return
    with torch.device("meta"):
        model = architectures.build(name, family, **CIFAR)
        scores = model(torch.empty(2, 3, 32, 32))
    assert isinstance(model, torch.nn.Sequential)
    assert tuple(scores.shape) == (2, 10)


def keeps_channels_family(calls):
    """AOL layers behind a family that says its layers keep the channel count; ``calls``
    records the (in, out) of every layer built."""

    def conv(in_channels, out_channels, kernel_size, **options):
        calls.append((in_channels, out_channels))
        return aol.AOLConv2d(in_channels, out_channels, kernel_size, **options)

    conv.supports_stride = conv.supports_dilation = True  # only channel changes are missing

    def linear(in_features, out_features, **options):
        calls.append((in_features, out_features))
        return aol.AOLLinear(in_features, out_features, **options)

    return dataclasses.replace(
        families.get("aol"),
        name="keeps-channels-test",
        conv_factory=conv,
        linear_factory=linear,
        padding_modes=("zeros", "circular"),
        changes_channels=False,
    )


@pytest.mark.parametrize("name", architectures.names())
def test_a_family_keeping_channels_builds_square_layers_or_is_refused_before_any(name):
    calls = []
    family = keeps_channels_family(calls)
    if name in NEED_CHANNEL_CHANGES:
        with pytest.raises(architectures.FamilyNotSupportedError) as raised:
            architectures.build(name, family, **CIFAR)
        message = str(raised.value)
        assert name in message and "'keeps-channels-test'" in message
        assert "change the number of channels" in message
        assert calls == []  # refused before building any layer
        return
    with torch.device("meta"):
        model = architectures.build(name, family, **CIFAR)
        scores = model(torch.empty(2, 3, 32, 32))
    assert tuple(scores.shape) == (2, 10)
    assert calls and all(size_in == size_out for size_in, size_out in calls)


def test_aol_digits_widens_with_zero_channels_for_a_family_keeping_channels():
    model = architectures.build("aol-digits", keeps_channels_family([]), 10, 1, 8)
    widening = model[1]
    assert isinstance(widening, architectures.common.ZeroChannelConcatenation)
    assert widening.channels == 64 and model[2].in_channels == 64
    x = torch.randn(3, 4, 4, 4)
    assert torch.equal(widening(x)[:, :4], x) and not widening(x)[:, 4:].any()


def test_zero_channel_concatenation_pads_dense_features():
    x = torch.randn(2, 3)
    padded = architectures.common.ZeroChannelConcatenation(5)(x)
    assert padded.shape == (2, 5) and torch.equal(padded[:, :3], x) and not padded[:, 3:].any()


@pytest.mark.parametrize(
    ("name", "in_channels", "image_size", "error", "hint"),
    [
        pytest.param(
            "aol-alt", 1, 8, architectures.ArchitectureShapeError, "32x32", id="aol-alt-8x8"
        ),
        pytest.param(
            "aol-small", 3, 30, architectures.ArchitectureShapeError, "divisible by 4", id="30x30"
        ),
        pytest.param(
            "aol-huge", 3, 32, architectures.UnknownArchitectureError, "aol-digits", id="unknown"
        ),
    ],
)
def test_impossible_shapes_are_rejected_with_a_clear_message(
    name, in_channels, image_size, error, hint
):
    with pytest.raises(error, match=hint):
        architectures.build(name, "aol", 10, in_channels, image_size)


@pytest.mark.parametrize(
    ("name", "shape"),
    [("convnet-xs", CIFAR), ("aol-digits", {"num_classes": 10, "in_channels": 1, "image_size": 8})],
)
def test_family_default_padding_is_used(name, shape):
    """A family without zero padding (like Cayley: circular only) still builds every model."""
    calls = []

    def circular_only_conv(in_channels, out_channels, kernel_size, padding_mode, **options):
        calls.append(padding_mode)
        return aol.AOLConv2d(in_channels, out_channels, kernel_size, padding_mode=padding_mode)

    circular = dataclasses.replace(
        families.get("aol"),
        name="circular-test",
        conv_factory=circular_only_conv,
        padding_modes=("circular",),
    )
    with torch.device("meta"):
        architectures.build(name, circular, **shape)
    assert calls and set(calls) == {"circular"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aol_digits_bound_holds_for_the_exact_jacobian_at_random_weights(seed):
    torch.manual_seed(1)
    model = architectures.build("aol-digits", "aol", 10, 1, 8).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_()  # far from the tight initialisation
    bound = aol.network_lipschitz_bound(model)
    assert bound == 1.0
    largest = jacobian_singular_values(model, (1, 8, 8), seed=seed)[0].item()
    assert 0 < largest <= bound + 1e-9


def test_standard_family_states_no_bound():
    model = architectures.build("aol-digits", "standard", 10, 1, 8)
    assert aol.network_lipschitz_bound(model) is None


@pytest.mark.parametrize("family", ["sll", "cpl"])
def test_residual_family_digits_bound_holds_for_the_exact_jacobian(family):
    torch.manual_seed(1)
    model = architectures.build("aol-digits", family, 10, 1, 8).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_()  # far from the initialisation
    bound = aol.network_lipschitz_bound(model)
    assert 1.0 <= bound < 1.0 + 1e-6
    largest = jacobian_singular_values(model, (1, 8, 8), seed=0)[0].item()
    assert 0 < largest <= bound + 1e-9
