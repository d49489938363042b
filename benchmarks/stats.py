"""Timing and memory helpers: every figure is a median of several runs, with min and max kept."""
from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable

__all__ = ["Timing", "interleaved", "peak_rss_bytes", "rss_bytes", "summary", "timed"]


class Timing(dict):
    """{"median_s", "min_s", "max_s", "runs"} plus the last return value in `.value` (kept out of JSON)."""

    value: Any = None

    @property
    def median(self) -> float:
        return self["median_s"]


def summary(runs: list[float]) -> Timing:
    """Median, min and max of `runs` (seconds)."""
    t = Timing(median_s=statistics.median(runs), min_s=min(runs), max_s=max(runs), runs=len(runs))
    return t


def timed(fn: Callable[[], Any], repeat: int, *, warmup: int = 1) -> Timing:
    """Run `fn` `warmup` times untimed (file metadata and page caches warm, as in a working session),
    then `repeat` times timed."""
    for _ in range(warmup):
        fn()
    runs, value = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn()
        runs.append(time.perf_counter() - t)
    out = summary(runs)
    out.value = value
    return out


def interleaved(fns: dict[str, Callable[[], Any]], repeat: int, *, warmup: int = 1) -> dict[str, Timing]:
    """Time several ways of answering the same thing in turns (A B C A B C ...), so that load from
    other processes on a shared machine falls on all of them alike and their ratios stay fair."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    runs: dict[str, list[float]] = {k: [] for k in fns}
    values: dict[str, Any] = {}
    for _ in range(repeat):
        for k, fn in fns.items():
            t = time.perf_counter()
            values[k] = fn()
            runs[k].append(time.perf_counter() - t)
    out = {}
    for k, r in runs.items():
        out[k] = summary(r)
        out[k].value = values[k]
    return out


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size now (Linux /proc), of this process or `pid`."""
    with open(f"/proc/{pid or os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak RSS of this process image (VmHWM). Not ru_maxrss: Linux carries that over fork and exec,
    so a child started by a big parent would report the parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0
