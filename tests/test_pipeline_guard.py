"""workflow/scripts/guarded.py: a crash becomes a 'failed' record, a kill stays a failure
(so that Snakemake retries and training resumes), and each GPU job claims its own GPU."""

import json
import os
import stat
import subprocess
import sys

from pipeline_support import REPOSITORY

GUARD = REPOSITORY / "workflow" / "scripts" / "guarded.py"


def guard(tmp_path, *options, command, env=None, wait=True):
    arguments = [sys.executable, str(GUARD), "--log", str(tmp_path / "job.log")]
    arguments += ["--record", str(tmp_path / "out.json"), *options, "--", *command]
    process = subprocess.Popen(
        arguments, cwd=tmp_path, env=None if env is None else {**os.environ, **env}
    )
    return process.wait(timeout=60) if wait else process


def python(code):
    return [sys.executable, "-c", code]


def test_crash_is_recorded(tmp_path):
    code = guard(tmp_path, command=python("print('boom'); raise SystemExit(3)"))
    assert code == 0
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["status"] == "failed" and record["exit_code"] == 3
    assert "boom" in record["log_tail"]


def test_crash_stops_when_asked(tmp_path):
    code = guard(tmp_path, "--failed-runs", "stop", command=python("raise SystemExit(3)"))
    assert code == 3
    assert not (tmp_path / "out.json").exists()


def test_kill_is_not_recorded(tmp_path):
    """Out of memory or a time limit: fail the job so that a retry resumes the run."""
    code = guard(
        tmp_path, command=python("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    )
    assert code == 128 + 9
    assert not (tmp_path / "out.json").exists()


def test_record_written_by_a_failing_command_is_kept(tmp_path):
    """certify writes its JSON (audits_passed false) and then exits non-zero."""
    write = "import json; json.dump({'audits_passed': False}, open('out.json', 'w')); exit(1)"
    code = guard(tmp_path, "--keep-written-record", command=python(write))
    assert code == 0
    assert json.loads((tmp_path / "out.json").read_text()) == {"audits_passed": False}


def test_failed_training_skips_certification(tmp_path):
    (tmp_path / "result.json").write_text(json.dumps({"status": "failed"}))
    marker = tmp_path / "ran"
    code = guard(
        tmp_path,
        "--skip-if-failed",
        str(tmp_path / "result.json"),
        command=python(f"open({str(marker)!r}, 'w')"),
    )
    assert code == 0
    assert not marker.exists()
    assert json.loads((tmp_path / "out.json").read_text())["status"] == "failed"


FAKE_NVIDIA_SMI = """#!/bin/sh
echo "GPU 0: Fake GPU (UUID: GPU-00000000-aaaa)"
echo "GPU 1: Fake GPU (UUID: GPU-11111111-bbbb)"
"""


def fake_gpu_box(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(FAKE_NVIDIA_SMI)
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_concurrent_gpu_jobs_claim_different_gpus(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    env = fake_gpu_box(tmp_path)
    jobs = []
    for index in range(2):
        report = f"print(os.environ['CUDA_VISIBLE_DEVICES'], file=open('gpu{index}', 'w'))"
        command = python(f"import os, time; {report}; time.sleep(1.5)")
        jobs.append(guard(tmp_path, "--gpus", "1", command=command, env=env, wait=False))
    assert [job.wait(timeout=60) for job in jobs] == [0, 0]
    claimed = {(tmp_path / f"gpu{index}").read_text().strip() for index in range(2)}
    assert claimed == {"GPU-00000000-aaaa", "GPU-11111111-bbbb"}
    assert "claimed GPU" in (tmp_path / "job.log").read_text()


def test_gpu_claim_respects_cuda_visible_devices(tmp_path):
    env = {**fake_gpu_box(tmp_path), "CUDA_VISIBLE_DEVICES": "1"}
    report = "import os; print(os.environ['CUDA_VISIBLE_DEVICES'], file=open('gpu', 'w'))"
    assert guard(tmp_path, "--gpus", "1", command=python(report), env=env) == 0
    assert (tmp_path / "gpu").read_text().strip() == "GPU-11111111-bbbb"
