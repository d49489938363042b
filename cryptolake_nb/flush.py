"""When to flush (rows, bytes, age) and the flush protocol: buffer -> Parquet -> manifest -> drop."""
from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import pyarrow as pa

from .buffer import LiveBuffer, Sealed
from .clock import Clock, SystemClock
from .crashpoints import crash_point
from .errors import ConfigError, StorageError
from .manifest import FileEntry, Manifest
from .sink import ParquetSink
from .tables import FlushTransform

__all__ = ["FlushPolicy", "Flusher"]

log = logging.getLogger(__name__)

FLUSH_ROWS = 131_072  # rows committed per step of a flush (bounds its working copy; files stay large)
LATENCIES = 256  # flush durations kept for the health report's percentiles


@dataclass(frozen=True)
class FlushPolicy:
    """Flush a table's buffer once it holds `max_rows` rows, `max_bytes` bytes or rows older than `flush_interval` s."""

    max_rows: int = 500_000
    max_bytes: int = 256 * 2**20
    flush_interval: float = 10.0

    def __post_init__(self) -> None:
        for name in ("max_rows", "max_bytes", "flush_interval"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive number, got {value!r}")

    def due(self, stats: Mapping[str, object]) -> str | None:
        """Why a buffer with these stats must flush now, or None."""
        if stats["rows"] >= self.max_rows:
            return "rows"
        if stats["bytes"] >= self.max_bytes:
            return "bytes"
        age = stats["age_s"]
        if age is not None and age >= self.flush_interval:
            return "age"
        return None


class Flusher:
    """Moves sealed batches into committed Parquet files; optionally on a background thread.

    Commit protocol: write files (temp -> fsync -> rename -> fsync dir), then, under the lake's
    commit lock, append them to the manifest and drop the batches from the buffer in one step.
    A reader that takes the same lock sees each row in exactly one of history or buffer.
    """

    def __init__(
        self,
        buffers: Mapping[str, LiveBuffer],
        sink: ParquetSink,
        manifest: Manifest,
        commit_lock: threading.RLock,
        policy: FlushPolicy,
        *,
        clock: Clock | None = None,
        on_error: Callable[[Exception], None] | None = None,
        transforms: Mapping[str, FlushTransform] | None = None,
    ) -> None:
        self._transforms = dict(transforms or {})
        self._buffers = buffers
        self._sink = sink
        self._manifest = manifest
        self._commit_lock = commit_lock
        self.policy = policy
        self._clock = clock or SystemClock()
        self._on_error = on_error
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.flushes = 0
        self.rows_flushed = 0
        self.last_error: str | None = None
        self.last_flush_s: float | None = None
        self.latencies: collections.deque[float] = collections.deque(maxlen=LATENCIES)  # s per committed group
        self.failures = 0  # background rounds that failed (health, alerts)
        self.release: Callable[[list[int]], object] | None = None  # journal entries now in Parquet
        self.guard: Any = None  # a MemoryGuard: early flush at the cap, spill/drop when storage fails
        self.after_flush: Callable[[list[str]], None] | None = None  # background work after a flush
        self.max_backoff = 2.0  # seconds between retries while storage fails: resume soon after it heals

    def flush(self, tables: list[str] | None = None) -> list[FileEntry]:
        """Flush the named tables (all by default) now; return the files committed."""
        committed: list[FileEntry] = []
        with self._flush_lock:
            for name in tables or list(self._buffers):
                committed += self._flush_table(name)
        return committed

    def _flush_table(self, name: str) -> list[FileEntry]:
        """Commit everything `name` holds, in groups of at most FLUSH_ROWS rows: the flush's working
        copy (rows sorted for the file) stays bounded however much the buffer holds."""
        buffer = self._buffers[name]
        sealed = buffer.snapshot()
        committed: list[FileEntry] = []
        group: list[Sealed] = []
        rows = 0
        for s in sealed:
            if group and rows + s.batch.num_rows > FLUSH_ROWS:
                committed += self._commit_group(name, buffer, group)
                group, rows = [], 0
            group.append(s)
            rows += s.batch.num_rows
        if group:
            committed += self._commit_group(name, buffer, group)
        return committed

    def _commit_group(self, name: str, buffer: LiveBuffer, sealed: list[Sealed]) -> list[FileEntry]:
        started = self._clock.monotonic()
        rows = pa.Table.from_batches([s.batch for s in sealed], schema=buffer.schema)
        entries = self._sink.write(name, rows, self._manifest.seq + 1, self._transforms.get(name))
        try:
            jseqs = [j for s in sealed for j in s.jseqs]
            with self._commit_lock:
                self._manifest.commit(entries, journal=jseqs)
                crash_point("manifest_committed")
                buffer.drop({s.seq for s in sealed})
                crash_point("dropped")
        except StorageError:
            self._sink.discard(entries)  # never committed: rows are still in the buffer
            raise
        if jseqs and self.release is not None:
            try:
                self.release(jseqs)  # the journal may now forget them
                crash_point("journal_released")
            except Exception:  # the commit stands; unreleased entries are skipped on recovery
                log.exception("could not release %d journal entries", len(jseqs))
        self.flushes += 1
        self.rows_flushed += rows.num_rows
        self.last_flush_s = self._clock.monotonic() - started
        self.latencies.append(self.last_flush_s)
        log.debug("flushed %d %s rows into %d files", rows.num_rows, name, len(entries))
        return entries

    def due(self) -> list[str]:
        """Tables whose buffers the policy says must flush now."""
        return [name for name, buf in self._buffers.items() if self.policy.due(buf.stats())]

    def wake(self) -> None:
        """Ask the background thread to look at the buffers now."""
        self._wake.set()

    def start(self, poll: float = 0.25) -> None:
        """Run the policy on a daemon thread until `stop()`."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(poll,), name="cryptolake-flusher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _relieve(self) -> None:
        """The memory guard's spill/drop, never between a flush's snapshot and its drop (a `lake.flush()`
        on another thread would commit rows the guard also takes out and records as dropped)."""
        if self.guard is not None:
            with self._flush_lock:
                self.guard.relieve()

    def _run(self, poll: float) -> None:
        backoff = poll
        retry_at = 0.0  # while storage fails, flushes wait for this (sealing does not)
        while not self._stop.is_set():
            self._wake.wait(poll)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                for buf in self._buffers.values():
                    buf.seal()  # journal what arrived: a kill -9 then loses at most one poll of rows
                    with self._flush_lock:  # no flush between its snapshot and its drop (see consolidate)
                        buf.consolidate()
                if self._clock.monotonic() < retry_at:
                    self._relieve()
                    continue
                due = self.due()
                if self.guard is not None and self.guard.over():
                    due = list(self._buffers)  # at the memory cap: flush everything now
                if due:
                    self.flush(due)
                    if self.after_flush is not None:
                        self.after_flush(due)
                if self.guard is not None and self.guard.reload():
                    self._wake.set()  # reloaded rows: flush them on the next round
                self.last_error = None
                backoff, retry_at = poll, 0.0
            except (StorageError, OSError) as exc:
                self.last_error = str(exc)
                self.failures += 1
                backoff = min(max(backoff * 2, poll), self.max_backoff)
                retry_at = self._clock.monotonic() + backoff
                log.error("flush failed, rows stay in the buffer; retrying in %.1f s: %s", backoff, str(exc))  # str: a kept record must not pin the rows
                self._relieve()
                if self._on_error is not None:
                    self._on_error(exc)
            except Exception as exc:  # never let the flusher die silently
                self.last_error = repr(exc)
                self.failures += 1
                log.exception("unexpected error in the flusher")
                backoff = min(max(backoff * 2, poll), self.max_backoff)
                retry_at = self._clock.monotonic() + backoff
