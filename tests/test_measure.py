"""``python -m aol measure``: fields, quartile order, memory grows with the batch."""

import json

from aol.engine.cli import main


def measure(tmp_path, batch, *extra):
    out = tmp_path / f"m{batch}.json"
    code = main(["measure", "--architecture", "aol-digits", "--family", "aol", "--dataset",
                 "digits", "--batch-size", str(batch), "--out", str(out), "--device", "cpu",
                 "--warmup", "1", *extra])  # fmt: skip
    assert code == 0
    return json.load(open(out))


def test_measure_reports_timings_and_memory(tmp_path):
    small, large = measure(tmp_path, 8), measure(tmp_path, 64)
    for key in ("train_step_seconds", "inference_seconds", "weight_transform_seconds"):
        timing = small[key]
        assert timing["repeats"] == 10
        assert 0 < timing["q1"] <= timing["median"] <= timing["q3"]
    assert small["num_parameters"] == 415_360 and small["device"] == "cpu"
    # saved activations grow with the batch; parameters and optimiser state do not
    assert large["peak_train_memory_bytes"] > small["peak_train_memory_bytes"]
    assert small["peak_train_memory_bytes"] > 3 * 4 * small["num_parameters"]


def test_measure_rejects_bad_arguments(tmp_path, capsys):
    code = main(["measure", "--architecture", "aol-alt", "--family", "aol", "--dataset",
                 "digits", "--batch-size", "8", "--out", str(tmp_path / "m.json")])  # fmt: skip
    assert code == 2 and "32x32" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()
