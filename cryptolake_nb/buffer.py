"""Thread-safe in-memory Arrow buffer for one table's live rows."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa

from .clock import Clock, SystemClock
from .crashpoints import crash_point
from .errors import SchemaError
from .pending import PendingRows
from .records import Converter, Reject

__all__ = ["LiveBuffer", "Sealed"]

log = logging.getLogger(__name__)

SEAL_ROWS = 10_000  # a burst is sealed in pieces of about this many rows (short seal-lock holds)
MAX_PENDING = 2 * SEAL_ROWS  # the bounded queue: past this the producer seals itself (backpressure)
EST_PENDING_ROW_BYTES = 400  # a cryptofeed object (or its fields) with its Decimals, before conversion
MERGE_RUN = 16  # this many small sealed batches in a row are merged into one (see `consolidate`)


@dataclass(frozen=True)
class Sealed:
    """An immutable batch of converted rows with its place in arrival order."""

    seq: int
    batch: pa.RecordBatch
    since: float  # monotonic time the oldest row of the batch arrived
    jseqs: tuple[int, ...] = ()  # the journal entries holding its rows; () when not journaled
    # what readers derive from `batch` once and keep as long as the batch is buffered (keyed.py)
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


class LiveBuffer:
    """Objects appended by callbacks; sealed into Arrow batches on read or flush.

    The callback path takes no lock and only appends (pending.py). Sealing converts the pending
    objects in one batch (cheap per row) under a seal lock that every reader of sealed batches also
    takes, so a reader never sees rows between "pending" and "sealed".
    """

    def __init__(
        self,
        table: str,
        schema: pa.Schema,
        converter: Converter,
        on_rejects: Callable[[list[Reject]], None],
        *,
        clock: Clock | None = None,
        wake_rows: int = 0,
        on_wake: Callable[[], None] | None = None,
        on_sealed: Callable[[str, pa.RecordBatch], None] | None = None,
        journal: Callable[[str, pa.RecordBatch], int] | None = None,
        dedup: Callable[[str, pa.RecordBatch], pa.RecordBatch] | None = None,
        fields: tuple[str, ...] = (),
    ) -> None:
        self._dedup = dedup  # drops rows whose natural key is already stored
        self._on_sealed = on_sealed
        self._journal = journal  # appends a sealed batch to the journal: it then counts as received
        self.journal_error: str | None = None
        self.table = table
        self.schema = schema
        self._convert = converter
        self._on_rejects = on_rejects
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._seal_lock = threading.RLock()
        # cryptofeed objects (or their `fields`) with their receipt timestamps, in arrival order
        self._pending = PendingRows(fields, self._on_count)
        # append(obj, receipt_ts): add one cryptofeed object (the hot path: no lock, no conversion)
        self.append: Callable[[Any, float], None] = self._pending.appender()
        self._sealed: list[Sealed] = []
        self._sealed_rows = 0
        self._sealed_bytes = 0
        self._next_seq = 0
        self._pending_since: float | None = None
        self._wake_rows = wake_rows
        self._on_wake = on_wake
        self._bulk = 0  # rows added already converted (append_batch, restore)

    def appender(self) -> Callable[[Any, float], None]:
        """A function `(obj, receipt_ts)` adding one cryptofeed object: what a callback holds."""
        return self._pending.appender()

    @property
    def appended(self) -> int:
        """Rows received: objects appended plus rows added already converted."""
        with self._lock:
            return self._received()

    def _received(self) -> int:  # under `_lock`
        return self._pending.taken + len(self._pending) + self._bulk

    def _on_count(self) -> None:
        """The appenders' slow path, run when the pending count reaches `check_at` (not per row)."""
        with self._lock:
            n = len(self._pending)
            if n and self._pending_since is None:
                self._pending_since = self._clock.monotonic()
            # wake the flusher at max_rows, and every SEAL_ROWS pending objects so seals stay small
            wake = n >= SEAL_ROWS or bool(self._wake_rows and n + self._sealed_rows >= self._wake_rows)
            self._arm()
        if n >= MAX_PENDING:
            # the flusher is not keeping up: convert here, which slows the feed (backpressure on the
            # socket) instead of letting unconverted objects grow memory and every query's seal
            self.seal()
        elif wake and self._on_wake is not None:
            self._on_wake()

    def _arm(self) -> None:
        """Set the pending count at which an appender next runs `_on_count` (under `_lock`): the first
        row (its arrival time), the next multiple of SEAL_ROWS, the flush size, MAX_PENDING."""
        n = len(self._pending)
        at = 1
        if n:
            at = min((n // SEAL_ROWS + 1) * SEAL_ROWS, max(MAX_PENDING, n + 1))
            if self._wake_rows and self._wake_rows - self._sealed_rows > n:
                at = min(at, self._wake_rows - self._sealed_rows)
        self._pending.check_at[0] = at

    def append_batch(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Add rows that are already in the table's Arrow schema (bulk loads, backfills)."""
        if not batch.schema.equals(self.schema, check_metadata=False):
            raise SchemaError(f"{self.table}: expected schema {self.schema.names} with types "
                              f"{[str(t) for t in self.schema.types]}, got {batch.schema}")
        batches = batch.to_batches() if isinstance(batch, pa.Table) else [batch]
        with self._seal_lock:
            self.seal()  # keeps arrival order: pending objects came first
            for b in batches:
                with self._lock:
                    self._bulk += b.num_rows
                b = self._deduped(b)
                if b.num_rows:
                    self._add_sealed(b, self._journaled(b))

    def restore(self, batch: pa.RecordBatch, jseq: int, *, reload: bool = False) -> None:
        """Put back a batch recovered from the journal (already journaled as `jseq`); `reload`: a
        batch this process spilled earlier (already counted and deduplicated)."""
        with self._seal_lock:
            if reload:
                self._add_sealed(batch, jseq)
                return
            with self._lock:
                self._bulk += batch.num_rows
            self._add_sealed(self._deduped(batch), jseq)

    def spill(self, *, journaled: bool = True) -> list[Sealed]:
        """Take sealed batches out of memory: those in the journal (`journaled`), else the others
        (the last resort: those rows are then gone). Returns what was taken."""
        with self._seal_lock:
            with self._lock:
                taken = [s for s in self._sealed if bool(s.jseqs) == journaled]
                if taken:
                    gone = {s.seq for s in taken}
                    self._sealed = [s for s in self._sealed if s.seq not in gone]
                    self._sealed_rows = sum(s.batch.num_rows for s in self._sealed)
                    self._sealed_bytes = sum(s.batch.nbytes for s in self._sealed)
        return taken

    def _add_sealed(self, batch: pa.RecordBatch, jseq: int | None) -> None:
        with self._lock:
            self._sealed.append(Sealed(self._next_seq, batch, self._clock.monotonic(), _entries(jseq)))
            self._next_seq += 1
            self._sealed_rows += batch.num_rows
            self._sealed_bytes += batch.nbytes
            self._arm()
        if self._wake_rows and self._sealed_rows >= self._wake_rows and self._on_wake is not None:
            self._on_wake()

    def _deduped(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch if self._dedup is None or not batch.num_rows else self._dedup(self.table, batch)

    def _journaled(self, batch: pa.RecordBatch) -> int | None:
        """Journal a sealed batch; on failure keep it in memory only and say so (never lose it)."""
        if self._journal is None:
            return None
        try:
            jseq = self._journal(self.table, batch)
            crash_point("journal_appended")
            self.journal_error = None
            return jseq
        except Exception as exc:
            if self.journal_error is None:
                log.error("%s: journal append failed, rows kept in memory only until the next flush: %s", self.table, str(exc))
            self.journal_error = str(exc)
            return None

    def seal(self) -> None:
        """Convert pending objects into one sealed batch (rejects go to `on_rejects`)."""
        with self._seal_lock:
            with self._lock:
                items, receipts = self._pending.take()
                since = self._pending_since
                # rows appended while this ran are after the taken ones: they arrived about now
                self._pending_since = self._clock.monotonic() if len(self._pending) else None
                self._arm()
            if not items:
                return
            if since is None:  # taken before their appender's first-row path recorded the time
                since = self._clock.monotonic()
            try:
                converted = self._convert(items, receipts)
            except Exception:  # a converter bug must not lose the objects
                with self._lock:
                    self._pending.put_back(items, receipts)
                    self._pending_since = since
                    self._arm()
                raise
            batch = self._deduped(converted.batch)
            jseq = self._journaled(batch) if batch.num_rows else None
            with self._lock:
                if batch.num_rows:
                    self._sealed.append(Sealed(self._next_seq, batch, since, _entries(jseq)))
                    self._next_seq += 1
                    self._sealed_rows += batch.num_rows
                    self._sealed_bytes += batch.nbytes
                    self._arm()
            if converted.rejects:
                self._on_rejects(converted.rejects)
            if self._on_sealed is not None and batch.num_rows:
                self._on_sealed(self.table, batch)

    def snapshot(self) -> list[Sealed]:
        """Every buffered row, as immutable sealed batches (seals what is pending first)."""
        with self._seal_lock:
            self.seal()
            with self._lock:
                return list(self._sealed)

    def snapshot_table(self) -> pa.Table:
        """The buffered rows as one Arrow table with the table's schema."""
        return pa.Table.from_batches([s.batch for s in self.snapshot()], schema=self.schema)

    def consolidate(self, min_run: int = MERGE_RUN) -> int:
        """Merge each run of `min_run` or more small sealed batches (journaled alike) into one batch.

        Queries seal what is pending each time they run, so a busy buffer collects thousands of
        small batches between flushes; every query hands them all to DuckDB, whose per-batch cost
        then dominates a small query. Only the flusher calls this, between flushes: a merged batch
        gets a new `seq`, which an in-flight flush (that would `drop` the old ones) must not see.
        Returns the number of batches merged away."""
        with self._lock:
            sealed = list(self._sealed)
        runs, run = [], []
        for s in sealed:
            if s.batch.num_rows < SEAL_ROWS and (not run or bool(run[0].jseqs) == bool(s.jseqs)):
                run.append(s)
                continue
            runs.append(run)
            run = [s] if s.batch.num_rows < SEAL_ROWS else []
        runs.append(run)
        merged = {id(r[0]): (r, pa.concat_batches([s.batch for s in r])) for r in runs if len(r) >= max(min_run, 2)}
        if not merged:
            return 0
        gone = 0
        with self._lock:
            present = {id(s) for s in self._sealed}
            out, skip = [], set()
            for s in self._sealed:
                if id(s) in skip:
                    continue
                found = merged.get(id(s))
                if found is not None and all(id(x) in present for x in found[0]):
                    run, batch = found
                    out.append(Sealed(self._next_seq, batch, min(x.since for x in run),
                                      tuple(j for x in run for j in x.jseqs)))
                    self._next_seq += 1
                    skip.update(id(x) for x in run[1:])
                    gone += len(run) - 1
                else:
                    out.append(s)
            self._sealed = out
            self._sealed_bytes = sum(s.batch.nbytes for s in out)
        return gone

    def drop(self, seqs: set[int]) -> None:
        """Remove sealed batches once their rows are committed to history."""
        with self._lock:
            kept = [s for s in self._sealed if s.seq not in seqs]
            self._sealed = kept
            self._sealed_rows = sum(s.batch.num_rows for s in kept)
            self._sealed_bytes = sum(s.batch.nbytes for s in kept)

    @property
    def seal_lock(self) -> threading.RLock:
        """Held while sealing; hold it to read several buffers at one instant."""
        return self._seal_lock

    def stats(self) -> dict[str, Any]:
        """Rows and approximate bytes held, and the age of the oldest unflushed row."""
        with self._lock:
            pending = len(self._pending)
            times = [s.since for s in self._sealed[:1]]
            if self._pending_since is not None:
                times.append(self._pending_since)
            age = self._clock.monotonic() - min(times) if times else None
            return {
                "rows": pending + self._sealed_rows,
                "bytes": pending * EST_PENDING_ROW_BYTES + self._sealed_bytes,
                "age_s": age,
                "appended": self._received(),
            }


def _entries(jseq: int | None) -> tuple[int, ...]:
    return () if jseq is None else (jseq,)
