"""Health of a running lake: seal-time counters per feed and channel, and the report `Lake.health()` returns.

Nothing here runs per message. `HealthStats.observe` is called once per sealed batch (every 0.25 s
per table on the flusher thread): it counts messages per (exchange, table) and keeps a small
evenly spaced sample of their lag (receipt time - exchange time). Rates and percentiles are
computed when someone asks (`lake.health()`, the alert monitor, a /metrics scrape), over the last
`window_s` seconds of sealed batches. `HealthProbe.report` assembles the dict from those counters
and from what the lake already keeps (buffer stats, the manifest, the flusher, the gap log, the
filesystem); it never seals, queries or writes.

A message is one cryptofeed callback: one row for most tables, one `update_id` group for books.
"""
from __future__ import annotations

import collections
import logging
import math
import shutil
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Protocol, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .alerts import AlertRules
from .clock import Clock, SystemClock
from .errors import ConfigError

if TYPE_CHECKING:
    from .backpressure import MemoryGuard
    from .buffer import LiveBuffer
    from .feed_health import FeedHealth
    from .flush import Flusher
    from .gaps import GapLog
    from .manifest import FileEntry

__all__ = ["DiskProbe", "DiskUsage", "FeedEntry", "HealthProbe", "HealthStats", "Monitoring", "disk_usage", "nearest_rank"]

log = logging.getLogger(__name__)

WINDOW_S = 60.0       # lag percentiles over the sealed batches of the last minute
RATE_WINDOW_S = 10.0  # messages/s over the last 10 s
SAMPLES = 128         # lag values kept per sealed batch and stream, evenly spaced


class DiskUsage(NamedTuple):
    """Sizes of a filesystem in bytes (what `shutil.disk_usage` returns)."""

    total: int
    used: int
    free: int


class DiskProbe(Protocol):
    def __call__(self, path: Path) -> Any:
        """An object with `total` and `free` bytes of the filesystem holding `path`."""


def disk_usage(path: Path) -> DiskUsage:
    """The real probe: statvfs of the filesystem that holds `path`."""
    u = shutil.disk_usage(path)
    return DiskUsage(u.total, u.used, u.free)


