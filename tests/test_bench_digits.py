"""``python -m aol bench digits``: one table row per family, taken from the runs' own files."""

import json

from aol.engine.cli import main


def test_digits_bench_prints_the_runs_numbers(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "digits", "--out", str(out), "--families", "aol", "standard",
                 "--threads", "1", "--train-args", "--epochs", "1",
                 "--batch-size", "300"])  # fmt: skip
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("| family"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    rows = {}
    for line in lines:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] in ("aol", "standard"):
            rows[cells[0]] = dict(zip(columns, cells, strict=True))
    assert set(rows) == {"aol", "standard"}
    for family, row in rows.items():
        result = json.load(open(out / family / "result.json"))
        report = json.load(open(out / family / "certify.json"))
        assert result["epochs_completed"] == 1
        assert row["clean %"] == f"{100 * report['clean_accuracy']:.1f}"
        assert row["broken"] == "0" and row["audits"] == "passed"
        assert float(row["steps s"]) <= float(row["train s"])
    assert rows["aol"]["status"] == "completed" and rows["standard"]["status"] == "no_bound"
    certified = json.load(open(out / "aol" / "certify.json"))["certified_accuracy"]
    assert list(certified) == ["36/255", "72/255", "108/255", "1"]
    for radius, value in certified.items():
        assert rows["aol"][f"cert {radius} %"] == f"{100 * value:.1f}"
        assert rows["standard"][f"cert {radius} %"] == "-"
    assert "PGD 36/255 %" in columns
