"""Journal cost per trade: sealed 1k-row trade batches appended at each durability level."""
from __future__ import annotations

import statistics
import time
import zlib
from pathlib import Path

from cryptolake_nb.journal import Durability, Journal
from cryptolake_nb.journal_frames import serialize as _serialize

from .synth import trades

__all__ = ["bench_journal"]


def _append_all(directory: Path, durability: Durability, batches: list) -> tuple[float, int]:
    with Journal(directory, durability=durability) as j:
        j.recover()
        t = time.perf_counter()
        for b in batches:
            j.append("trades", b)
        elapsed = time.perf_counter() - t
        size = j.stats()["bytes"]
    return elapsed, size


def bench_journal(n_trades: int, root: Path, *, batch_rows: int = 1000, repeat: int = 3) -> dict:
    """Cost per trade of journaling sealed batches, per durability level, next to no journal.

    Baseline (`none`): `Durability.NONE`, i.e. the buffer's path without a journal (numbering only).
    `ipc_crc` is the CPU part alone (IPC serialisation + CRC-32, no file); `batch` adds one `writev`
    per batch, `strict` one `fdatasync` more. Each level runs `repeat` times on a fresh directory;
    medians are reported with min and max. `recover` is a restart reading the BATCH journal back.
    """
    root = Path(root)
    n = n_trades - n_trades % batch_rows or batch_rows
    batches = trades(n).to_batches(max_chunksize=batch_rows)
    levels: dict[str, dict] = {}

    def record(name: str, runs: list[float], size: int | None = None) -> None:
        med = statistics.median(runs)
        levels[name] = {"us_per_trade": med / n * 1e6, "min_us_per_trade": min(runs) / n * 1e6,
                        "max_us_per_trade": max(runs) / n * 1e6, "us_per_batch": med / len(batches) * 1e6}
        if size is not None:
            levels[name].update(bytes_per_trade=size / n, mb_per_s=size / med / 1e6)

    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        for b in batches:
            zlib.crc32(_serialize(b))
        runs.append(time.perf_counter() - t)
    record("ipc_crc", runs)
    for durability in (Durability.NONE, Durability.BATCH, Durability.STRICT):
        runs, size = [], 0
        for i in range(repeat):
            elapsed, size = _append_all(root / f"journal-{durability.value}-{i}", durability, batches)
            runs.append(elapsed)
        record(durability.value, runs, size if durability is not Durability.NONE else None)
    with Journal(root / "journal-batch-0") as j:
        t = time.perf_counter()
        entries = j.recover()
        levels["recover"] = {"us_per_trade": (time.perf_counter() - t) / n * 1e6, "entries": len(entries)}
    base = levels["none"]["us_per_trade"]
    return {"trades": n, "batch_rows": batch_rows, "batches": len(batches), "repeat": repeat,
            "levels": levels,
            "overhead_us_per_trade": {k: levels[k]["us_per_trade"] - base for k in ("batch", "strict")}}


if __name__ == "__main__":
    import json
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cryptolake-bench-journal-") as tmp:
        print(json.dumps(bench_journal(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000, Path(tmp)), indent=1))
