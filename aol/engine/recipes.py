"""Training recipes: named presets of every training knob, and their learning-rate schedules.

* ``paper``: the AOL paper (Sec. 6 and appendix; berndprach/AOL@562bddf
  ``get_run_setting.py``): offset cross-entropy u = sqrt(2),
  t = 1/4; SGD with Nesterov momentum 0.9, lr 1e-3, batch 250, 1000 epochs, lr / 10
  at the start of epochs 900, 990 and 999; weight decay on weights only. The paper's
  Keras ``l2(5e-4)`` adds 5e-4 ||P||^2 to the loss, whose gradient 1e-3 P is PyTorch's
  ``weight_decay=1e-3``.
* ``1llc``: "1-Lipschitz Layers Compared" (Prach et al., CVPR 2024, Sec. 4;
  berndprach/1LipschitzLayersCompared@01e3f2a): offset
  2 sqrt(2) 36/255, t = 1/4; SGD momentum 0.9 (no Nesterov, as the original code),
  batch 256, OneCycle with PyTorch's defaults stepped once per epoch (so momentum
  cycles 0.95 -> 0.85 -> 0.95), weight decay on all parameters (coupled L2). Their lr
  and weight decay were searched per model; the defaults here are AOL-S on CIFAR-10
  (Table 9: lr 1e-2, wd 5e-5) and the epochs its 2 h budget (Table 8: 763). Inputs are
  centred by the dataset mean (std 1) inside the network, a translation that leaves the
  Lipschitz constant and every certificate unchanged; augmentation is 1LLC's random crop
  (32, padding 4) and horizontal flip, no colour.
* ``digits``: the paper's recipe tuned to train ``aol-digits`` on the 1347 digits
  training images in about a minute of CPU time: 40 epochs, batch 50, lr 0.05,
  offset 0.5, weight decay 1e-4, no augmentation (tuning runs in docs/benchmarks.md).

With the step schedule, drops are given as fractions of the epochs (0.9, 0.99,
0.999), so a shortened run keeps the paper's shape; ``lr_drops`` (epoch numbers)
overrides them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

PAPER_LR_DROP_FRACTIONS = (
    0.9,
    0.99,
    0.999,
)  # epochs 900, 990, 999 of 1000 (berndprach/AOL@562bddf ``get_run_setting.py``)
SCHEDULES = ("step", "onecycle")
AUGMENTATIONS = ("aol", "crop-flip")
FLOAT32_MAX = 3.4028234663852886e38  # torch.finfo(torch.float32).max


class RecipeError(ValueError):
    """A recipe knob out of range; ``knob`` is the field's name (lr, momentum, ...)."""

    def __init__(self, knob: str, message: str):
        super().__init__(message)
        self.knob = knob


