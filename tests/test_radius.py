"""aol.radius.Radius: one parse for every form a radius is given in, one canonical text that
reads back as the same radius, and that text as the key of every per-radius number."""

import json
import math
from fractions import Fraction

import pytest

from aol.engine.cli import main
from aol.radius import PAPER_RADII, Radius


@pytest.mark.parametrize(
    "given, value, text",
    [
        ("36/255", 36 / 255, "36/255"),
        (" 108/255 ", 108 / 255, "108/255"),
        ("255/255", 1.0, "1"),
        ("510/255", 2.0, "2"),
        ("0.1411", 0.1411, "0.1411"),  # close to 36/255 but not it
        ("1", 1.0, "1"),
        (1, 1.0, "1"),
        (0.5, 0.5, "0.5"),
        ("1/2", 0.5, "0.5"),
        ("1e-3", 0.001, "0.001"),
        (1 / 3, 1 / 3, "85/255"),  # 85/255 is 1/3
        (1e300, 1e300, "1e+300"),
    ],
)
def test_parse_and_canonical_text(given, value, text):
    radius = Radius.parse(given)
    assert radius.value == value and float(radius) == value
    assert str(radius) == text
    assert Radius.parse(str(radius)) == radius
    assert Radius.parse(radius) is radius


@pytest.mark.parametrize("numerator", [1, 2, 35, 36, 72, 108, 254, 256, 1000, 12345])
def test_multiples_of_one_255th_read_as_such_and_round_trip(numerator):
    radius = Radius.parse(f"{numerator}/255")
    # the same float as Python's division: the certificate sees the number it always saw
    assert radius.value == numerator / 255 == float(Fraction(numerator, 255))
    expected = str(numerator // 255) if numerator % 255 == 0 else f"{numerator}/255"
    assert str(radius) == expected
    assert Radius.parse(str(radius)) == radius


@pytest.mark.parametrize("value", [1e-9, 0.0001, 0.1, 0.123456789, 0.7, 3.5, 12.25, 1e12])
def test_decimals_round_trip_exactly(value):
    radius = Radius.parse(value)
    assert Radius.parse(str(radius)).value == value
    assert len(str(radius)) <= len(repr(value))


@pytest.mark.parametrize(
    "bad",
    [
        "0",
        "-1",
        "-36/255",
        "0/255",
        "1/0",
        "nan",
        "inf",
        "-inf",
        "",
        "abc",
        "1e999",
        0,
        -0.5,
        math.nan,
        math.inf,
        True,
        None,
        [1],
    ],  # fmt: skip
)
def test_bad_radii_are_rejected_with_a_clear_message(bad):
    with pytest.raises(ValueError, match="radius"):
        Radius.parse(bad)


def test_paper_radii_order_and_equality():
    assert [str(radius) for radius in PAPER_RADII] == ["36/255", "72/255", "108/255", "1"]
    assert sorted(PAPER_RADII, reverse=True)[0] == Radius.parse(1)
    assert Radius.parse("36/255") == Radius.parse(36 / 255)
    assert len({Radius.parse("1"), Radius.parse(1.0), Radius.parse("255/255")}) == 1


def test_result_and_certify_keys_are_the_canonical_text(tmp_path, capsys):
    run, report_path = tmp_path / "run", tmp_path / "certify.json"
    train = ["train", "--dataset", "digits", "--architecture", "aol-digits", "--family", "aol",
             "--seed", "0", "--epochs", "1", "--batch-size", "300", "--device", "cpu",
             "--threads", "1", "--out", str(run),
             "--radii", "0.5", "36/255", "255/255"]  # fmt: skip
    assert main(train) == 0
    assert "cert 0.5 " in capsys.readouterr().err  # the first configured radius
    keys = ["0.5", "36/255", "1"]  # as configured, in canonical text
    result = json.loads((run / "result.json").read_text())
    assert list(result["test_certified_accuracy"]) == keys
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert list(metrics[-1]["test_certified_accuracy"]) == keys
    certify = ["certify", "--run", str(run), "--out", str(report_path), "--device", "cpu",
               "--attack-points", "4", "--attack-steps", "2", "--attack-restarts", "1",
               "--audit-points", "1", "--audit-iterations", "5",
               "--radii", "0.1411", "72/255", "1"]  # fmt: skip
    assert main(certify) == 0
    report = json.loads(report_path.read_text())
    keys = ["0.1411", "72/255", "1"]
    assert report["epsilons"] == keys
    for field in ("certified_accuracy", "empirical_robust_accuracy", "broken_certificates"):
        assert list(report[field]) == keys, field
    for field in ("certified_points", "broken_certificates"):
        assert list(report["attack_audit"][field]) == keys, field
    # a bigger radius never certifies more points
    certified = report["certified_accuracy"]
    assert certified["0.1411"] >= certified["72/255"] >= certified["1"]


@pytest.mark.parametrize("command", ["train", "certify"])
@pytest.mark.parametrize("bad", ["0", "-0.5", "abc"])
def test_bad_radius_flag_is_a_usage_error_before_any_work(tmp_path, capsys, command, bad):
    out = tmp_path / "out"
    if command == "train":
        argv = ["train", "--dataset", "digits", "--architecture", "aol-digits", "--family",
                "aol", "--seed", "0", "--out", str(out), "--radii", bad]  # fmt: skip
    else:
        argv = ["certify", "--run", str(out), "--out", str(out / "c.json"), "--radii", bad]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "not a radius" in capsys.readouterr().err
    assert not out.exists()
