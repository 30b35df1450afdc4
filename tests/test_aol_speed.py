"""The fast paths of the AOL layers: the blocked symmetric Gram matrix of the rescaling and
the eval-mode cache of the rescaled weight. Both must give what the plain computation gives."""

from __future__ import annotations

import pytest
import torch

from aol import AOLConv2d, AOLLinear
from aol.nn import rescaling
from aol.nn.rescaling import (
    conv_rescaling_factors,
    conv_rescaling_factors_by_self_convolution,
    linear_rescaling_factors,
)


@pytest.mark.parametrize("blocks", [2, 3])
@pytest.mark.parametrize("shape", [(5, 7, 3, 3), (3, 6, 1, 1), (4, 5, 3, 5)])
def test_blocked_gram_gives_the_reference_factors_and_gradient(monkeypatch, blocks, shape):
    """Only the block rows on and right of the diagonal are multiplied (forward), and the
    backward uses the symmetric gradient: both against the self-convolution of the paper's code."""
    monkeypatch.setattr(rescaling, "gram_block_count", lambda c_in, device: blocks)
    weight = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    reference = conv_rescaling_factors_by_self_convolution(weight)
    torch.testing.assert_close(conv_rescaling_factors(weight), reference, rtol=1e-12, atol=0)
    upstream = torch.randn(shape[1], dtype=torch.float64)
    (fast,) = torch.autograd.grad(conv_rescaling_factors(weight), weight, upstream)
    (slow,) = torch.autograd.grad(reference, weight, upstream)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12)


def test_wide_layers_use_blocks_and_match_the_definition():
    """At 128+ input channels on a CPU the default cuts the Gram matrix into blocks."""
    assert rescaling.gram_block_count(128, torch.device("cpu")) > 1
    weight = torch.randn(3, 130, dtype=torch.float64, requires_grad=True)
    gram = weight.T @ weight
    expected = (gram.abs().sum(dim=1) + rescaling.AOL_EPSILON).rsqrt()
    torch.testing.assert_close(linear_rescaling_factors(weight), expected, rtol=1e-12, atol=0)
    upstream = torch.randn(130, dtype=torch.float64)
    (fast,) = torch.autograd.grad(linear_rescaling_factors(weight), weight, upstream)
    (slow,) = torch.autograd.grad(expected, weight, upstream)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12)


def _eval_output(layer, x):
    layer.eval()
    with torch.no_grad():
        return layer(x)


def _fresh_output(layer, x):
    """What the layer computes from its current weight, without any cache."""
    with torch.no_grad():
        return torch.nn.functional.linear(x, layer.weight_transform(), layer.bias)


@pytest.fixture
def layer_and_input():
    torch.manual_seed(0)
    return AOLLinear(6, 5, init="random"), torch.randn(4, 6)


def test_eval_cache_is_reused_while_the_weight_is_unchanged(layer_and_input):
    layer, x = layer_and_input
    layer.eval()
    with torch.no_grad():
        first = layer.rescaled_weight()
        assert layer.rescaled_weight() is first
    torch.testing.assert_close(_eval_output(layer, x), _fresh_output(layer, x), rtol=0, atol=0)


def test_eval_cache_follows_optimiser_steps(layer_and_input):
    layer, x = layer_and_input
    optimiser = torch.optim.SGD(layer.parameters(), lr=0.5)
    for _ in range(2):
        before = _eval_output(layer, x)
        layer.train()
        optimiser.zero_grad()
        layer(x).square().sum().backward()
        optimiser.step()
        after = _eval_output(layer, x)
        assert not torch.allclose(after, before)
        torch.testing.assert_close(after, _fresh_output(layer, x), rtol=0, atol=0)


def test_eval_cache_follows_in_place_changes_and_load_state_dict(layer_and_input):
    layer, x = layer_and_input
    _eval_output(layer, x)
    other = AOLLinear(6, 5, init="random")
    layer.load_state_dict(other.state_dict())
    torch.testing.assert_close(_eval_output(layer, x), _fresh_output(other, x), rtol=0, atol=0)
    with torch.no_grad():
        layer.weight[0, 0] += 3.0
    torch.testing.assert_close(_eval_output(layer, x), _fresh_output(layer, x), rtol=0, atol=0)


def test_eval_cache_follows_to_and_data_assignment(layer_and_input):
    layer, x = layer_and_input
    _eval_output(layer, x)
    layer.to(torch.float64)
    out = _eval_output(layer, x.double())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, _fresh_output(layer, x.double()), rtol=0, atol=0)
    first, second = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    layer.weight.data = first.clone()
    layer.weight.data = second.clone()  # the first replacement's memory is free again
    torch.testing.assert_close(
        _eval_output(layer, x.double()), _fresh_output(layer, x.double()), rtol=0, atol=0
    )


def test_no_cached_value_in_training_mode_or_where_gradients_flow():
    torch.manual_seed(0)
    layer, x = AOLConv2d(3, 4, 3, init="random"), torch.randn(2, 3, 5, 5)
    _eval_output(layer, x)
    with torch.no_grad():
        layer.weight.mul_(torch.rand_like(layer.weight))
    for training in (True, False):  # eval mode with gradients enabled must not use the cache
        layer.train(training)
        layer.weight.grad = None
        layer(x).square().sum().backward()
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    layer.train()
    with torch.no_grad():
        expected = torch.nn.functional.conv2d(x, layer.weight_transform(), layer.bias, padding=1)
        torch.testing.assert_close(layer(x), expected, rtol=0, atol=0)


def test_rescaling_ignores_bfloat16_autocast():
    """Mixed-precision training rounds the convolution to bfloat16, not the rescaling."""
    torch.manual_seed(0)
    weight = torch.randn(6, 5, 3, 3)
    plain = conv_rescaling_factors(weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = conv_rescaling_factors(weight)
        dense = linear_rescaling_factors(weight[:, :, 0, 0])
    assert under_autocast.dtype == torch.float32 and dense.dtype == torch.float32
    torch.testing.assert_close(under_autocast, plain, rtol=0, atol=0)
    torch.testing.assert_close(dense, linear_rescaling_factors(weight[:, :, 0, 0]), rtol=0, atol=0)
