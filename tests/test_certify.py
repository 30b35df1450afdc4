"""``python -m aol certify``: sound numbers, passing audits, and a false bound caught by both."""

import json

import pytest
import torch

from aol import certificate
from aol.engine.cli import main
from aol.nn.layers import AOLConv2d, AOLLinear

TRAIN = ["--dataset", "digits", "--architecture", "aol-digits", "--seed", "0", "--device", "cpu",
         "--epochs", "4", "--batch-size", "100"]  # fmt: skip
CERTIFY = ["--attack-points", "40", "--attack-steps", "10", "--attack-restarts", "1",
           "--audit-points", "2", "--audit-iterations", "30", "--device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("runs")
    for family in ("aol", "standard"):
        assert main(["train", *TRAIN, "--family", family, "--out", str(folder / family)]) == 0
    yield folder
    torch.set_num_threads(threads)


def certify(run, out, *extra):
    code = main(["certify", "--run", str(run), "--out", str(out), *CERTIFY, *extra])
    return code, json.load(open(out))


def test_certified_accuracy_is_sound_and_the_audits_pass(runs, tmp_path):
    code, report = certify(runs / "aol", tmp_path / "c.json")
    assert code == 0 and report["audits_passed"] and report["status"] == "completed"
    assert report["lipschitz_bound"] == 1.0 and report["test_points"] == 450
    assert list(report["certified_accuracy"]) == ["36/255", "72/255", "108/255", "1"]
    for key, certified in report["certified_accuracy"].items():
        assert certified <= report["clean_accuracy"]
        assert report["broken_certificates"][key] == 0
    # on the attacked points, what the attack could not break is at least what is certified
    attacked = report["attack_audit"]["points"]
    for key, empirical in report["empirical_robust_accuracy"].items():
        assert empirical >= report["attack_audit"]["certified_points"][key] / attacked
    assert report["lipschitz_audit"]["passed"]
    layers = report["lipschitz_audit"]["layers"]
    assert len(layers) == 10 and all(0.5 < layer["estimate"] <= 1 + 1e-6 for layer in layers)


def test_a_false_bound_is_caught_by_both_audits(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(AOLConv2d, "lipschitz_bound", lambda self: 0.5)
    monkeypatch.setattr(AOLLinear, "lipschitz_bound", lambda self: 0.5)
    code, report = certify(runs / "aol", tmp_path / "c.json", "--epsilons", "108/255", "1")
    assert code == 1 and not report["audits_passed"]
    assert "FAILED" in capsys.readouterr().err
    assert report["lipschitz_bound"] == pytest.approx(0.5**10)
    assert not report["lipschitz_audit"]["passed"]
    assert not report["lipschitz_audit"]["network"]["passed"]
    assert not report["attack_audit"]["passed"]
    assert report["broken_certificates"]["1"] > 0


def test_scaled_up_weights_are_caught(runs, tmp_path, monkeypatch):
    """An export that does not compute what the bound is about (weights x 2) fails the audit."""
    original = AOLLinear.export

    def scaled_export(self):
        plain = original(self)
        with torch.no_grad():
            plain.weight.mul_(2.0)
        return plain

    monkeypatch.setattr(AOLLinear, "export", scaled_export)
    code, report = certify(runs / "aol", tmp_path / "c.json", "--radii", "1")
    assert code == 1 and not report["lipschitz_audit"]["passed"]
    assert any(layer["estimate"] > 1.9 for layer in report["lipschitz_audit"]["layers"])


def test_standard_family_has_no_bound_but_gets_an_attack(runs, tmp_path):
    code, report = certify(runs / "standard", tmp_path / "c.json")
    assert code == 0 and report["status"] == "no_bound"
    assert report["lipschitz_bound"] is None
    assert all(value is None for value in report["certified_accuracy"].values())
    clean_here = report["attack_audit"]["clean_accuracy_on_points"]
    assert all(0 <= v <= clean_here for v in report["empirical_robust_accuracy"].values())


def test_certificate_margins_are_float64_on_exported_weights(runs, tmp_path):
    """The certified accuracy equals an independent float64 recomputation."""
    from aol.engine import checkpoint, data
    from aol.engine.run_folder import build_model

    _, report = certify(runs / "aol", tmp_path / "c.json", "--attack-points", "0")
    saved = checkpoint.load(runs / "aol" / "checkpoint.pt")
    model = build_model(saved["identity"]).double()
    model.load_state_dict(saved["model"])
    test = data.load("digits")
    with torch.no_grad():
        scores = model(test.test_images.double())
    margins = certificate.margins(scores, test.test_labels)
    correct = scores.argmax(1) == test.test_labels
    expected = (correct & (margins > 2**0.5 * 36 / 255)).double().mean().item()
    assert report["certified_accuracy"]["36/255"] == pytest.approx(expected, abs=1 / 450 + 1e-12)


def test_diverged_run_and_missing_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TRAIN, "--family", "aol", "--out", str(out), "--lr", "1e30",
                 "--epochs", "1"]) == 0  # fmt: skip
    code, report = certify(out, tmp_path / "c.json")
    assert code == 0 and report["status"] == "diverged" and report["clean_accuracy"] is None
    assert report["attack_audit"]["ran"] is False and report["attack_audit"]["passed"] is None
    assert (
        main(["certify", "--run", str(tmp_path / "none"), "--out", str(tmp_path / "x.json")]) == 2
    )
    assert "train first" in capsys.readouterr().err


