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
   export (fast); every break it claims is confirmed on the float64 export. With 0
   points it does not run (``ran: false``, ``passed: null``).
5. ``audits_passed``: every audit that ran passed and every test score is finite.

Every per-radius number is keyed by the radius's text (``str(Radius)``: "36/255", "1").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import aol
from aol.certificate import certified_mask
from aol.engine import data
from aol.engine.attack import STEP_SIZE_FACTOR, pgd_l2
from aol.engine.audit import lipschitz_audit
from aol.engine.run_folder import RunFolder, build_model
from aol.radius import PAPER_RADII, Radius

SCORE_BATCH = 500


@dataclass(frozen=True)
class CertifyConfig:
    run: str
    radii: tuple[Radius, ...] = PAPER_RADII
    attack_points: int = 100
    attack_steps: int = 50
    attack_restarts: int = 2
    audit_points: int = 4
    audit_iterations: int = 100
    device: torch.device = torch.device("cpu")
    data_dir: str = "data"
    #: certify this many test images (``data.subset_indices``: fixed, class-balanced); None: all
    test_subset: int | None = None


@dataclass(frozen=True)
class TrainedModels:
    """The trained network in float64, its float64 and float32 exports, and its bound."""

    trained: torch.nn.Module
    exported: torch.nn.Module
    exported32: torch.nn.Module
    bound: float | None


def _scores(model, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat(
            [model(images[i : i + SCORE_BATCH]) for i in range(0, len(images), SCORE_BATCH)]
        )


def certify(config: CertifyConfig) -> dict:
    """The certification report of the run in ``config.run`` (see the module docstring)."""
    result = RunFolder(config.run).read_trained_result()
    report = {
        "run": config.run,
        "status": result["status"],
        **{k: result.get(k) for k in ("dataset", "architecture", "family", "seed")},
        "epsilons": [str(radius) for radius in config.radii],
        "device": str(config.device),
        "test_subset": config.test_subset,
    }
    if result["status"] == "diverged":
        return diverged_report(report, config.radii)
    models = load_trained_models(config.run, config.device, result)
    dataset = data.load(result["dataset"], config.data_dir, download=False)
    if config.test_subset is not None:
        dataset = dataset.with_test_subset(config.test_subset)
    images = dataset.test_images.to(config.device, torch.float64)
    labels = dataset.test_labels.to(config.device)
    scores = _scores(models.exported, images)
    correct = scores.argmax(1) == labels
    report.update(
        status="completed" if models.bound is not None else "no_bound",
        lipschitz_bound=models.bound,
        test_points=len(labels),
        clean_accuracy=correct.double().mean().item(),
    )
    certified = {
        radius: None
        if models.bound is None
        else certified_mask(scores, labels, radius, models.bound)
        for radius in config.radii
    }
    report["certified_accuracy"] = {
        str(radius): None if mask is None else mask.double().mean().item()
        for radius, mask in certified.items()
    }
    report["lipschitz_audit"] = lipschitz_audit(
        models.trained,
        models.exported,
        images[: config.audit_points],
        models.bound,
        config.audit_iterations,
    )
    report.update(attack_audit(config, models, images, labels, correct, certified))
    report["non_finite_scores"] = int((~torch.isfinite(scores)).any(dim=1).sum())
    report["audits_passed"] = audits_passed(report)
    return report


def audits_passed(report: dict) -> bool:
    """Every audit that ran passed (an attack audit on 0 points did not run: its ``passed`` is
    None), and every test score is finite (a NaN margin certifies nothing and proves nothing)."""
    ran = [report[name] for name in ("lipschitz_audit", "attack_audit") if report[name]["ran"]]
    return report["non_finite_scores"] == 0 and all(audit["passed"] is True for audit in ran)


def diverged_report(report: dict, radii: tuple[Radius, ...]) -> dict:
    """A diverged run has no model to certify: every number is null, the audits skipped."""
    keys = [str(radius) for radius in radii]
    skipped = {"ran": False, "passed": None, "skipped": "the run diverged"}
    report.update(
        lipschitz_bound=None,
        test_points=0,
        clean_accuracy=None,
        certified_accuracy=dict.fromkeys(keys),
        empirical_robust_accuracy=dict.fromkeys(keys),
        broken_certificates=dict.fromkeys(keys),
        lipschitz_audit=skipped,
        attack_audit=dict(skipped),
        non_finite_scores=None,
        audits_passed=True,  # no audit ran, so none failed
    )
    return report


def load_trained_models(run: str, device: torch.device, result: dict) -> TrainedModels:
    """Rebuild the run's network from its checkpoint (which must be of the run ``result``
    describes), convert it to float64 (the raw parameters convert exactly), take its
    bound, and export it in float64 and float32."""
    saved = RunFolder(run).load_trained_checkpoint(result)
    trained = build_model(saved["identity"])
    trained.load_state_dict(saved["model"])
    trained = trained.to(device).eval()
    exported32 = aol.export(trained)  # only for the attack's fast search
    trained = trained.to(torch.float64)
    bound = aol.network_lipschitz_bound(trained)
    exported = aol.export(trained)
    for parameter in [*exported.parameters(), *exported32.parameters()]:
        parameter.requires_grad_(False)
    return TrainedModels(trained, exported, exported32, bound)


def attack_audit(
    config: CertifyConfig,
    models: TrainedModels,
    images: torch.Tensor,
    labels: torch.Tensor,
    correct: torch.Tensor,
    certified: dict[Radius, torch.Tensor | None],
) -> dict:
    """PGD at each radius on the first ``attack_points`` test points: the empirical robust
    accuracy, and how many certified points the attack broke (must be 0)."""
    attacked = min(config.attack_points, len(labels))
    empirical, broken_counts, certified_counts = {}, {}, {}
    for radius, mask in certified.items():
        key = str(radius)
        empirical[key], certified_counts[key], broken_counts[key] = attack_at_radius(
            config,
            models,
            radius,
            images[:attacked],
            labels[:attacked],
            correct[:attacked],
            None if mask is None else mask[:attacked],
        )
    return {
        "empirical_robust_accuracy": empirical,
        "broken_certificates": broken_counts,
        "attack_audit": {
            "ran": attacked > 0,
            "passed": all(count == 0 for count in broken_counts.values()) if attacked else None,
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
    }


def attack_at_radius(
    config: CertifyConfig,
    models: TrainedModels,
    radius: Radius,
    images: torch.Tensor,
    labels: torch.Tensor,
    correct: torch.Tensor,
    certified: torch.Tensor | None,
) -> tuple[float | None, int, int]:
    """PGD at one radius on the attacked points: (empirical robust accuracy, certified
    points, certified points the attack broke); (None, 0, 0) without points."""
    if len(labels) == 0:
        return None, 0, 0
    attack = pgd_l2(
        models.exported32,
        images.float(),
        labels,
        float(radius),
        config.attack_steps,
        config.attack_restarts,
        check_model=models.exported,
    )
    robust = correct & ~attack.broken
    if certified is None:
        certified = torch.zeros(len(labels), dtype=torch.bool, device=labels.device)
    broken = int((certified & attack.broken).sum())
    return robust.double().mean().item(), int(certified.sum()), broken
