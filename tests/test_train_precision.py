"""``python -m aol train --precision`` and ``--channels-last``: the precision is part of the
run's identity and result; certification does not depend on it."""

import json

import torch

from aol.engine.cli import main
from aol.engine.commands.train import resolve_channels_last

ARGS = ["--dataset", "digits", "--architecture", "aol-digits", "--family", "aol", "--seed", "3",
        "--device", "cpu", "--threads", "1", "--epochs", "1", "--batch-size", "300"]  # fmt: skip


def test_bf16_run_records_its_precision_and_certifies_in_float64(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *ARGS, "--out", str(out), "--precision", "bf16"]) == 0
    result = json.load(open(out / "result.json"))
    assert result["precision"] == "bf16" and result["status"] == "completed"
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert saved["identity"]["precision"] == "bf16"
    assert all(value.dtype == torch.float32 for value in saved["model"].values())
    # another precision is another run: refused in this folder
    assert main(["train", *ARGS, "--out", str(out)]) == 2
    certificate = tmp_path / "certify.json"
    cheap_audits = ["--attack-points", "0", "--audit-points", "1", "--audit-iterations", "2"]
    certify = ["certify", "--run", str(out), "--out", str(certificate), "--device", "cpu"]
    assert main([*certify, *cheap_audits]) == 0
    assert json.load(open(certificate))["lipschitz_bound"] <= 1.0 + 1e-9


def test_checkpoints_without_a_precision_resume_as_fp32(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *ARGS, "--out", str(out)]) == 0
    result = json.load(open(out / "result.json"))
    assert result["precision"] == "fp32" and result["channels_last"] is False
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    del saved["identity"]["precision"]  # as written before the option existed
    torch.save(saved, out / "checkpoint.pt")
    del result["precision"]
    json.dump(result, open(out / "result.json", "w"))
    assert main(["train", *ARGS, "--out", str(out)]) == 0  # the finished run is reported
    assert main(["train", *ARGS, "--out", str(out), "--precision", "bf16"]) == 2
    (out / "result.json").unlink()
    assert main(["train", *ARGS, "--out", str(out)]) == 0
    assert "resuming" in capsys.readouterr().err


def test_channels_last_trains_and_is_recorded(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *ARGS, "--out", str(out), "--channels-last", "on"]) == 0
    result = json.load(open(out / "result.json"))
    assert result["channels_last"] is True and result["status"] == "completed"
    assert result["precision"] == "fp32"


def test_channels_last_defaults_to_cuda_tensor_cores_only():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert resolve_channels_last("auto", cuda, "bf16") is True
    assert resolve_channels_last("auto", cuda, "tf32") is True
    assert resolve_channels_last("auto", cuda, "fp32") is False
    assert resolve_channels_last("auto", cpu, "bf16") is False
    assert resolve_channels_last("on", cpu, "fp32") is True
    assert resolve_channels_last("off", cuda, "bf16") is False