def nearest_rank(ordered: Sequence[float] | np.ndarray, p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence: a value that really occurred."""
    n = len(ordered)
    if not n:
        return None
    return float(ordered[max(0, math.ceil(p / 100 * n) - 1)])


@dataclass
class _Piece:
    """One sealed batch's share of one stream."""

    mono: float
    messages: int
    lag_max_ns: int
    lags_ns: np.ndarray  # an evenly spaced sample, at most SAMPLES values


class _Stream:
    """Counters of one (exchange, table)."""

    __slots__ = ("total", "last_mono", "pieces")

    def __init__(self) -> None:
        self.total = 0
        self.last_mono: float | None = None
        self.pieces: collections.deque[_Piece] = collections.deque()


class HealthStats:
    """Messages and lag per (exchange, table), counted from sealed batches; feed activity by the clock."""

    def __init__(self, clock: Clock | None = None, *, window_s: float = WINDOW_S, rate_window_s: float = RATE_WINDOW_S,
                 samples: int = SAMPLES) -> None:
        for name, value in (("window_s", window_s), ("rate_window_s", rate_window_s)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
            raise ConfigError(f"samples must be a positive integer, got {samples!r}")
        self._clock: Clock = clock or SystemClock()
        self.window_s = float(max(window_s, rate_window_s))
        self.rate_window_s = float(rate_window_s)
        self._samples = samples
        self._since = self._clock.monotonic()
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._activity: weakref.WeakKeyDictionary[Any, tuple[int, float]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    # -- the seal path: once per sealed batch ------------------------------------------------------
    def observe(self, table: str, batch: pa.RecordBatch) -> None:
        """Count the messages of a sealed batch per exchange and sample their lag."""
        if batch.num_rows == 0:
            return
        now = self._clock.monotonic()
        lag = (batch.column("receipt_ts").cast(pa.int64()).to_numpy(zero_copy_only=False)
               - batch.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False))
        ids = (batch.column("update_id").to_numpy(zero_copy_only=False)
               if "update_id" in batch.schema.names else None)
        exchanges = pc.dictionary_encode(batch.column("exchange"))
        names = exchanges.dictionary.to_pylist()
        if len(names) == 1:
            groups = [(names[0], lag, ids)]
        else:
            codes = exchanges.indices.to_numpy(zero_copy_only=False)
            groups = [(name, lag[codes == k], None if ids is None else ids[codes == k]) for k, name in enumerate(names)]
        pieces = []
        for exchange, lags, uids in groups:
            if uids is not None:  # a book message is one update_id group of level rows
                _, first = np.unique(uids, return_index=True)
                lags = lags[first]
            step = max(1, len(lags) // self._samples)
            pieces.append((exchange, _Piece(now, len(lags), int(lags.max()), lags[::step][:self._samples].copy())))
        horizon = now - self.window_s
        with self._lock:
            for exchange, piece in pieces:
                stream = self._streams.get((exchange, table))
                if stream is None:
                    stream = self._streams[(exchange, table)] = _Stream()
                stream.total += piece.messages
                stream.last_mono = now
                stream.pieces.append(piece)
                while stream.pieces and stream.pieces[0].mono < horizon:
                    stream.pieces.popleft()

    # -- reading ---------------------------------------------------------------------------------
    def messages(self, exchange: str, tables: Sequence[str]) -> int:
        """Messages stored so far for `exchange` in `tables`."""
        with self._lock:
            return sum(s.total for t in tables if (s := self._streams.get((exchange, t))) is not None)

    def streams(self) -> list[tuple[str, str]]:
        """Every (exchange, table) seen so far."""
        with self._lock:
            return sorted(self._streams)

    def channel(self, exchange: str, table: str) -> dict[str, Any]:
        """messages (total), messages_per_s (last `rate_window_s`), lag_p50_s / lag_p99_s / lag_max_s
        (last `window_s`), lag_samples, last_message_age_s (None before the first)."""
        now = self._clock.monotonic()
        with self._lock:
            stream = self._streams.get((exchange, table))
            if stream is None:
                pieces, total, last = [], 0, None
            else:
                pieces = [p for p in stream.pieces if p.mono >= now - self.window_s]
                total, last = stream.total, stream.last_mono
        recent = sum(p.messages for p in pieces if p.mono > now - self.rate_window_s)
        span = min(self.rate_window_s, now - self._since)
        lags = np.sort(np.concatenate([p.lags_ns for p in pieces])) if pieces else np.empty(0, np.int64)
        p50, p99 = nearest_rank(lags, 50), nearest_rank(lags, 99)
        return {
            "messages": total,
            "messages_per_s": recent / span if span > 0 else None,
            "lag_p50_s": None if p50 is None else p50 / 1e9,
            "lag_p99_s": None if p99 is None else p99 / 1e9,
            "lag_max_s": max(p.lag_max_ns for p in pieces) / 1e9 if pieces else None,
            "lag_samples": len(lags),
            "last_message_age_s": None if last is None else now - last,
        }

    def idle_s(self, key: Any, activity: int) -> float:
        """Seconds (by the clock) since `activity`, a count that grows while `key` (a feed) delivers,
        was last seen to change; 0 the first time a key is seen. Called by whoever reads health."""
        now = self._clock.monotonic()
        with self._lock:
            seen = self._activity.get(key)
            if seen is None or seen[0] != activity:
                self._activity[key] = (activity, now)
                return 0.0
            return now - seen[1]


@dataclass(frozen=True)
class FeedEntry:
    """One running feed: its label (unique in the lake), the channels it stores, its connection health."""

    name: str
    exchange: str
    channels: tuple[str, ...]
    health: "FeedHealth"


class HealthProbe:
    """Builds the health report of one lake from references to its parts (see the module docstring)."""

    def __init__(self, root: Path, *, clock: Clock, stats: HealthStats | None, buffers: Mapping[str, "LiveBuffer"],
                 files: Callable[[str], Sequence["FileEntry"]], memory: "MemoryGuard", flusher: "Flusher",
                 gaps: "GapLog", feeds: Callable[[], Sequence[FeedEntry]], collector: Callable[[], Mapping[str, Any]],
                 disk: DiskProbe = disk_usage, silent_s: float = 60.0) -> None:
        self.root = root
        self._clock = clock
        self.stats = stats
        self._buffers = buffers
        self._files = files
        self._memory = memory
        self._flusher = flusher
        self._gaps = gaps
        self._feeds = feeds
        self._collector = collector
        self.disk = disk
        self.silent_s = silent_s

    def report(self) -> dict[str, Any]:
        """The health dict (keys: at_ns, root, monitoring, collector, feeds, tables, memory, flush, gaps, disk)."""
        collector = dict(self._collector())
        # a connection task cancelled at stop may not have said so: no thread, no connection
        alive = collector.get("thread_alive", True)
        feeds = [self._feed(f, alive) for f in self._feeds()]
        return {
            "at_ns": self._clock.time_ns(),
            "root": str(self.root),
            "monitoring": self.stats is not None,
            "collector": collector,
            "feeds": feeds,
            "tables": self._tables(),
            "memory": self._memory_report(),
            "flush": self._flush(),
            "gaps": self._gap_counts(sum(1 for f in feeds if f["gap_open"])),
            "disk": self._disk(),
        }

    def _feed(self, feed: FeedEntry, alive: bool) -> dict[str, Any]:
        h = feed.health
        state = h.state if alive or h.state == "failed" else "stopped"
        channels = {c: self.stats.channel(feed.exchange, c) for c in feed.channels} if self.stats is not None else {}
        idle = None
        if self.stats is not None:
            idle = self.stats.idle_s(h, h.frames + self.stats.messages(feed.exchange, feed.channels))
        open_gap = None
        if state in ("reconnecting", "failed"):
            open_gap = state
        elif state != "stopped" and idle is not None and idle >= self.silent_s:
            open_gap = "silent"
        rates = [c["messages_per_s"] for c in channels.values() if c["messages_per_s"] is not None]
        lag_max = [c["lag_max_s"] for c in channels.values() if c["lag_max_s"] is not None]
        return {
            "feed": feed.name, "exchange": feed.exchange, "state": state, "channels": channels,
            "messages_per_s": sum(rates) if rates else None,
            "lag_p50_s": max((c["lag_p50_s"] for c in channels.values() if c["lag_p50_s"] is not None), default=None),
            "lag_max_s": max(lag_max) if lag_max else None,
            "idle_s": idle, "gap_open": open_gap,
            "frames": h.frames, "connections": h.connections, "reconnects": h.reconnects, "failures": h.failures,
            "watchdog_trips": h.watchdog_trips, "malformed": h.malformed, "last_error": h.last_error,
        }

    def _tables(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, buf in self._buffers.items():
            stats = buf.stats()
            files = self._files(name)
            out[name] = {"rows_buffered": stats["rows"], "bytes_buffered": stats["bytes"], "oldest_buffered_s": stats["age_s"],
                         "files": len(files), "bytes": sum(e.bytes for e in files), "rows": sum(e.rows for e in files)}
        return out

    def _memory_report(self) -> dict[str, Any]:
        m = self._memory.stats()
        limit = m["limit_bytes"]
        return {**m, "used_fraction": m["used_bytes"] / limit if limit else None}

    def _flush(self) -> dict[str, Any]:
        f = self._flusher
        times = sorted(f.latencies)
        return {"flushes": f.flushes, "rows": f.rows_flushed, "failures": f.failures, "last_error": f.last_error,
                "last_s": f.last_flush_s, "p50_s": nearest_rank(times, 50), "p99_s": nearest_rank(times, 99),
                "max_s": times[-1] if times else None, "kept": len(times)}

    def _gap_counts(self, open_now: int) -> dict[str, Any]:
        table = self._gaps.table()
        causes = {}
        if table.num_rows:
            causes = {r["values"]: r["counts"] for r in pc.value_counts(table.column("cause")).to_pylist()}
        return {"total": table.num_rows, "open": open_now, "by_cause": dict(sorted(causes.items()))}

    def _disk(self) -> dict[str, Any]:
        try:
            u = self.disk(self.root)
        except OSError as exc:
            log.warning("could not read the free space of %s: %s", self.root, exc)
            return {"path": str(self.root), "total_bytes": None, "free_bytes": None, "free_fraction": None,
                    "error": str(exc)}
        return {"path": str(self.root), "total_bytes": int(u.total), "free_bytes": int(u.free),
                "free_fraction": u.free / u.total if u.total else None, "error": None}


@dataclass(frozen=True)
class Monitoring:
    """What a lake watches and how it reports it: `Lake(..., monitoring=Monitoring(...))`.

    The configuration's `monitoring` section plugs in through `Monitoring.from_config`.
    `enabled=False` turns off the seal-time counters and the monitor thread (health still reports
    buffers, files, flushes, gaps and disk; rates, lag and silence need the counters).
    """

    enabled: bool = True
    interval_s: float = 1.0               # the monitor thread evaluates alerts this often
    rules: AlertRules = field(default_factory=AlertRules)
    webhook: str | None = None            # alerts POSTed as JSON to this URL
    show: bool = True                     # firing alerts shown in the notebook (HTML box or AlertWarning)
    window_s: float = WINDOW_S            # lag percentiles over this many seconds of sealed batches
    rate_window_s: float = RATE_WINDOW_S  # messages/s over this many seconds
    disk: DiskProbe = disk_usage          # free space of the root's filesystem (tests inject their own)
    metrics_port: int | None = None       # serve /metrics when the lake opens (0: any free port)
    metrics_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not isinstance(self.rules, AlertRules):
            raise ConfigError(f"rules must be an AlertRules, got {type(self.rules).__name__}")
        if not isinstance(self.interval_s, (int, float)) or isinstance(self.interval_s, bool) or self.interval_s <= 0:
            raise ConfigError(f"interval_s must be a positive number of seconds, got {self.interval_s!r}")
        if not callable(self.disk):
            raise ConfigError(f"disk must be a callable path -> usage, got {self.disk!r}")

    @classmethod
    def of(cls, value: "Monitoring | bool | Mapping[str, Any] | Any | None") -> "Monitoring":
        """None/True: the defaults; False: off; a Monitoring as is; else `from_config(value)`."""
        if value is None or value is True:
            return cls()
        if value is False:
            return cls(enabled=False)
        if isinstance(value, cls):
            return value
        return cls.from_config(value)

    @classmethod
    def from_config(cls, section: Any) -> "Monitoring":
        """From a configuration section (a mapping or an object with attributes): `enabled`,
        `interval_s`, `buffer_fraction`, `disk_free_bytes`, `silent_s`, `webhook`/`webhook_url`,
        `show`, `window_s`, `rate_window_s`, and `prometheus` with `enabled`, `host`, `port`.
        Absent keys keep their defaults."""

        def get(obj: Any, name: str, default: Any) -> Any:
            if isinstance(obj, Mapping):
                return obj.get(name, default)
            return getattr(obj, name, default)

        base, rules = cls(), AlertRules()
        alerts = get(section, "alerts", None) or section  # thresholds flat or in an `alerts` subsection
        prometheus = get(section, "prometheus", None)
        served = prometheus is not None and get(prometheus, "enabled", False)
        return cls(
            enabled=get(section, "enabled", base.enabled),
            interval_s=get(section, "interval_s", base.interval_s),
            rules=AlertRules(**{n: get(alerts, n, getattr(rules, n)) for n in ("buffer_fraction", "disk_free_bytes", "silent_s")}),
            webhook=get(alerts, "webhook", None) or get(alerts, "webhook_url", None) or get(section, "webhook_url", None),
            show=get(section, "show", base.show),
            window_s=get(section, "window_s", base.window_s),
            rate_window_s=get(section, "rate_window_s", base.rate_window_s),
            metrics_port=get(prometheus, "port", 0) if served else None,
            metrics_host=get(prometheus, "host", base.metrics_host) if served else base.metrics_host,
        )
