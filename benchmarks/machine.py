"""What the figures were measured on: CPU, cores, memory, disk, library versions."""
from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

__all__ = ["machine"]

_PACKAGES = ("cryptolake_nb", "cryptofeed", "duckdb", "pyarrow", "pandas", "polars", "numpy")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine() -> dict:
    """Machine and versions of this interpreter's packages (the ArcticDB venv adds its own)."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpu": _cpu_model(),
            "cpus": os.cpu_count(), "ram_gib": round(_mem_total() / 2**30, 1),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()], "versions": versions}
