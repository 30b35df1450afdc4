"""L2 PGD attack (Madry et al. 2018) used to audit certificates empirically.

For each radius eps: ``restarts`` runs of ``steps`` steps of normalised-gradient
ascent on the margin loss ``max_{j != y} f_j(x') - f_y(x')`` (Carlini-Wagner
style: it is positive exactly when x' is misclassified), step size
``step_size_factor * eps / steps`` (2.5 eps / steps, Madry et al.), each step
projected onto the l2 ball of radius eps around x and onto the image box [0, 1].
The first run starts at x, the others at a uniformly random point of the ball.
A point counts as broken as soon as any iterate is misclassified; the returned
adversarial inputs are re-checked (distance <= eps, prediction != label) before
they are counted by ``check_model`` (the float64 model in the audit; the search itself
may run in float32, which is several times faster on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

STEP_SIZE_FACTOR = 2.5  # Madry et al. (2018): step 2.5 eps / steps
SHRINK = 1 - 1e-9  # project slightly inside the ball, so rounding cannot leave it


@dataclass(frozen=True)
class AttackResult:
    broken: torch.Tensor  # bool [N]: an adversarial input within eps was found
    adversarial: torch.Tensor  # the found inputs (x itself where none was found)


def _margin_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    true = scores.gather(1, labels[:, None]).squeeze(1)
    others = scores.scatter(1, labels[:, None], float("-inf")).max(dim=1).values
    return others - true


def _per_sample_norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1).reshape(-1, *([1] * (x.dim() - 1)))


def _project(x: torch.Tensor, candidate: torch.Tensor, epsilon: float) -> torch.Tensor:
    delta = candidate - x
    norms = _per_sample_norm(delta)
    scale = torch.clamp(epsilon * SHRINK / norms.clamp_min(1e-30), max=1.0)
    # clamping to the box afterwards never moves a coordinate further from x
    return (x + delta * scale).clamp(0.0, 1.0)


def pgd_l2(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    epsilon: float,
    steps: int = 50,
    restarts: int = 1,
    step_size_factor: float = STEP_SIZE_FACTOR,
    seed: int = 0,
    check_model: nn.Module | None = None,
) -> AttackResult:
    generator = torch.Generator(device="cpu").manual_seed(seed)
    step_size = step_size_factor * epsilon / steps
    broken = torch.zeros(len(images), dtype=torch.bool, device=images.device)
    adversarial = images.clone()
    for restart in range(restarts):
        if restart == 0:
            current = images.clone()
        else:
            noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
            noise = noise.to(images.device)
            radius = torch.rand(len(images), generator=generator, dtype=images.dtype)
            radius = radius.to(images.device) ** (1.0 / images[0].numel()) * epsilon
            noise = noise / _per_sample_norm(noise) * radius.reshape(-1, *[1] * (images.dim() - 1))
            current = _project(images, images + noise, epsilon)
        for _ in range(steps + 1):
            current = current.detach().requires_grad_(True)
            scores = model(current)
            wrong = scores.argmax(1) != labels
            newly = wrong & ~broken
            adversarial[newly] = current.detach()[newly]
            broken |= wrong
            if bool(broken.all()):
                break
            loss = _margin_loss(scores, labels).sum()
            (gradient,) = torch.autograd.grad(loss, current)
            gradient = gradient / _per_sample_norm(gradient).clamp_min(1e-30)
            current = _project(images, current.detach() + step_size * gradient, epsilon)
    # re-check every claimed break independently of the loop above
    check_model = model if check_model is None else check_model
    check_dtype = next(check_model.parameters(), images).dtype
    with torch.no_grad():
        adversarial = adversarial.to(check_dtype)
        distance = (adversarial - images.to(check_dtype)).flatten(1).norm(dim=1)
        still_wrong = check_model(adversarial).argmax(1) != labels
    confirmed = broken & still_wrong & (distance <= epsilon)
    return AttackResult(confirmed, adversarial)
