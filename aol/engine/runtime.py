"""Device choice and the environment facts every result records."""

from __future__ import annotations

import json
import os
import platform
import tempfile

import torch


def resolve_device(flag: str = "auto") -> torch.device:
    """``auto`` is CUDA when available, else CPU; ``cuda``/``cuda:K`` must exist."""
    if flag == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(flag)
    except RuntimeError as error:
        raise ValueError(f"unknown device {flag!r}; use auto, cpu, cuda or cuda:K") from error
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {flag!r}; use auto, cpu, cuda or cuda:K")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {flag!r} requested but CUDA is not available here")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device {flag!r} requested but only {torch.cuda.device_count()} GPU(s) exist"
            )
    return device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {platform.processor() or 'unknown processor'})"


def environment(device: torch.device) -> dict:
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


TEMPORARY_PREFIX = ".tmp-"


def temporary_prefix(name: str) -> str:
    """The name prefix of ``write_atomically``'s temporary files for the file ``name``."""
    return f"{TEMPORARY_PREFIX}{name}."


def shared_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomically(path: str | os.PathLike, write, binary: bool = False) -> None:
    """Call ``write(stream)`` on a temporary file next to ``path``, flush it to disk, then
    rename it into place: a reader (or a resumed run) sees the old file or the new one,
    never a partial one. The file gets the mode a plain ``open()`` would give it (0o666
    less the umask), not ``mkstemp``'s 0o600. The folder is created if needed. A kill
    leaves the temporary file behind (``remove_orphaned_temporaries``)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=folder, prefix=temporary_prefix(os.path.basename(path))
    )
    try:
        os.fchmod(handle, shared_file_mode())
        with os.fdopen(handle, "wb" if binary else "w") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def remove_orphaned_temporaries(folder: str | os.PathLike, names: tuple[str, ...]) -> list[str]:
    """Delete the temporary files that ``write_atomically`` left in ``folder`` for the files
    ``names`` when it was killed; returns their paths. Call it only while no other process
    writes these files (under their lock)."""
    prefixes = tuple(temporary_prefix(name) for name in names)
    removed = []
    for entry in os.scandir(folder):
        if entry.name.startswith(prefixes) and entry.is_file(follow_symlinks=False):
            os.remove(entry.path)
            removed.append(entry.path)
    return removed


def write_json_atomically(path: str | os.PathLike, data: dict) -> None:
    """Write ``data`` as indented JSON with ``write_atomically``."""

    def write(stream) -> None:
        json.dump(data, stream, indent=2)
        stream.write("\n")

    write_atomically(path, write)
