"""LakeConfig: the validated settings of one lake."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .flush import FlushPolicy

__all__ = ["DEFAULT_ROOT", "LakeConfig"]

DEFAULT_ROOT = "lake"
ROOT_ENV = "CRYPTOLAKE_ROOT"


@dataclass(frozen=True)
class LakeConfig:
    """Where the lake lives and how its buffers flush.

    `root` defaults to $CRYPTOLAKE_ROOT, else ./lake. A buffer flushes when it holds `max_rows`
    rows or about `max_bytes` bytes, or its oldest row is `flush_interval` seconds old.
    """

    root: Path = Path(DEFAULT_ROOT)
    max_rows: int = 500_000
    max_bytes: int = 256 * 2**20
    memory_cap_bytes: int = 1024 * 2**20  # all live buffers together: flush early, then spill to the journal
    flush_interval: float = 10.0
    compression_level: int = 3
    row_group_size: int = 1_000_000
    autoflush: bool = True
    durability: str = "batch"  # journal: "none", "batch" (survives kill -9), "strict" (fsync: power loss)
    duckdb_threads: int | None = None
    dedup_window_s: float = 600.0  # natural keys remembered this long (exchange time) to drop duplicates
    silence_s: float = 60.0  # a stream with no message for this long gets a `silence` row in `gaps`
    autocompact: bool = True  # merge small files in the background after flushes
    compact_min_files: int = 8  # a partition with this many small files is worth merging
    book_depth: int = 50  # order-book levels per side kept in snapshots and served by book helpers
    book_snapshot_interval: float = 60.0  # seconds between full L2 snapshots in the live stream

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        self.policy  # validates the flush settings
        if not 1 <= self.compression_level <= 22:
            raise ConfigError(f"compression_level must be 1..22 (ZSTD), got {self.compression_level!r}")
        if self.durability not in ("none", "batch", "strict"):
            raise ConfigError(f"durability must be 'none', 'batch' or 'strict', got {self.durability!r}")
        if not isinstance(self.book_depth, int) or self.book_depth < 1:
            raise ConfigError(f"book_depth must be a positive integer, got {self.book_depth!r}")
        if not isinstance(self.book_snapshot_interval, (int, float)) or self.book_snapshot_interval <= 0:
            raise ConfigError(f"book_snapshot_interval must be a positive number of seconds, got {self.book_snapshot_interval!r}")
        if self.row_group_size < 1_000:
            raise ConfigError(f"row_group_size must be at least 1000, got {self.row_group_size!r}")

    @property
    def policy(self) -> FlushPolicy:
        return FlushPolicy(self.max_rows, self.max_bytes, self.flush_interval)

    @classmethod
    def load(cls, root: str | os.PathLike | None = None, **overrides: Any) -> "LakeConfig":
        """Defaults < environment (CRYPTOLAKE_ROOT) < arguments."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"unknown setting(s) {unknown}; settings are {sorted(names)}")
        base = cls(root=Path(root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT))
        return replace(base, **overrides)
