"""Write-ahead journal of sealed batches (the tickerplant log): checksummed Arrow IPC frames.

On disk, in `directory`:

    journal-<first seq, 20 digits>.jrnl   segments: frames back to back, append-only
    checkpoint                             `<crc32 hex> <json>`: what is settled (released or set aside)
    journal.lock                           flock: one writer per journal directory
    quarantine/                            damaged tails and segments set aside by recovery, never read

Frames (one Arrow IPC stream per entry, checksummed): see journal_frames.py.

Guarantees:
- `append` returns after one `writev` of the whole frame (BATCH: survives kill -9 of the process),
  plus `fdatasync` and a directory fsync per new segment (STRICT: survives power loss). A failed
  write raises `JournalError`, does not use up the seq, and its partial frame is cut at once (or, if
  even that fails, before any later append, or by recovery as a torn frame).
- `recover` returns the unreleased entries of a gap-free run of sequence numbers (gaps only where
  seqs are settled), in seq order. It stops at the first entry it cannot prove intact: torn,
  zero-filled, bit-flipped, out of sequence, or missing segment. That holds in a middle segment too:
  everything after the damage (rest of that segment, later segments) is moved to `quarantine/` when
  it holds any complete entry, and cut when it is only a torn write; later entries are never replayed
  past a hole. `last_recovery` says what was cut. New entries get seqs above every seq ever seen.
- Released seqs are persisted in `checkpoint` (atomic replace, fsynced) before any segment is deleted,
  so recovery never returns them. Rows committed to Parquet but not yet released when the process
  died are returned again (at-least-once): the caller records journal seqs with its commit to dedupe.
  An unreadable checkpoint is set aside and reported (`checkpoint_lost`): everything on disk replays.
"""
from __future__ import annotations

import bisect
import enum
import fcntl
import json
import logging
import os
import re
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pyarrow as pa

from .fsutil import fsync_dir
from .errors import ConfigError, JournalError
from .journal_frames import (
    CRC, END_MAGIC, HEAD, HEADER_SIZE, MAGIC, MAX_NAME, TRAIL, Ranges, check_frame, frame_size, pad8, salvage,
    serialize, write_all,
)

__all__ = ["Durability", "Journal", "JournalEntry", "RecoveryReport"]

log = logging.getLogger(__name__)
SEGMENT_RE = re.compile(r"journal-(\d{20})\.jrnl")
CHECKPOINT, LOCK, QUARANTINE = "checkpoint", "journal.lock", "quarantine"


class Durability(enum.Enum):
    """What an acknowledged append survives."""

    NONE = "none"  # no journal: nothing written, nothing recovered
    BATCH = "batch"  # written to the OS before append returns: survives kill -9 of the process
    STRICT = "strict"  # also fdatasync per entry: survives power loss


@dataclass(frozen=True)
class JournalEntry:
    """One recovered entry: a batch of one table with its journal sequence number."""

    seq: int
    table: str
    batch: pa.RecordBatch


@dataclass(frozen=True)
class RecoveryReport:
    """What the last recovery found and what it had to cut."""

    entries: int  # unreleased entries returned
    released: int  # entries still on disk but already settled, not returned
    segments: int  # live segments after recovery
    next_seq: int
    damage: str | None = None  # why reading stopped early (None: the journal was intact)
    segment: str | None = None  # file where it stopped
    offset: int | None = None  # byte offset of the first bad frame in that file
    bytes_cut: int = 0  # bytes removed from the live journal (torn tail, set-aside material)
    partial_frame: bool = False  # unreadable bytes at the cut (torn/corrupt entry or zero fill): any entry
    #                              they held is lost, and whether it had been acknowledged is not known
    entries_set_aside: int = 0  # complete, valid entries after the damage, kept in quarantine, not returned
    lost_seqs: tuple[int, int] | None = None  # seq range used before that recovery will never replay
    quarantined: tuple[str, ...] = ()
    checkpoint_lost: bool = False  # the checkpoint was unreadable: released entries may come back

    def describe(self) -> str:
        head = f"{self.entries} entries recovered ({self.released} already released)"
        if self.damage is None and not self.checkpoint_lost:
            return head + ", journal intact"
        parts = [head]
        if self.damage:
            parts.append(f"stopped at {self.segment} byte {self.offset}: {self.damage}; {self.bytes_cut} bytes cut")
        if self.partial_frame:
            parts.append("unreadable bytes at the cut dropped (a torn or corrupt entry, or zero fill)")
        if self.entries_set_aside:
            parts.append(f"{self.entries_set_aside} complete entries set aside in {', '.join(self.quarantined)}")
        if self.lost_seqs:
            parts.append(f"seqs {self.lost_seqs[0]}..{self.lost_seqs[1]} will not be replayed")
        if self.checkpoint_lost:
            parts.append("checkpoint unreadable: released entries may be returned again")
        return "; ".join(parts)


