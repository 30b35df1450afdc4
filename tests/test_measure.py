"""``python -m aol measure``: one record per family plus standard, ratios from the same file,
the family's own weight transform timed, memory grows with the batch, bad arguments."""

import json

import pytest

from aol.engine.cli import main
from baselines.cayley import CayleyConv2d

REPEATS, WARMUP = 10, 1


def measure(tmp_path, batch, *families):
    out = tmp_path / f"m{batch}.json"
    code = main(["measure", "--architecture", "aol-digits", "--families", *families,
                 "--dataset", "digits", "--batch-size", str(batch), "--out", str(out),
                 "--device", "cpu", "--repeats", str(REPEATS),
                 "--warmup", str(WARMUP)])  # fmt: skip
    assert code == 0
    return json.load(open(out))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """aol and cayley at batch 8, counting the calls of Cayley's convolution transform."""
    calls = []
    original = CayleyConv2d.weight_transform

    def counted(self):
        calls.append(self)
        return original(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CayleyConv2d, "weight_transform", counted)
        report = measure(tmp_path_factory.mktemp("measure"), 8, "aol", "cayley")
    return report, calls


def test_a_record_per_requested_family_and_standard(small):
    report, _ = small
    assert list(report["families"]) == ["standard", "aol", "cayley"]
    assert report["architecture"] == "aol-digits" and report["dataset"] == "digits"
    assert report["batch_size"] == 8 and report["device"] == "cpu"
    assert (report["repeats"], report["warmup"]) == (REPEATS, WARMUP)
    for record in report["families"].values():
        for key in ("train_step_seconds", "inference_seconds"):
            assert record[key]["repeats"] == REPEATS and record[key]["median"] > 0
        assert record["memory_steps"] == 3
    assert report["families"]["aol"]["num_parameters"] == 415_360


def test_ratios_are_those_of_the_medians_in_the_same_file(small):
    report, _ = small
    records = report["families"]
    standard_step = records["standard"]["train_step_seconds"]["median"]
    standard_inference = records["standard"]["inference_seconds"]["median"]
    for record in records.values():
        step = record["train_step_seconds"]["median"]
        assert record["train_step_vs_standard"] == pytest.approx(step / standard_step)
        assert record["inference_vs_standard"] == pytest.approx(
            record["inference_seconds"]["median"] / standard_inference
        )
    transform = records["cayley"]["weight_transform_seconds"]["median"]
    assert records["cayley"]["weight_transform_share_of_standard_step"] == pytest.approx(
        transform / standard_step
    )
    assert records["standard"]["train_step_vs_standard"] == 1.0


def test_the_weight_transform_timed_is_the_familys_own(small):
    report, calls = small
    cayley_convolutions = len({id(layer) for layer in calls})
    assert cayley_convolutions == 6  # aol-digits: 1x1 encode, 4 x 3x3, 1x1
    # every timed round (warm-up included) runs every convolution's transform once
    assert len(calls) >= (WARMUP + REPEATS) * cayley_convolutions
    assert report["families"]["cayley"]["weight_transform_seconds"]["repeats"] == REPEATS
    standard = report["families"]["standard"]
    assert standard["weight_transform_seconds"] is None
    assert standard["weight_transform_share_of_standard_step"] is None


def test_memory_grows_with_the_batch(small, tmp_path):
    small_report, _ = small
    large_report = measure(tmp_path, 64, "aol")
    assert list(large_report["families"]) == ["standard", "aol"]
    for family in ("standard", "aol"):
        small_record = small_report["families"][family]
        large_record = large_report["families"][family]
        # saved activations grow with the batch; parameters and optimiser state do not
        assert large_record["peak_train_memory_bytes"] > small_record["peak_train_memory_bytes"]
        assert small_record["peak_train_memory_bytes"] > 3 * 4 * small_record["num_parameters"]


@pytest.mark.parametrize(
    ("architecture", "families", "message"),
    [
        ("aol-alt", ["aol"], "32x32"),
        ("aol-digits", ["aol", "nonsense"], "nonsense"),
        ("no-such-net", ["aol"], "no-such-net"),
    ],
)
def test_measure_rejects_bad_arguments(tmp_path, capsys, architecture, families, message):
    out = tmp_path / "m.json"
    code = main(["measure", "--architecture", architecture, "--families", *families,
                 "--dataset", "digits", "--batch-size", "8", "--out", str(out)])  # fmt: skip
    error = capsys.readouterr().err
    assert code == 2 and message in error and len(error.strip().splitlines()) == 1
    assert not out.exists()


def test_measure_needs_the_families_flag(tmp_path):
    out = tmp_path / "m.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["measure", "--architecture", "aol-digits", "--dataset", "digits",
              "--batch-size", "8", "--out", str(out)])  # fmt: skip
    assert exit_info.value.code == 2 and not out.exists()
