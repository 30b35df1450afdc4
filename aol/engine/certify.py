"""Certification of a finished training run, with its two audits.

A point is certified at radius eps when its margin exceeds sqrt(2) L eps (AOL paper
Sec. 6; Tsuzuku et al., NeurIPS 2018).

1. Load ``checkpoint.pt`` with ``weights_only=True``, rebuild the architecture from the
   run's identity, load the weights, and convert the model to float64 (the raw
   parameters convert exactly). Take ``L = aol.network_lipschitz_bound`` of this
   float64 model (a guaranteed bound, the product of the layers' bounds).
2. Export the float64 model (``aol.export``: weight transforms such as AOL's rescaling
   are computed in float64 from the raw parameters and baked in; folding float32
   transformed weights instead would carry float32 rounding, up to ~1e-4 relative
   for wide layers, into the bound); compute every test score with it, then clean
   accuracy and certified robust accuracy (margin > sqrt(2) L eps) in float64.
3. Lipschitz audit (``aol.engine.audit``) on the first ``audit_points`` test points.
4. Attack audit (``aol.engine.attack.pgd_l2``) at each eps on the first ``attack_points``
   test points: no certified point may be broken. The search runs on the float32
   export (fast); every break it claims is confirmed on the float64 export.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch

import aol
from aol.certificate import PAPER_EPSILONS, certified_mask
from aol.engine import checkpoint, data
from aol.engine.attack import STEP_SIZE_FACTOR, pgd_l2
from aol.engine.audit import lipschitz_audit
from aol.engine.train import RESULT_FILE, build_model
from aol.radius import epsilon_key

SCORE_BATCH = 500


class RunNotReadyError(ValueError):
    """The run folder has no finished training run."""


@dataclass(frozen=True)
class CertifyConfig:
    run: str
    epsilons: tuple[float, ...] = PAPER_EPSILONS
    attack_points: int = 100
    attack_steps: int = 50
    attack_restarts: int = 2
    audit_points: int = 4
    audit_iterations: int = 100
    device: torch.device = torch.device("cpu")
    data_dir: str = "data"


def read_run_result(run: str) -> dict:
    result_path = os.path.join(run, RESULT_FILE)
    if not os.path.exists(result_path):
        raise RunNotReadyError(
            f"{run} has no {RESULT_FILE}: train first (python -m aol train ... --out {run})"
        )
    with open(result_path) as stream:
        return json.load(stream)


def _scores(model, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat(
            [model(images[i : i + SCORE_BATCH]) for i in range(0, len(images), SCORE_BATCH)]
        )


def certify(config: CertifyConfig) -> dict:
    result = read_run_result(config.run)
    keys = [epsilon_key(e) for e in config.epsilons]
    report = {
        "run": config.run,
        "status": result["status"],
        **{k: result.get(k) for k in ("dataset", "architecture", "family", "seed")},
        "epsilons": list(config.epsilons),
        "device": str(config.device),
    }
    if result["status"] == "diverged":
        skipped = {"passed": True, "skipped": "the run diverged"}
        report.update(
            lipschitz_bound=None,
            test_points=0,
            clean_accuracy=None,
            certified_accuracy=dict.fromkeys(keys),
            empirical_robust_accuracy=dict.fromkeys(keys),
            broken_certificates=dict.fromkeys(keys),
            lipschitz_audit=skipped,
            attack_audit=dict(skipped),
            audits_passed=True,
        )
        return report

    saved = checkpoint.load(os.path.join(config.run, checkpoint.CHECKPOINT_FILE))
    info = data.info(result["dataset"])
    trained = build_model(saved["identity"], info)
    trained.load_state_dict(saved["model"])
    trained = trained.to(config.device).eval()
    exported32 = aol.export(trained)  # only for the attack's fast search
    trained = trained.to(torch.float64)
    bound = aol.network_lipschitz_bound(trained)
    exported = aol.export(trained)
    for parameter in [*exported.parameters(), *exported32.parameters()]:
        parameter.requires_grad_(False)

    dataset = data.load(result["dataset"], config.data_dir, download=False)
    images = dataset.test_images.to(config.device, torch.float64)
    labels = dataset.test_labels.to(config.device)
    scores = _scores(exported, images)
    correct = scores.argmax(1) == labels
    report.update(
        status="completed" if bound is not None else "no_bound",
        lipschitz_bound=bound,
        test_points=len(labels),
        clean_accuracy=correct.double().mean().item(),
    )

    certified: dict[str, torch.Tensor | None] = {}
    for epsilon, key in zip(config.epsilons, keys, strict=True):
        certified[key] = None if bound is None else certified_mask(scores, labels, epsilon, bound)
    report["certified_accuracy"] = {
        key: None if mask is None else mask.double().mean().item()
        for key, mask in certified.items()
    }

    audit_points = images[: config.audit_points]
    report["lipschitz_audit"] = lipschitz_audit(
        trained, exported, audit_points, bound, config.audit_iterations
    )

    attacked = min(config.attack_points, len(labels))
    attack_images, attack_labels = images[:attacked], labels[:attacked]
    empirical, broken_counts, certified_counts = {}, {}, {}
    for epsilon, key in zip(config.epsilons, keys, strict=True):
        if attacked == 0:
            empirical[key], broken_counts[key], certified_counts[key] = None, 0, 0
            continue
        attack = pgd_l2(
            exported32,
            attack_images.float(),
            attack_labels,
            epsilon,
            config.attack_steps,
            config.attack_restarts,
            check_model=exported,
        )
        robust = correct[:attacked] & ~attack.broken
        empirical[key] = robust.double().mean().item()
        mask = certified[key]
        certified_here = (
            torch.zeros(attacked, dtype=torch.bool, device=labels.device)
            if mask is None
            else mask[:attacked]
        )
        certified_counts[key] = int(certified_here.sum())
        broken_counts[key] = int((certified_here & attack.broken).sum())
    attack_passed = all(count == 0 for count in broken_counts.values())
    report.update(
        empirical_robust_accuracy=empirical,
        broken_certificates=broken_counts,
        attack_audit={
            "passed": attack_passed,
            "points": attacked,
            "clean_accuracy_on_points": correct[:attacked].double().mean().item()
            if attacked
            else None,
            "steps": config.attack_steps,
            "restarts": config.attack_restarts,
            "step_size": f"{STEP_SIZE_FACTOR:g} * eps / steps",
            "loss": "margin max_{j != y} f_j - f_y",
            "box": [0.0, 1.0],
            "certified_points": certified_counts,
            "broken_certificates": broken_counts,
        },
    )
    report["audits_passed"] = bool(report["lipschitz_audit"]["passed"] and attack_passed)
    return report
