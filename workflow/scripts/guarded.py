"""Run one engine command for the pipeline; record a crash instead of stopping everything.

    guarded.py --log LOG --record OUT.json --failed-runs record|stop [--gpus N]
               [--skip-if-failed RESULT.json] [--keep-written-record] -- COMMAND ...

--gpus N (the job's `gpu` resource): claim one GPU for the command before running it.
Snakemake counts GPUs (`--resources gpu=N`) but does not say which GPU a job gets
(it never sets CUDA_VISIBLE_DEVICES), so each job takes an exclusive lock
(fcntl.flock) on a file named after a GPU's UUID in .snakemake/gpu-locks/ and runs the
command with CUDA_VISIBLE_DEVICES set to that UUID; the lock is released when the
command ends (also when it is killed). The candidates are the GPUs `nvidia-smi -L`
lists, restricted to CUDA_VISIBLE_DEVICES when that is already set (by the user, or by
SLURM for the job's allocation, where the UUID names the allocated GPU). Locks are
per physical GPU, so concurrent jobs never share one, whatever their working copy.
With N = 0 nothing is claimed.

The command's output is appended to LOG (appended, so that the log of an interrupted
run survives its resumption). Then:

- exit 0: done, OUT.json is the engine's.
- killed by a signal (out of memory, a SLURM time limit, Ctrl-C): exit non-zero, so
  Snakemake retries the job (with more resources, see profiles/slurm) or stops; the
  engine's checkpoint lets the next attempt resume.
- any other non-zero exit with --keep-written-record and OUT.json written by the
  engine (certify: a failed audit writes its JSON, then exits non-zero): keep it,
  exit 0, so the tables show the failed audit.
- any other non-zero exit with --failed-runs record: write OUT.json as
  {"status": "failed", "exit_code": N, "command": [...], "log_tail": [...]}, exit 0.
  With --failed-runs stop: exit with the command's code.

--skip-if-failed RESULT.json: when that (training) result has status "failed", write
OUT.json as failed without running the command (nothing to certify).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOG_TAIL_LINES = 20
# 128 + signal number: how a shell reports SIGINT, SIGKILL and SIGTERM
SHELL_SIGNAL_CODES = {130, 137, 143}


def write_json_atomically(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(handle, 0o666 & ~umask)  # the mode open() gives, not mkstemp's 0o600
    with os.fdopen(handle, "w") as stream:
        json.dump(payload, stream, indent=2)
    os.replace(temporary, path)


def log_tail(log: Path) -> list[str]:
    try:
        return log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError:
        return []


GPU_LOCK_DIR = Path(".snakemake/gpu-locks")
GPU_POLL_SECONDS = 5


def gpu_uuids() -> list[str]:
    """UUIDs of the GPUs this job may use (nvidia-smi order, CUDA_VISIBLE_DEVICES)."""
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    uuids = re.findall(r"\(UUID: (GPU-[0-9a-fA-F-]+)\)", listing)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return uuids
    chosen = []
    for entry in (item.strip() for item in visible.split(",") if item.strip()):
        if entry.isdigit() and int(entry) < len(uuids):
            chosen.append(uuids[int(entry)])
        elif entry.startswith("GPU-"):
            chosen.extend(uuid for uuid in uuids if uuid.startswith(entry))
    return chosen


@contextlib.contextmanager
def claimed_gpu(log):
    """Hold an exclusive lock on one GPU; yield its UUID (None: no GPU found)."""
    uuids = gpu_uuids()
    if not uuids:
        log.write("no GPU listed by nvidia-smi; running without claiming one\n")
        yield None
        return
    GPU_LOCK_DIR.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for uuid in uuids:
            handle = open(GPU_LOCK_DIR / f"{uuid}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                log.write(f"claimed GPU {uuid}\n")
                log.flush()
                yield uuid
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        if not waited:  # more GPU jobs than GPUs: --resources gpu=N larger than the box
            log.write(f"all of {len(uuids)} GPUs are claimed; waiting\n")
            log.flush()
            waited = True
        time.sleep(GPU_POLL_SECONDS)


def run_logged(command: list[str], log_path: Path, gpus: int) -> int:
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        with contextlib.ExitStack() as stack:
            environment = dict(os.environ)
            if gpus > 0:
                uuid = stack.enter_context(claimed_gpu(log))
                if uuid is not None:
                    environment["CUDA_VISIBLE_DEVICES"] = uuid
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
        log.write(f"exit code {code}\n")
    return code


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--failed-runs", choices=["record", "stop"], default="record")
    parser.add_argument("--skip-if-failed", type=Path)
    parser.add_argument("--keep-written-record", action="store_true")
    parser.add_argument("--gpus", type=int, default=0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    arguments = parser.parse_args(argv)
    if arguments.command[:1] == ["--"]:
        arguments.command = arguments.command[1:]
    if not arguments.command:
        parser.error("no command given after --")
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    arguments.log.parent.mkdir(parents=True, exist_ok=True)

    if arguments.skip_if_failed is not None:
        upstream = json.loads(arguments.skip_if_failed.read_text())
        if upstream.get("status") == "failed":
            write_json_atomically(
                arguments.record,
                {"status": "failed", "reason": f"{arguments.skip_if_failed} failed"},
            )
            return 0

    code = run_logged(arguments.command, arguments.log, arguments.gpus)
    if code == 0:
        return 0
    if code < 0 or code in SHELL_SIGNAL_CODES:  # let Snakemake retry (resume) or stop
        print(f"{arguments.command[0]} was killed (exit {code}); see {arguments.log}")
        return 128 - code if code < 0 else code
    if arguments.keep_written_record and arguments.record.exists():
        print(f"command exited {code} after writing {arguments.record}; keeping it")
        return 0
    if arguments.failed_runs == "stop":
        print(f"command failed with exit code {code}; see {arguments.log}", file=sys.stderr)
        return code
    write_json_atomically(
        arguments.record,
        {
            "status": "failed",
            "exit_code": code,
            "command": arguments.command,
            "log": str(arguments.log),
            "log_tail": log_tail(arguments.log),
        },
    )
    print(f"recorded failed run in {arguments.record} (exit code {code}; see {arguments.log})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
