"""Run one engine command for the pipeline; record a crash instead of stopping everything.

    guarded.py --log LOG --record OUT.json --failed-runs record|stop
               [--skip-if-failed RESULT.json] [--keep-written-record] -- COMMAND ...

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
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

LOG_TAIL_LINES = 20
# 128 + signal number: how a shell reports SIGINT, SIGKILL and SIGTERM
SHELL_SIGNAL_CODES = {130, 137, 143}


def write_json_atomically(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as stream:
        json.dump(payload, stream, indent=2)
    os.replace(temporary, path)


def log_tail(log: Path) -> list[str]:
    try:
        return log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError:
        return []


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--failed-runs", choices=["record", "stop"], default="record")
    parser.add_argument("--skip-if-failed", type=Path)
    parser.add_argument("--keep-written-record", action="store_true")
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

    with open(arguments.log, "a") as log:
        log.write(f"$ {' '.join(arguments.command)}\n")
        log.flush()
        code = subprocess.call(arguments.command, stdout=log, stderr=subprocess.STDOUT)
        log.write(f"exit code {code}\n")
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
