"""Can a SLURM partition ever run a job? The nodes of a partition as `sinfo` reports them,
and the one-line reason why a job asking for (CPUs, memory, GPUs, minutes) fits none.

A job that asks for more than any node of its partition has stays PENDING with reason
"PartitionConfig" (or "Resources") forever and SLURM says nothing; the pipeline checks its
jobs against the partition before it submits any (onstart in workflow/rules/common.smk).
"""

import os
import re
import subprocess
from dataclasses import dataclass

#: one line per node: partition (default marked *), CPUs, memory (MB), generic resources,
#: time limit
SINFO_FORMAT = "%P|%c|%m|%G|%l"


@dataclass(frozen=True)
class Node:
    partition: str
    default: bool
    cpus: int
    mem_mb: int
    gpus: int
    minutes: float  # the partition's time limit; inf when unlimited


@dataclass(frozen=True)
class JobNeed:
    what: str  # e.g. "train jobs of dataset digits"
    key: str  # the config key holding the values, e.g. "job_resources.digits"
    cpus: int
    mem_mb: int
    gpus: int
    minutes: int
    runtime_key: str  # e.g. "runtime.train"


def parse_gpus(gres: str) -> int:
    """GPUs in a generic-resource field: 'gpu:2', 'gpu:a100:4(S:0-1)', '(null)' -> 0."""
    total = 0
    for item in gres.split(","):
        match = re.match(r"gpu(?::[^:(]+)?:(\d+)", item.strip())
        if match:
            total += int(match.group(1))
    return total


def parse_minutes(limit: str) -> float:
    """A SLURM time limit in minutes (sbatch --time formats): 'infinite'; 'M', 'M:S',
    'H:M:S'; 'D-H', 'D-H:M', 'D-H:M:S'."""
    limit = limit.strip()
    if limit.lower() in ("infinite", "unlimited"):
        return float("inf")
    if "-" in limit:
        days, clock = limit.split("-")
        hours, minutes, seconds = ([int(part) for part in clock.split(":")] + [0, 0])[:3]
        return int(days) * 1440 + hours * 60 + minutes + seconds / 60
    parts = [int(part) for part in limit.split(":")]
    if len(parts) == 3:
        return parts[0] * 60 + parts[1] + parts[2] / 60
    return parts[0] + (parts[1] / 60 if len(parts) == 2 else 0)


def parse_sinfo(text: str) -> list[Node]:
    nodes = []
    for line in text.splitlines():
        if not line.strip():
            continue
        partition, cpus, memory, gres, limit = line.strip().split("|")
        nodes.append(
            Node(
                partition=partition.rstrip("*"),
                default=partition.endswith("*"),
                cpus=int(cpus.rstrip("+")),
                mem_mb=int(memory.rstrip("+")),
                gpus=parse_gpus(gres),
                minutes=parse_minutes(limit),
            )
        )
    return nodes


def query_nodes() -> list[Node]:
    """Every node of every partition (`sinfo -N`); a node in two partitions is listed twice."""
    answer = subprocess.run(
        ["sinfo", "-h", "-N", "-o", SINFO_FORMAT],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return parse_sinfo(answer.stdout)


def target_partition(nodes: list[Node], requested: str | None) -> str | None:
    """The partition the jobs go to: the requested one (SBATCH_PARTITION), else the default."""
    if requested:
        return requested
    defaults = sorted({node.partition for node in nodes if node.default})
    return defaults[0] if defaults else None


def _shortfalls(need: JobNeed, node: Node) -> list[str]:
    """The values of `need` that `node` cannot give, as 'threads 8 > 2 CPUs'."""
    shortfalls = []
    if need.cpus > node.cpus:
        shortfalls.append(f"{need.key}.threads ({need.cpus} CPUs; a node has {node.cpus})")
    if need.mem_mb > node.mem_mb:
        shortfalls.append(f"{need.key}.mem_mb ({need.mem_mb} MB; a node has {node.mem_mb} MB)")
    if need.gpus > node.gpus:
        shortfalls.append(
            f"device ({need.gpus} GPU per job with device: cuda; a node has {node.gpus})"
        )
    if need.minutes > node.minutes:
        shortfalls.append(
            f"{need.key}.{need.runtime_key} ({need.minutes} min; the limit is {node.minutes:g} min)"
        )
    return shortfalls


def unfit_reason(need: JobNeed, nodes: list[Node], partition: str | None) -> str | None:
    """None when a node of the partition can run the job; else one line saying what to lower
    (the shortfalls on the partition's largest node, the one with the fewest)."""
    candidates = [node for node in nodes if partition is None or node.partition == partition]
    if not candidates:
        known = ", ".join(sorted({node.partition for node in nodes})) or "none"
        return f"SLURM partition {partition!r} has no nodes (partitions: {known})"
    shortfalls = min((_shortfalls(need, node) for node in candidates), key=len)
    if not shortfalls:
        return None
    return (
        f"{need.what} can never start on SLURM partition {partition or '(any)'}: lower "
        + "; ".join(shortfalls)
        + " in the config"
    )


def check_jobs_fit(needs: list[JobNeed]) -> list[str]:
    """The reasons, one per job kind that no node of the target partition can run."""
    nodes = query_nodes()
    partition = target_partition(nodes, os.environ.get("SBATCH_PARTITION"))
    reasons = [unfit_reason(need, nodes, partition) for need in needs]
    return [reason for reason in reasons if reason is not None]
