"""The journal's on-disk frame: layout, checks, and the integer range set it keeps.

One frame per entry (one RecordBatch of one table), all little-endian, every frame 8-byte aligned:

    header  40 B  magic "CLJ1" | name_len u16 | flags u16 (0) | seq u64 | rows u64 | body_len u64
                  | reserved u32 (0) | header_crc u32 (CRC-32 of the 36 bytes before it)
    name          table name, UTF-8, zero-padded to 8
    body          a complete Arrow IPC stream (schema message, one batch, end-of-stream), padded to 8
    trailer  8 B  crc u32 (CRC-32 of padded body, then header and padded name) | magic "CLJe"

Why this framing: the tables have different schemas and an Arrow stream has one, so a single stream
per segment would need a segment per table (no total order of entries across tables). Each body is
instead a self-contained IPC stream (its own ~0.7 kB schema message, <1% of a 1k-row trades batch),
so any Arrow reader can decode one, and damage to one entry never makes another undecodable. The
frame around it gives what the IPC stream lacks as a log: a length to find the next entry without
parsing, a sequence number to prove continuity (a zero-filled run no longer reads as a clean end of
stream), and checksums over every byte. The body's CRC comes first in the checksummed order so it
is computed outside the append lock, before the sequence number is known. Segments end in `.jrnl`,
not `.arrows`, because a segment is not one Arrow stream (and no `*.parquet` glob can match them).
"""
from __future__ import annotations

import bisect
import os
import struct
import zlib
from typing import Iterable

import pyarrow as pa

__all__ = [
    "END_MAGIC", "HEADER_SIZE", "HEAD", "MAGIC", "MAX_NAME", "Ranges", "TRAILER_SIZE", "check_frame",
    "frame_size", "pad8", "salvage", "serialize", "write_all", "CRC", "TRAIL",
]

MAGIC, END_MAGIC = b"CLJ1", b"CLJe"
HEAD = struct.Struct("<4sHHQQQI")  # 36 bytes covered by the header CRC that follows them
CRC = struct.Struct("<I")
TRAIL = struct.Struct("<I4s")
HEADER_SIZE, TRAILER_SIZE = HEAD.size + 4, TRAIL.size
MAX_NAME = 1024


class Ranges:
    """Sorted, disjoint, non-adjacent inclusive integer ranges."""

    def __init__(self, pairs: Iterable[tuple[int, int]] = ()) -> None:
        self.lo: list[int] = []
        self.hi: list[int] = []
        for lo, hi in pairs:
            self.add(lo, hi)

    def add(self, lo: int, hi: int) -> None:
        if lo > hi:
            return
        i = bisect.bisect_left(self.hi, lo - 1)  # first range touching lo from the left
        j = bisect.bisect_right(self.lo, hi + 1)  # ranges before j start at most at hi + 1
        if i < j:
            lo, hi = min(lo, self.lo[i]), max(hi, self.hi[j - 1])
        self.lo[i:j], self.hi[i:j] = [lo], [hi]

    def covers(self, lo: int, hi: int) -> bool:
        i = bisect.bisect_right(self.lo, lo) - 1
        return i >= 0 and self.hi[i] >= hi

    def prune(self, floor: int) -> None:
        k = bisect.bisect_right(self.hi, floor)
        del self.lo[:k], self.hi[:k]
        if self.lo and self.lo[0] <= floor:
            self.lo[0] = floor + 1

    def pairs(self) -> list[list[int]]:
        return [[a, b] for a, b in zip(self.lo, self.hi)]


def pad8(n: int) -> int:
    return (n + 7) & ~7


def frame_size(name_len: int, body_len: int) -> int:
    return HEADER_SIZE + pad8(name_len) + pad8(body_len) + TRAILER_SIZE


def check_frame(view: memoryview, pos: int) -> tuple[tuple[int, int, int, int, int] | None, str]:
    """(seq, rows, name_len, body_len, size) of an intact frame at `pos`, or None and why not."""
    end = len(view)
    if not any(view[pos:pos + 8]):
        return None, "zero-filled bytes where a frame should start"
    if end - pos < HEADER_SIZE:
        return None, "torn frame header"
    magic, name_len, flags, seq, rows, body_len, reserved = HEAD.unpack_from(view, pos)
    if magic != MAGIC:
        return None, "no frame magic"
    if zlib.crc32(view[pos:pos + HEAD.size]) != CRC.unpack_from(view, pos + HEAD.size)[0]:
        return None, "frame header checksum mismatch"
    if flags or reserved or not 0 < name_len <= MAX_NAME:
        return None, "invalid frame header fields"
    size = frame_size(name_len, body_len)
    if end - pos < size:
        return None, "torn frame (the file ends inside it)"
    body_at = pos + HEADER_SIZE + pad8(name_len)
    trail_at = pos + size - TRAILER_SIZE
    crc, end_magic = TRAIL.unpack_from(view, trail_at)
    if end_magic != END_MAGIC or zlib.crc32(view[pos:body_at], zlib.crc32(view[body_at:trail_at])) != crc:
        return None, "frame checksum mismatch"
    return (seq, rows, name_len, body_len, size), ""


def salvage(data: bytes, start: int) -> list[tuple[int, int]]:
    """(offset, seq) of every intact frame found in `data[start:]` by scanning for the magic."""
    view, found, pos = memoryview(data), [], start
    while (at := data.find(MAGIC, pos)) >= 0:
        frame, _ = check_frame(view, at)
        if frame is None:
            pos = at + 1
        else:
            found.append((at, frame[0]))
            pos = at + frame[4]
    return found


def serialize(batch: pa.RecordBatch) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def write_all(fd: int, parts: list) -> None:
    total = sum(len(p) for p in parts)
    done = os.writev(fd, parts)
    if done < total:  # short write (rare on regular files): finish it byte-exactly
        rest = memoryview(b"".join(bytes(p) for p in parts))[done:]
        while rest:
            rest = rest[os.write(fd, rest):]
