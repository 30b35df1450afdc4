"""Wall-clock timing that is honest on CPU and GPU: warm-up, repeats, median and IQR.

On CUDA every measurement is bracketed by CUDA events and synchronised, so the
time is the device's, not the launch queue's (1LLC never synchronised:
Prach et al., CVPR 2024, Sec. 4.1).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    """Seconds per call over ``repeats`` runs after warm-up."""

    median: float
    q1: float
    q3: float
    repeats: int

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @classmethod
    def from_samples(cls, samples: list[float]) -> Timing:
        if len(samples) < 2:
            raise ValueError("need at least two samples for quartiles")
        q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive")
        return cls(median=median, q1=q1, q3=q3, repeats=len(samples))


def time_once(function: Callable[[], object], device: torch.device) -> float:
    """Seconds taken by one call of ``function`` on ``device``."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        function()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000.0
    begin = time.perf_counter()
    function()
    return time.perf_counter() - begin


def interleaved_timings(
    functions: dict[str, Callable[[], object]],
    device: torch.device,
    repeats: int = 10,
    warmup: int = 2,
) -> dict[str, Timing]:
    """Time several functions side by side: each round calls every function once.

    Interleaving spreads the machine's noise (other jobs, clock changes) over all
    candidates alike, which keeps their *ratios* meaningful on a shared machine.
    """
    if repeats < 2:
        raise ValueError(f"repeats must be >= 2, got {repeats}")
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for round_index in range(warmup + repeats):
        names = list(functions)
        if round_index % 2:  # alternate the order so no candidate always runs first
            names.reverse()
        for name in names:
            elapsed = time_once(functions[name], device)
            if round_index >= warmup:
                samples[name].append(elapsed)
    return {name: Timing.from_samples(values) for name, values in samples.items()}
