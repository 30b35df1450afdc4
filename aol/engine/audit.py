"""Lipschitz audit: power-iteration estimates (``aol.verify.power_iteration``) of the exported
layers' and the exported network's Jacobian norms, compared with the bounds the trained model
states. An estimate is a lower bound on the true norm, so an estimate above a stated bound
(beyond the relative tolerance) proves the bound false. A NaN or infinite estimate or bound
fails the audit too: it proves nothing, and a network that computes NaN certifies nothing.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from aol.verify import power_iteration

TOLERANCE = 1e-6  # relative; the "beyond 1e-6"


def constrained_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Outermost submodules that have parameters and state ``lipschitz_bound()``."""
    found: list[tuple[str, nn.Module]] = []

    def visit(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if hasattr(child, "lipschitz_bound") and any(True for _ in child.parameters()):
                found.append((path, child))
            else:
                visit(path, child)

    visit("", model)
    return found


def _layer_inputs(exported: nn.Module, names: list[str], x: torch.Tensor) -> dict:
    inputs: dict[str, torch.Tensor] = {}
    handles = [
        exported.get_submodule(name).register_forward_pre_hook(
            lambda module, args, name=name: inputs.__setitem__(name, args[0].detach())
        )
        for name in names
    ]
    try:
        with torch.no_grad():
            exported(x)
    finally:
        for handle in handles:
            handle.remove()
    return inputs


def _within(estimate: float, bound: float | None) -> bool:
    """True when the estimate is finite and, if there is a bound, the bound is finite and not
    exceeded beyond the tolerance; written so that every comparison with NaN fails."""
    if not math.isfinite(estimate):
        return False
    if bound is None:
        return True
    return math.isfinite(bound) and estimate <= bound * (1 + TOLERANCE)


def lipschitz_audit(
    trained: nn.Module,
    exported: nn.Module,
    points: torch.Tensor,
    network_bound: float | None,
    max_iterations: int = 1000,
    tolerance: float = 1e-7,
) -> dict:
    """Audit every constrained layer (at the inputs ``points`` produce) and the whole network."""
    layers = constrained_layers(trained)
    inputs = _layer_inputs(exported, [name for name, _ in layers], points)
    layer_reports = []
    for name, layer in layers:
        bound = float(layer.lipschitz_bound())
        estimate = power_iteration(
            exported.get_submodule(name), inputs[name], max_iterations, tolerance
        )
        layer_reports.append(
            {
                "layer": name,
                "type": type(layer).__name__,
                "bound": bound,
                "estimate": estimate.estimate,
                "iterations": estimate.iterations,
                "converged": estimate.converged,
                "passed": _within(estimate.estimate, bound),
            }
        )
    network = power_iteration(exported, points, max_iterations, tolerance)
    network_report = {
        "bound": network_bound,
        "estimate": network.estimate,
        "iterations": network.iterations,
        "converged": network.converged,
        "passed": _within(network.estimate, network_bound),
    }
    passed = network_report["passed"] and all(report["passed"] for report in layer_reports)
    return {
        "ran": True,
        "passed": passed,
        "relative_tolerance": TOLERANCE,
        "points": len(points),
        "max_iterations": max_iterations,
        "network": network_report,
        "layers": layer_reports,
    }
