"""Recipes: the paper's schedule, 1LLC's OneCycle against torch's own, weight decay groups."""

import math

import pytest
import torch

from aol import architectures
from aol.engine import recipes
from aol.engine.train import make_optimiser


def test_paper_schedule_drops_at_900_990_999():
    recipe = recipes.get("paper")
    lrs = {
        epoch: recipes.epoch_settings(recipe, epoch)[0] for epoch in (0, 899, 900, 989, 990, 999)
    }
    assert lrs[0] == lrs[899] == 1e-3
    assert lrs[900] == pytest.approx(1e-4) and lrs[989] == pytest.approx(1e-4)
    assert lrs[990] == pytest.approx(1e-5) and lrs[999] == pytest.approx(1e-6)
    assert recipe.batch_size == 250 and recipe.nesterov and recipe.momentum == 0.9
    assert recipe.offset == math.sqrt(2) and recipe.temperature == 0.25


@pytest.mark.parametrize("epochs", [7, 40])
def test_onecycle_matches_torch(epochs):
    recipe = recipes.get("1llc").with_overrides(epochs=epochs)
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimiser = torch.optim.SGD([parameter], lr=1.0, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=recipe.lr, total_steps=epochs)
    for epoch in range(epochs):
        lr, momentum = recipes.epoch_settings(recipe, epoch)
        assert lr == pytest.approx(optimiser.param_groups[0]["lr"], rel=1e-12)
        assert momentum == pytest.approx(optimiser.param_groups[0]["momentum"], rel=1e-12)
        optimiser.step()
        scheduler.step()


def test_weight_decay_only_on_weights_for_the_paper_recipe():
    model = architectures.build("aol-digits", "aol", 10, 1, 8)
    optimiser = make_optimiser(model, recipes.get("paper"))
    decayed = {id(p) for g in optimiser.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, parameter in model.named_parameters():
        assert (id(parameter) in decayed) == name.endswith("weight")
    assert optimiser.param_groups[0]["weight_decay"] == 1e-3  # Keras l2(5e-4)


def test_invalid_knobs_are_rejected():
    with pytest.raises(ValueError, match="epochs"):
        recipes.get("paper").with_overrides(epochs=0).validate()
    with pytest.raises(ValueError, match="temperature"):
        recipes.get("paper").with_overrides(temperature=-1.0).validate()


def test_new_augmentation_knobs_leave_earlier_identities_alone():
    """Only recipes that change augmentation / centring carry those knobs in their identity."""
    for name in ("paper", "digits"):
        knobs = recipes.get(name).as_dict()
        assert "augmentation" not in knobs and "centre_inputs" not in knobs
    knobs = recipes.get("1llc").as_dict()
    assert knobs["augmentation"] == "crop-flip" and knobs["centre_inputs"] is True
    with pytest.raises(recipes.RecipeError, match="augmentation"):
        recipes.get("paper").with_overrides(augmentation="mixup").validate()