def nan_in_one_weight(run, tampered):
    """A copy of the run folder whose checkpoint has one NaN weight (the first conv's kernel)."""
    import shutil

    from aol.engine import checkpoint

    shutil.copytree(run, tampered)
    saved = checkpoint.load(tampered / "checkpoint.pt")
    name = next(key for key, value in saved["model"].items() if value.dim() == 4)
    saved["model"][name].view(-1)[0] = float("nan")
    checkpoint.save(tampered / "checkpoint.pt", saved)
    return tampered


def test_a_nan_weight_fails_the_audits(runs, tmp_path, capsys):
    """NaN compares False with everything: NaN estimates must not count as passes."""
    tampered = nan_in_one_weight(runs / "aol", tmp_path / "tampered")
    code, report = certify(tampered, tmp_path / "c.json", "--radii", "1")
    assert code == 1 and report["audits_passed"] is False
    assert "FAILED" in capsys.readouterr().err
    audit = report["lipschitz_audit"]
    assert audit["ran"] is True and audit["passed"] is False
    assert audit["network"]["passed"] is False
    assert any(layer["passed"] is False for layer in audit["layers"])
    assert report["non_finite_scores"] > 0


@pytest.mark.parametrize(
    "estimate, bound, passed",
    [
        (1.0, 1.0, True),
        (1.0 + 1e-7, 1.0, True),  # within the relative tolerance
        (1.1, 1.0, False),
        (float("nan"), 1.0, False),
        (float("inf"), 1.0, False),
        (0.5, float("nan"), False),
        (0.5, float("inf"), False),
        (0.5, None, True),  # no stated bound: only a finite estimate is needed
        (float("nan"), None, False),
    ],
)
def test_the_audit_comparison_fails_on_nan_and_inf(estimate, bound, passed):
    from aol.engine.audit import _within

    assert _within(estimate, bound) is passed


def test_no_attack_points_means_the_attack_audit_did_not_run(runs, tmp_path):
    code, report = certify(runs / "aol", tmp_path / "c.json", "--attack-points", "0")
    assert code == 0 and report["audits_passed"] is True
    assert report["attack_audit"]["ran"] is False
    assert report["attack_audit"]["passed"] is None
    assert report["lipschitz_audit"]["ran"] is True and report["lipschitz_audit"]["passed"]
    assert report["non_finite_scores"] == 0