@dataclass(frozen=True)
class Recipe:
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    decay_biases: bool  # False: weight decay only on parameters with >= 2 dimensions
    offset: float
    temperature: float
    schedule: str
    lr_drops: tuple[int, ...] | None = None  # step schedule: epochs (0-based) where lr /= 10
    lr_drop_fractions: tuple[float, ...] = PAPER_LR_DROP_FRACTIONS
    augment: bool = True
    #: "aol": the AOL paper's colour + rotation + translation + flip; "crop-flip": random
    #: crop (padding 4, filled with the mean colour) + flip, as 1LLC
    augmentation: str = "aol"
    #: subtract the dataset's channel mean inside the network (``aol.nn.modules.Centre``)
    centre_inputs: bool = False

    def with_overrides(self, **overrides) -> Recipe:
        """A copy with every override that is not None applied."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def drop_epochs(self) -> tuple[int, ...]:
        if self.lr_drops is not None:
            return tuple(sorted(self.lr_drops))
        return tuple(sorted({round(f * self.epochs) for f in self.lr_drop_fractions}))

    def validate(self) -> None:
        """RecipeError (a ValueError naming the knob) for the first knob out of range; NaN
        fails every check. Floats must be finite in float32, the arithmetic of training:
        torch's SGD applies lr and weight decay as float32 factors, so a larger lr (1e39)
        would crash inside the optimiser, while up to that a huge lr diverges and is
        recorded as diverged."""
        for knob, ok, requirement in self._checks():
            if not ok:
                raise RecipeError(knob, f"{knob} must be {requirement}, got {getattr(self, knob)}")

    def _checks(self) -> list[tuple[str, bool, str]]:
        checks = [
            ("epochs", self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("lr", 0 < self.lr <= FLOAT32_MAX, f"positive and at most {FLOAT32_MAX:.4g}"),
            ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
            (
                "weight_decay",
                0 <= self.weight_decay <= FLOAT32_MAX,
                f">= 0 and at most {FLOAT32_MAX:.4g}",
            ),
            (
                "temperature",
                0 < self.temperature <= FLOAT32_MAX,
                f"positive and at most {FLOAT32_MAX:.4g}",
            ),
            ("offset", 0 <= self.offset <= FLOAT32_MAX, f">= 0 and at most {FLOAT32_MAX:.4g}"),
            ("schedule", self.schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
            (
                "augmentation",
                self.augmentation in AUGMENTATIONS,
                f"one of {', '.join(AUGMENTATIONS)}",
            ),
            (
                "momentum",
                not (self.nesterov and self.momentum == 0),
                "> 0 with Nesterov momentum",
            ),
        ]
        if self.lr_drops is not None:
            checks.append(("lr_drops", all(e >= 0 for e in self.lr_drops), "epochs >= 0"))
        return checks

    def as_dict(self) -> dict:
        """The knobs, for a run's identity. ``augmentation`` and ``centre_inputs`` appear only
        when they differ from the AOL paper's, so run folders made before they existed keep
        their identity (and resume)."""
        values = dataclasses.asdict(self)
        for knob, default in (("augmentation", "aol"), ("centre_inputs", False)):
            if values[knob] == default:
                del values[knob]
        values["lr_drops"] = list(self.drop_epochs()) if self.schedule == "step" else None
        values["lr_drop_fractions"] = list(self.lr_drop_fractions)
        return values


RECIPES = {
    "paper": Recipe(
        epochs=1000,
        batch_size=250,
        lr=1e-3,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-3,  # Keras l2(5e-4) on the kernels, berndprach/AOL@562bddf
        decay_biases=False,
        offset=math.sqrt(2),
        temperature=0.25,
        schedule="step",
    ),
    "1llc": Recipe(
        epochs=763,  # 2 h budget of AOL-S on CIFAR-10, 1LLC Table 8
        batch_size=256,
        lr=1e-2,  # 1LLC Table 9, AOL-S CIFAR-10
        momentum=0.9,
        nesterov=False,
        weight_decay=5e-5,  # 1LLC Table 9, AOL-S CIFAR-10
        decay_biases=True,
        offset=2 * math.sqrt(2) * 36 / 255,  # 0.3993, berndprach/1LipschitzLayersCompared@01e3f2a
        temperature=0.25,
        schedule="onecycle",
        # berndprach/1LipschitzLayersCompared@01e3f2a datasets/datasets_.py: inputs centred
        # (Normalize(mean, std=1)), then RandomCrop(32, padding=4), RandomHorizontalFlip
        augmentation="crop-flip",
        centre_inputs=True,
    ),
    "digits": Recipe(
        epochs=40,
        batch_size=50,
        lr=0.05,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-4,
        decay_biases=False,
        offset=0.5,
        temperature=0.25,
        schedule="step",
        augment=False,  # on 8x8 images it cost accuracy in a short budget (docs/benchmarks.md)
    ),
}


def default_recipe(dataset: str) -> str:
    """``digits`` for the digits dataset, the paper's recipe otherwise."""
    return "digits" if dataset == "digits" else "paper"


def get(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known recipes: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


# OneCycleLR defaults of PyTorch (what 1LLC used, berndprach/1LipschitzLayersCompared@01e3f2a)
ONECYCLE_PCT_START = 0.3
ONECYCLE_DIV_FACTOR = 25.0
ONECYCLE_FINAL_DIV_FACTOR = 1e4
ONECYCLE_MOMENTUM = (0.85, 0.95)


def _cosine(start: float, end: float, fraction: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * fraction) + 1)


def epoch_settings(recipe: Recipe, epoch: int) -> tuple[float, float]:
    """``(lr, momentum)`` for 0-based ``epoch``; the schedule is a pure function of the epoch,
    so resuming needs no scheduler state beyond the epoch number."""
    if recipe.schedule == "step":
        drops = sum(1 for drop in recipe.drop_epochs() if epoch >= drop)
        return recipe.lr * 0.1**drops, recipe.momentum
    # OneCycle with total_steps = epochs, the formula of torch.optim.lr_scheduler.OneCycleLR
    initial = recipe.lr / ONECYCLE_DIV_FACTOR
    final = initial / ONECYCLE_FINAL_DIV_FACTOR
    base_momentum, max_momentum = ONECYCLE_MOMENTUM
    warmup_end = float(ONECYCLE_PCT_START * recipe.epochs) - 1
    last = recipe.epochs - 1
    if epoch <= warmup_end or last <= warmup_end:
        fraction = epoch / warmup_end if warmup_end > 0 else 1.0
        return (
            _cosine(initial, recipe.lr, fraction),
            _cosine(max_momentum, base_momentum, fraction),
        )
    fraction = (epoch - warmup_end) / (last - warmup_end)
    return _cosine(recipe.lr, final, fraction), _cosine(base_momentum, max_momentum, fraction)