@dataclass
class _Segment:
    first: int
    path: Path
    size: int = 0
    last: int = 0  # first - 1 while empty
    unreleased: int = 0



class Journal:
    """Append sealed batches durably; replay the unreleased ones after a restart.

    Thread-safe. Call `recover()` first after opening (an `append` before it recovers implicitly and
    leaves the found entries on disk for a later `recover()`). Under `Durability.NONE` nothing touches
    the disk: `append` only numbers entries and `recover` returns nothing.
    """

    def __init__(self, directory: Path | str, *, durability: Durability = Durability.BATCH,
                 segment_bytes: int = 64 * 2**20) -> None:
        if segment_bytes <= 0:
            raise ConfigError(f"segment_bytes must be positive, got {segment_bytes}")
        self.directory = Path(directory)
        self.durability = Durability(durability)
        self.segment_bytes = segment_bytes
        self.last_recovery: RecoveryReport | None = None
        self._lock = threading.RLock()
        self._segments: list[_Segment] = []
        self._fd: int | None = None  # open on the last segment while it takes appends
        self._next_seq = 1
        self._floor = 0  # every seq <= floor is settled
        self._settled = Ranges()  # settled seqs above the floor: released, or set aside by recovery
        self._persisted: tuple = (0, [])  # (floor, settled) as last written to the checkpoint
        self._unreleased: dict[int, int] = {}  # seq -> rows, for entries in live segments
        self._at: dict[int, tuple[Path, int, int]] = {}  # seq -> (segment, offset, frame size) of unreleased entries
        self._pending_cut: tuple[_Segment, int] | None = None  # a failed write's partial frame
        self._unsynced: set[Path] = set()  # segments appended to in BATCH mode: synced by close()
        self._opened = self._closed = False
        self._lock_fd: int | None = None
        if self.durability is Durability.NONE:
            self._opened = True
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JournalError(f"cannot open the journal at {self.directory}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalError(f"the journal at {self.directory} is open in another writer") from None
        self._lock_fd = fd

    # -- appending -------------------------------------------------------------------------------

    def append(self, table: str, batch: pa.RecordBatch) -> int:
        """Journal `batch` of `table`; return its sequence number once it is as durable as promised."""
        if not isinstance(batch, pa.RecordBatch):
            raise ConfigError(f"journal entries are pyarrow RecordBatches, got {type(batch).__name__}")
        name = table.encode("utf-8")
        if not 0 < len(name) <= MAX_NAME:
            raise ConfigError(f"table name must be 1..{MAX_NAME} bytes of UTF-8, got {table!r}")
        if self.durability is Durability.NONE:
            with self._lock:
                if self._closed:
                    raise JournalError(f"the journal at {self.directory} is closed")
                seq, self._next_seq = self._next_seq, self._next_seq + 1
                return seq
        body = serialize(batch)  # outside the lock: the expensive part, and order-independent
        body_pad = b"\0" * (pad8(body.size) - body.size)
        body_crc = zlib.crc32(body_pad, zlib.crc32(body))
        name_part = name + b"\0" * (pad8(len(name)) - len(name))
        size = frame_size(len(name), body.size)
        with self._lock:
            self._usable()
            seq = self._next_seq
            head = HEAD.pack(MAGIC, len(name), 0, seq, batch.num_rows, body.size, 0)
            head_name = head + CRC.pack(zlib.crc32(head)) + name_part
            trailer = TRAIL.pack(zlib.crc32(head_name, body_crc), END_MAGIC)
            seg = self._writable_segment(seq, size)
            try:
                write_all(self._fd, [head_name, body, body_pad, trailer])
                if self.durability is Durability.STRICT:
                    os.fdatasync(self._fd)
            except OSError as exc:
                self._cut_failed_write(seg)
                raise JournalError(f"could not journal entry {seq} ({table}) in {seg.path.name}: {exc}") from exc
            if self.durability is Durability.BATCH:
                self._unsynced.add(seg.path)
            self._at[seq] = (seg.path, seg.size, size)
            seg.size += size
            seg.last = seq
            seg.unreleased += 1
            self._unreleased[seq] = batch.num_rows
            self._next_seq = seq + 1
            return seq

    def _usable(self) -> None:
        if self._closed:
            raise JournalError(f"the journal at {self.directory} is closed")
        if not self._opened:
            self._scan(decode=False)
        if self._pending_cut is not None:
            seg, size = self._pending_cut
            try:
                os.truncate(seg.path, size)
            except OSError as exc:
                raise JournalError(f"cannot cut the partial entry off {seg.path.name}: {exc}") from exc
            self._pending_cut = None

    def _writable_segment(self, seq: int, size: int) -> _Segment:
        seg = self._segments[-1] if self._segments else None
        if seg is not None and seg.last == seq - 1 and (seg.size == 0 or seg.size + size <= self.segment_bytes):
            if self._fd is None:
                self._fd = self._open_fd(seg.path, os.O_WRONLY | os.O_APPEND)
            return seg
        self._close_fd()
        seg = _Segment(seq, self.directory / f"journal-{seq:020d}.jrnl", last=seq - 1)
        self._fd = self._open_fd(seg.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL)
        self._segments.append(seg)
        if self.durability is Durability.STRICT:
            self._sync_dir()
        return seg

    def _open_fd(self, path: Path, flags: int) -> int:
        try:
            return os.open(path, flags, 0o644)
        except OSError as exc:
            raise JournalError(f"cannot open journal segment {path}: {exc}") from exc

    def _sync_dir(self) -> None:
        try:
            fsync_dir(self.directory)
        except OSError as exc:
            raise JournalError(f"cannot sync the journal directory {self.directory}: {exc}") from exc

    def _cut_failed_write(self, seg: _Segment) -> None:
        try:
            os.ftruncate(self._fd, seg.size)
        except OSError:
            log.error("journal %s: could not cut a failed write at byte %d; retried before the next append",
                      seg.path.name, seg.size)
            self._pending_cut = (seg, seg.size)

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    # -- releasing -------------------------------------------------------------------------------

    def release_through(self, seq: int) -> int:
        """Every entry up to `seq` is committed downstream; return how many segments were deleted."""
        with self._lock:
            self._check_release(seq)
            if seq <= self._floor or self.durability is Durability.NONE:
                return 0
            self._settled.add(self._floor + 1, seq)
            for s in [s for s in self._unreleased if s <= seq]:
                self._drop_unreleased(s)
            return self._retire()

    def release(self, seqs: Iterable[int]) -> int:
        """These entries are committed downstream; return how many segments were deleted."""
        seqs = sorted(set(seqs))
        with self._lock:
            if not seqs:
                return 0
            self._check_release(seqs[-1])
            if seqs[0] < 1:
                raise ConfigError(f"journal sequence numbers start at 1, got {seqs[0]}")
            if self.durability is Durability.NONE:
                return 0
            for s in seqs:
                self._settled.add(s, s)
                if s in self._unreleased:
                    self._drop_unreleased(s)
            return self._retire()

    def _check_release(self, seq: int) -> None:
        if self._closed:
            raise JournalError(f"the journal at {self.directory} is closed")
        if not self._opened:
            self._scan(decode=False)
        if seq >= self._next_seq:
            raise ConfigError(f"cannot release entry {seq}: the journal has only appended up to {self._next_seq - 1}")

    def _drop_unreleased(self, seq: int) -> None:
        del self._unreleased[seq]
        self._at.pop(seq, None)
        i = bisect.bisect_right([s.first for s in self._segments], seq) - 1
        self._segments[i].unreleased -= 1

    def _retire(self) -> int:
        """Persist what is settled, then delete segments with nothing unreleased (in that order)."""
        done = [s for s in self._segments if s.unreleased == 0]
        keep = [s for s in self._segments if s.unreleased > 0]
        self._floor = max(self._floor, (keep[0].first if keep else self._next_seq) - 1)
        self._settled.prune(self._floor)
        self._write_checkpoint()
        if done and self._segments[-1] in done:
            self._close_fd()
        for seg in done:
            try:
                seg.path.unlink(missing_ok=True)
            except OSError as exc:  # harmless: its seqs are settled, the next recovery deletes it
                log.warning("journal: could not delete released segment %s: %s", seg.path.name, exc)
        self._segments = keep
        return len(done)

    def _write_checkpoint(self) -> None:
        state = (self._floor, self._settled.pairs())
        if state == self._persisted:
            return
        body = json.dumps({"floor": self._floor, "next_seq": self._next_seq, "settled": self._settled.pairs()},
                          separators=(",", ":"))
        data = f"{zlib.crc32(body.encode()):08x} {body}\n".encode()
        path, tmp = self.directory / CHECKPOINT, self.directory / (CHECKPOINT + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            fsync_dir(self.directory)
        except OSError as exc:
            raise JournalError(f"could not write the journal checkpoint {path}: {exc}") from exc
        self._persisted = state

    def _read_checkpoint(self) -> bool:
        """Load floor, next seq and settled ranges; False if the checkpoint was unreadable."""
        self._floor, self._settled, self._next_seq, self._persisted = 0, Ranges(), 1, (0, [])
        path = self.directory / CHECKPOINT
        (self.directory / (CHECKPOINT + ".tmp")).unlink(missing_ok=True)
        if not path.exists():
            return True
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise JournalError(f"cannot read the journal checkpoint {path}: {exc}") from exc
        crc, _, body = raw.rstrip(b"\n").partition(b" ")
        try:
            if not raw.endswith(b"\n") or int(crc, 16) != zlib.crc32(body):
                raise ValueError("checksum mismatch")
            doc = json.loads(body)
            self._floor, self._next_seq = int(doc["floor"]), int(doc["next_seq"])
            self._settled = Ranges((int(a), int(b)) for a, b in doc["settled"])
            self._persisted = (self._floor, self._settled.pairs())
        except (ValueError, KeyError, TypeError) as exc:
            self._floor, self._settled, self._next_seq = 0, Ranges(), 1
            kept = self._quarantine_file(path)
            log.error("journal %s: checkpoint unreadable (%s), moved to %s; released entries may be replayed",
                      self.directory, exc, kept)
            return False
        return True

    def _settled_range(self, lo: int, hi: int) -> bool:
        lo = max(lo, self._floor + 1)
        return lo > hi or self._settled.covers(lo, hi)

    # -- recovering ------------------------------------------------------------------------------

    def recover(self) -> list[JournalEntry]:
        """Every unreleased intact entry, in seq order; damage is cut or set aside (see `last_recovery`)."""
        with self._lock:
            if self._closed:
                raise JournalError(f"the journal at {self.directory} is closed")
            if self.durability is Durability.NONE:
                self.last_recovery = RecoveryReport(0, 0, 0, self._next_seq)
                return []
            return self._scan(decode=True)

    def _scan(self, *, decode: bool) -> list[JournalEntry]:
        self._close_fd()
        self._pending_cut = None  # a partial frame left by a failed write is a torn frame: cut below
        checkpoint_ok = self._read_checkpoint()
        try:
            paths = sorted((int(m.group(1)), p) for p in self.directory.iterdir()
                           if (m := SEGMENT_RE.fullmatch(p.name)))
        except OSError as exc:
            raise JournalError(f"cannot list the journal at {self.directory}: {exc}") from exc
        entries: list[JournalEntry] = []
        self._segments, self._unreleased, self._at = [], {}, {}
        prev_end, released, stop = self._floor, 0, None  # the last seq known to be accounted for
        for i, (first, path) in enumerate(paths):
            if self._segments and first <= self._segments[-1].last:
                stop = (i, None, 0, f"segment starts at seq {first}, not after {self._segments[-1].last}")
            elif first > prev_end + 1 and not self._settled_range(prev_end + 1, first - 1):
                stop = (i, None, 0, f"entries {prev_end + 1}..{first - 1} are in no segment")
            if stop:
                break
            data = self._read(path)
            seg, pos, view = _Segment(first, path, last=first - 1), 0, memoryview(data)
            buf = pa.py_buffer(data) if decode else None
            while pos < len(data):
                frame, why = check_frame(view, pos)
                if frame is not None and frame[0] != seg.last + 1:
                    frame, why = None, f"entry seq {frame[0]} where {seg.last + 1} was expected"
                if frame is None:
                    stop = (i, data, pos, why)
                    break
                seq, rows, name_len, body_len, size = frame
                if seq <= self._floor or self._settled.covers(seq, seq):
                    released += 1
                else:
                    if decode:
                        entries.append(self._decode(path, buf, pos, seq, rows, name_len, body_len))
                    self._unreleased[seq] = rows
                    self._at[seq] = (path, pos, size)
                    seg.unreleased += 1
                seg.size, seg.last, pos = pos + size, seq, pos + size
            self._segments.append(seg)
            prev_end = max(prev_end, seg.last)
            if stop:
                break
        report = self._repair(paths, stop, prev_end, checkpoint_ok)
        self._opened = True
        self.last_recovery = RecoveryReport(len(entries), released, len(self._segments), self._next_seq, **report)
        if report:
            level = logging.ERROR if report.get("entries_set_aside") or report.get("lost_seqs") else logging.WARNING
            log.log(level, "journal %s: %s", self.directory, self.last_recovery.describe())
        return entries

    def read(self, seqs: Iterable[int]) -> list[JournalEntry]:
        """The entries with these sequence numbers, still on disk and unreleased (e.g. rows spilled
        from memory while storage failed), in seq order; read-only, safe while appending. Each
        frame is read on its own (its place is known), so reading a few entries costs a few frames."""
        out: list[JournalEntry] = []
        with self._lock:
            for seq in sorted(set(seqs)):
                place = self._at.get(seq)
                if place is None:
                    continue  # released, or never written
                path, pos, size = place
                try:
                    with open(path, "rb") as fh:
                        data = os.pread(fh.fileno(), size, pos)
                except OSError as exc:
                    raise JournalError(f"cannot read journal segment {path}: {exc}") from exc
                frame, why = check_frame(memoryview(data), 0)
                if frame is None or frame[0] != seq:
                    raise JournalError(f"{path.name}: entry {seq} no longer reads back intact: {why or 'another entry'}")
                _, rows, name_len, body_len, _ = frame
                out.append(self._decode(path, pa.py_buffer(data), 0, seq, rows, name_len, body_len))
        return out

    def _read(self, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise JournalError(f"cannot read journal segment {path}: {exc}") from exc

    @staticmethod
    def _decode(path: Path, buf: pa.Buffer, pos: int, seq: int, rows: int, name_len: int,
                body_len: int) -> JournalEntry:
        body_at = pos + HEADER_SIZE + pad8(name_len)
        try:
            table = bytes(buf[pos + HEADER_SIZE:pos + HEADER_SIZE + name_len]).decode("utf-8")
            # its own copy of the body: a batch that sliced the segment would keep all of it in memory
            reader = pa.ipc.open_stream(pa.py_buffer(buf.slice(body_at, body_len).to_pybytes()))
            batches = list(reader)
        except (pa.ArrowException, UnicodeDecodeError) as exc:  # checksum-valid: a writer bug, not damage
            raise JournalError(f"{path.name}: entry {seq} is intact but undecodable: {exc}") from exc
        if len(batches) != 1 or batches[0].num_rows != rows:
            raise JournalError(f"{path.name}: entry {seq} holds {len(batches)} batches, not one of {rows} rows")
        return JournalEntry(seq, table, batches[0])

    def _repair(self, paths: list[tuple[int, Path]], stop: tuple | None, last_good: int,
                checkpoint_ok: bool) -> dict:
        """Cut or set aside everything from the damage on; delete settled segments; persist."""
        report: dict = {} if checkpoint_ok else {"checkpoint_lost": True}
        top = max(last_good, self._floor, self._next_seq - 1, self._settled.hi[-1] if self._settled.hi else 0)
        if stop is not None:
            i, data, pos, why = stop
            torn_tail = i == len(paths) - 1
            cut, found, quarantined, partial = 0, [], [], False
            for j, (_, path) in enumerate(paths[i:]):
                part = data if j == 0 and data is not None else self._read(path)
                start = pos if j == 0 else 0
                intact = salvage(part, start)
                if j == 0:  # something other than an intact frame sits at the cut
                    partial = len(part) > start and not (intact and intact[0][0] == start)
                found += [seq for _, seq in intact]
                cut += len(part) - start
                if intact or not torn_tail:
                    quarantined.append(self._set_aside(path, part, start))
            if data is not None and pos > 0:
                self._truncate(paths[i][1], pos)
            elif not quarantined:
                paths[i][1].unlink(missing_ok=True)
            top = max([top, *found])
            report.update(damage=why, segment=paths[i][1].name, offset=pos, bytes_cut=cut,
                          partial_frame=partial,
                          entries_set_aside=len(found), quarantined=tuple(quarantined))
        if top > last_good and not self._settled_range(last_good + 1, top):
            report["lost_seqs"] = (last_good + 1, top)
        self._settled.add(max(last_good, self._floor) + 1, top)
        self._next_seq = top + 1
        self._retire()  # also persists the checkpoint (floor, next seq, what was set aside)
        return report

    def _set_aside(self, path: Path, data: bytes, start: int) -> str:
        if start == 0:
            return self._quarantine_file(path)
        target = self._quarantine_target(f"{path.name}.from-{start}")
        try:
            with open(target, "wb") as fh:
                fh.write(memoryview(data)[start:])
                fh.flush()
                if self.durability is Durability.STRICT:  # BATCH promises nothing across power loss
                    os.fsync(fh.fileno())
        except OSError as exc:
            raise JournalError(f"cannot set aside the damaged tail of {path}: {exc}") from exc
        return str(target)

    def _quarantine_target(self, name: str) -> Path:
        qdir = self.directory / QUARANTINE
        qdir.mkdir(exist_ok=True)
        target = qdir / name
        return target.with_name(f"{name}.{time.time_ns()}") if target.exists() else target

    def _quarantine_file(self, path: Path) -> str:
        target = self._quarantine_target(path.name)
        try:
            os.replace(path, target)
        except OSError as exc:
            raise JournalError(f"cannot move {path} to quarantine: {exc}") from exc
        return str(target)

    def _truncate(self, path: Path, size: int) -> None:
        try:
            with open(path, "r+b") as fh:
                fh.truncate(size)
                if self.durability is Durability.STRICT:  # else a lost cut only shows the same damage again
                    os.fsync(fh.fileno())
        except OSError as exc:
            raise JournalError(f"cannot cut the damaged tail of {path}: {exc}") from exc

    # -- life cycle ------------------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """The sequence number the next append will get."""
        with self._lock:
            if not self._opened and not self._closed:
                self._scan(decode=False)
            return self._next_seq

    def stats(self) -> dict:
        """Segments and bytes on disk, entries and rows not yet released."""
        with self._lock:
            if not self._opened and not self._closed:
                self._scan(decode=False)
            return {"durability": self.durability.value, "segments": len(self._segments),
                    "bytes": sum(s.size for s in self._segments), "unreleased": len(self._unreleased),
                    "unreleased_rows": sum(self._unreleased.values()), "next_seq": self._next_seq}

    def close(self) -> None:
        """Sync what was appended (a clean close is durable even in BATCH mode) and unlock."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._close_fd()
                for path in sorted(self._unsynced):
                    if path.exists():
                        fd = os.open(path, os.O_RDONLY)
                        try:
                            os.fsync(fd)
                        finally:
                            os.close(fd)
                if self._unsynced:
                    fsync_dir(self.directory)
                self._unsynced.clear()
            except OSError as exc:
                raise JournalError(f"could not sync the journal at {self.directory}: {exc}") from exc
            finally:
                if self._lock_fd is not None:
                    os.close(self._lock_fd)  # closing the descriptor drops the flock
                    self._lock_fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
