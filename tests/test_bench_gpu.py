"""``python -m aol bench gpu``: its CPU smoke setting runs the whole command in seconds."""

from aol.engine.bench.gpu import published_epochs
from aol.engine.cli import main


def test_published_epochs_are_table_8_of_1llc():
    """Prach et al., CVPR 2024, Table 8, CIFAR-10: AOL 763 (S) / 837 (XS), SOC 336 (S)."""
    assert published_epochs("convnet-s")["aol"] == 763
    assert published_epochs("convnet-s")["soc"] == 336
    assert published_epochs("convnet-xs")["aol"] == 837


def test_smoke_setting_prints_one_row_per_model(tmp_path, capsys):
    arguments = ["bench", "gpu", "--device", "cpu", "--smoke", "--families", "aol", "standard"]
    assert main([*arguments, "--data-dir", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    assert "# aol bench gpu:" in output
    rows = [line for line in output.splitlines() if line.startswith("| convnet-xs")]
    assert [row.split("|")[2].strip() for row in rows] == ["aol", "standard"]
    aol_cells = [cell.strip() for cell in rows[0].split("|")[1:-1]]
    assert float(aol_cells[2]) > 0 and aol_cells[4] == "837"  # published beside measured
    assert rows[1].split("|")[5].strip() == "-"  # standard has no published budget
    assert (tmp_path / "cifar-10-batches-py" / "data_batch_1").exists()
