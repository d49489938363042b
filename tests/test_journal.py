"""The journal: round trips, restart, torn/zeroed/flipped bytes, release, write faults, kill -9."""
from __future__ import annotations

import inspect
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cryptolake_nb.journal as journal_module
from cryptolake_nb.errors import ConfigError, JournalError
from cryptolake_nb.journal import Durability, Journal, JournalEntry

PKG_DIR = Path(journal_module.__file__).parent


def batch_for(seq: int) -> tuple[str, pa.RecordBatch]:
    """A small deterministic batch per seq: three tables, three schemas, UTC ns timestamps, nulls."""
    ts_type = pa.timestamp("ns", tz="UTC")
    n = 1 + seq % 4
    ts = pa.array([1_700_000_000_000_000_000 + seq * 1_000 + i for i in range(n)], pa.int64()).cast(ts_type)
    kind = seq % 3
    if kind == 0:
        schema = pa.schema([("ts", ts_type), ("symbol", pa.string()), ("side", pa.string()),
                            ("price", pa.float64()), ("amount", pa.float64())],
                           metadata={"cryptolake.table": "trades"})
        cols = [ts, pa.array([f"BTC-{seq}"] * n), pa.array([None if i % 2 else "buy" for i in range(n)]),
                pa.array([30_000 + seq + i / 100 for i in range(n)]), pa.array([None] + [0.5] * (n - 1), pa.float64())]
        return "trades", pa.record_batch(cols, schema=schema)
    if kind == 1:
        schema = pa.schema([("ts", ts_type), ("bids", pa.list_(pa.float64())), ("depth", pa.int32())])
        cols = [ts, pa.array([[float(seq), float(i)] if i % 3 else None for i in range(n)]),
                pa.array([seq % 50 + i for i in range(n)], pa.int32())]
        return "book", pa.record_batch(cols, schema=schema)
    schema = pa.schema([("ts", ts_type), ("bid", pa.float64()), ("ask", pa.float64()), ("note", pa.string())])
    cols = [ts, pa.array([seq + 0.25] * n), pa.array([None] * n, pa.float64()), pa.array(["é✓" * (seq % 5)] * n)]
    return "ticker", pa.record_batch(cols, schema=schema)


def kill_batch_for(seq: int) -> tuple[str, pa.RecordBatch]:
    """batch_for, but every 5th entry is 2.4 MB: a kill -9 during its write can leave a torn frame."""
    if seq % 5 == 0:
        import numpy as np

        return "big", pa.record_batch({"x": np.arange(seq, seq + 300_000, dtype=np.int64)})
    return batch_for(seq)


def tiny(seq: int) -> tuple[str, pa.RecordBatch]:
    """A one-row batch (~340-byte frame): keeps the every-byte truncation test fast."""
    return "t", pa.record_batch({"v": pa.array([seq], pa.int64())})


def same(entry: JournalEntry, table: str, batch: pa.RecordBatch) -> bool:
    return entry.table == table and entry.batch.equals(batch) and entry.batch.schema.equals(batch.schema, check_metadata=True)


def fill(directory: Path, n: int, make=batch_for, **kw) -> list[int]:
    """Append make(1..n); return the cumulative journal size after each entry."""
    ends = []
    with Journal(directory, **kw) as j:
        j.recover()
        for seq in range(1, n + 1):
            assert j.append(*make(seq)) == seq
            ends.append(j.stats()["bytes"])
    return ends


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("journal-*.jrnl"))


def recover(directory: Path, **kw) -> tuple[list[JournalEntry], journal_module.RecoveryReport]:
    with Journal(directory, **kw) as j:
        return j.recover(), j.last_recovery


def restore(work: Path, files: dict[str, bytes]) -> None:
    """Make `work` hold exactly `files` (and its lock file): one directory reused for many cases."""
    work.mkdir(exist_ok=True)
    for p in work.iterdir():
        if p.is_dir():
            shutil.rmtree(p)
        elif p.name not in files and p.name != "journal.lock":
            p.unlink()
    for name, data in files.items():
        (work / name).write_bytes(data)


def check_prefix(entries: list[JournalEntry], k: int, make=batch_for) -> None:
    assert [e.seq for e in entries] == list(range(1, k + 1))
    assert all(same(e, *make(e.seq)) for e in entries), "a recovered batch differs from the one appended"


# -- round trip and restart ------------------------------------------------------------------------

def test_round_trip_of_several_tables_and_restart(tmp_path: Path) -> None:
    fill(tmp_path, 30, segment_bytes=4096)
    assert len(segments(tmp_path)) > 2 and not list(tmp_path.rglob("*.parquet"))
    entries, report = recover(tmp_path)
    check_prefix(entries, 30)
    assert {e.table for e in entries} == {"trades", "book", "ticker"}
    assert entries[2].batch.schema.field("ts").type == pa.timestamp("ns", tz="UTC")
    assert report.damage is None and report.entries == 30 and report.segments == len(segments(tmp_path))
    with Journal(tmp_path) as j:  # appending carries on after a restart, numbers continue
        assert len(j.recover()) == 30 and j.append(*batch_for(31)) == 31
    check_prefix(recover(tmp_path)[0], 31)


def test_append_before_recover_keeps_entries_for_recover(tmp_path: Path) -> None:
    fill(tmp_path, 3)
    with Journal(tmp_path) as j:
        assert j.append(*batch_for(4)) == 4
        check_prefix(j.recover(), 4)


def test_concurrent_appends_get_unique_gap_free_seqs(tmp_path: Path) -> None:
    got: list[tuple[int, int]] = []
    with Journal(tmp_path, segment_bytes=8192) as j:
        j.recover()

        def worker(t: int) -> None:
            for i in range(100):
                got.append((j.append(f"t{t}", pa.record_batch({"t": [t], "i": [i]})), t))

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert sorted(s for s, _ in got) == list(range(1, 401))
    entries = recover(tmp_path)[0]
    assert [e.seq for e in entries] == list(range(1, 401))
    assert all(e.table == f"t{t}" and e.batch.column("t")[0].as_py() == t for e, (_, t) in zip(entries, sorted(got)))


def test_one_writer_per_directory_and_no_journal_mode(tmp_path: Path) -> None:
    with Journal(tmp_path / "j"):
        with pytest.raises(JournalError):
            Journal(tmp_path / "j")
    with Journal(tmp_path / "none", durability=Durability.NONE) as j:
        assert [j.append(*batch_for(s)) for s in (1, 2)] == [1, 2] and j.recover() == []
    assert not (tmp_path / "none").exists()
    with pytest.raises(ConfigError):
        Journal(tmp_path / "j").append("t", pa.table({"x": [1]}))


# -- torn, zeroed and flipped bytes -----------------------------------------------------------------

@pytest.mark.parametrize("layout", ["one segment", "segment per entry, crash tail", "segment per entry, middle damage"])
def test_truncation_at_every_byte_of_the_last_two_entries(tmp_path: Path, layout: str) -> None:
    n, per_entry = 5, layout != "one segment"
    src = tmp_path / "src"
    ends = fill(src, n, tiny, segment_bytes=1 if per_entry else 1 << 20)
    pristine = [p.read_bytes() for p in segments(src)]
    names = [p.name for p in segments(src)]
    starts = [0] + ends[:-1]
    # every byte of the last two entries; with a segment per entry, a cut in the second-to-last one
    # is tested with the last segment kept (middle damage), a cut in the last one as a crash tail
    first, last = {"one segment": (ends[-3], ends[-1]), "segment per entry, crash tail": (ends[-2], ends[-1]),
                   "segment per entry, middle damage": (ends[-3], ends[-2] - 1)}[layout]
    work = tmp_path / "work"
    for cut in range(first, last + 1):
        k = sum(e <= cut for e in ends)  # entries wholly before the cut
        if per_entry:
            restore(work, {names[i]: data[:cut - starts[i]] if starts[i] < cut else data if starts[i] > cut else b""
                           for i, data in enumerate(pristine) if starts[i] < cut or "middle" in layout})
        else:
            restore(work, {names[0]: pristine[0][:cut]})
        with Journal(work, segment_bytes=1 if per_entry else 1 << 20) as j:
            entries, report = j.recover(), j.last_recovery
            check_prefix(entries, k, tiny)
            assert j.stats()["bytes"] == (ends[k - 1] if k else 0)
            if "middle" in layout and k < n - 1:  # a torn or empty segment before an intact one
                assert report.damage and report.entries_set_aside == n - k - 1 and report.lost_seqs == (k + 1, n)
            else:
                assert report.entries_set_aside == 0 and (report.damage is None) == (cut in ends)
                assert report.bytes_cut == cut - (ends[k - 1] if k else 0)
            if cut % 7 == 0:  # appending carries on after the cut; the next restart is clean
                nxt = j.append(*tiny(j.next_seq))
                assert nxt == (n + 1 if "middle" in layout and k < n - 1 else k + 1)
        if cut % 7 == 0:
            again, report = recover(work)
            assert report.damage is None and [e.seq for e in again] == [e.seq for e in entries] + [nxt]


def _mutations(rng: random.Random, total: int) -> list[tuple[str, int, int]]:
    flips = [("flip", rng.randrange(total), rng.randrange(8)) for _ in range(200)]
    zeros = [("zero", rng.randrange(total), rng.choice([1, 4, 8, 40, rng.randrange(1, 700)])) for _ in range(100)]
    return flips + zeros


def test_bit_flips_and_zero_runs_are_always_detected(tmp_path: Path) -> None:
    n = 9
    src = tmp_path / "src"
    ends = fill(src, n, segment_bytes=1500)
    names = [p.name for p in segments(src)]
    stream = b"".join(p.read_bytes() for p in segments(src))
    seg_ends, acc = [], 0
    for p in segments(src):
        acc += p.stat().st_size
        seg_ends.append(acc)
    starts = [0] + ends[:-1]
    work = tmp_path / "work"
    for kind, at, arg in _mutations(random.Random(1234), len(stream)):
        data = bytearray(stream)
        if kind == "flip":
            data[at] ^= 1 << arg
        else:
            data[at:at + arg] = bytes(len(data[at:at + arg]))
        changed = [i for i in range(at, min(at + max(arg, 1), len(data))) if data[i] != stream[i]]
        restore(work, {name: bytes(data[lo:hi]) for name, lo, hi in zip(names, [0] + seg_ends[:-1], seg_ends)})
        entries, report = recover(work)
        if not changed:
            check_prefix(entries, n)
            continue
        first = changed[0]
        k = sum(e <= first for e in ends)
        check_prefix(entries, k)  # never a damaged entry, never one past the damage
        intact_after = sum(1 for i in range(k + 1, n) if not any(starts[i] <= c < ends[i] for c in changed))
        assert report.damage is not None and report.entries_set_aside == intact_after, (kind, at, arg, report)


def test_zero_fill_after_the_last_entry_is_cut(tmp_path: Path) -> None:
    fill(tmp_path, 4)
    seg = segments(tmp_path)[-1]
    size = seg.stat().st_size
    with open(seg, "ab") as fh:
        fh.write(bytes(4096))  # what a filesystem may show after a crash: size grown, data never written
    entries, report = recover(tmp_path)
    check_prefix(entries, 4)
    assert report.bytes_cut == 4096 and "zero" in report.damage and seg.stat().st_size == size


def test_damage_in_a_middle_segment_sets_later_entries_aside(tmp_path: Path, caplog) -> None:
    fill(tmp_path, 12, segment_bytes=1500)
    segs = segments(tmp_path)
    assert len(segs) >= 3
    data = bytearray(segs[1].read_bytes())
    data[60] ^= 0x10
    segs[1].write_bytes(data)
    first_damaged = int(segs[1].name[8:28])
    with Journal(tmp_path, segment_bytes=1500) as j:
        check_prefix(j.recover(), first_damaged - 1)
        report = j.last_recovery
        assert report.lost_seqs == (first_damaged, 12) and report.entries_set_aside == 12 - first_damaged
        assert j.append(*batch_for(13)) == 13  # numbering continues above everything ever seen
    assert "set aside" in caplog.text
    quarantined = sorted(p.name for p in (tmp_path / "quarantine").iterdir())
    assert len(quarantined) == len(segs) - 1 and all(s.name in quarantined for s in segs[2:])
    entries, report = recover(tmp_path)
    assert report.damage is None and [e.seq for e in entries] == list(range(1, first_damaged)) + [13]


def test_unreadable_checkpoint_replays_released_entries(tmp_path: Path) -> None:
    fill(tmp_path, 6, segment_bytes=1 << 20)
    with Journal(tmp_path) as j:
        j.recover()
        j.release_through(3)
    ckpt = tmp_path / "checkpoint"
    ckpt.write_bytes(ckpt.read_bytes().replace(b'"floor"', b'"flooR"'))
    entries, report = recover(tmp_path)
    check_prefix(entries, 6)  # at-least-once: the caller dedupes by seq
    assert report.checkpoint_lost and (tmp_path / "quarantine" / "checkpoint").exists()


# -- release -------------------------------------------------------------------------------------

def test_release_deletes_only_fully_released_segments(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_bytes=1) as j:  # one entry per segment
        j.recover()
        for seq in range(1, 7):
            j.append(*batch_for(seq))
        with pytest.raises(ConfigError):
            j.release([7])
        assert j.release([2, 4]) == 2 and [p.name[8:28] for p in segments(tmp_path)] == \
            [f"{s:020d}" for s in (1, 3, 5, 6)]
    with Journal(tmp_path, segment_bytes=4096) as j:
        assert [e.seq for e in j.recover()] == [1, 3, 5, 6]
        j.append(*batch_for(7))
        j.append(*batch_for(8))  # 6, 7 and 8 share the last segment
        assert j.release([7]) == 0 and j.stats()["unreleased"] == 5
        assert j.release_through(8) == 4 and segments(tmp_path) == [] and j.stats()["segments"] == 0
    with Journal(tmp_path) as j:  # nothing left on disk: numbering still continues
        assert j.recover() == [] and j.append(*batch_for(9)) == 9


def test_a_crash_between_checkpoint_and_segment_deletion_is_harmless(tmp_path: Path) -> None:
    fill(tmp_path, 6, segment_bytes=1)
    stale = {p.name: p.read_bytes() for p in segments(tmp_path)[:3]}
    with Journal(tmp_path, segment_bytes=1) as j:
        j.recover()
        assert j.release_through(3) == 3
    for name, data in stale.items():  # as if the process died after the checkpoint, before the unlinks
        (tmp_path / name).write_bytes(data)
    entries, report = recover(tmp_path)
    assert [e.seq for e in entries] == [4, 5, 6] and report.damage is None and report.released == 3
    assert len(segments(tmp_path)) == 3  # the stale ones are deleted now


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sets(st.integers(1, 16), max_size=6), max_size=4), st.integers(200, 3000))
def test_release_property(releases: list[set[int]], segment_bytes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        fill(d, 16, segment_bytes=segment_bytes)
        released: set[int] = set()
        for seqs in releases:
            with Journal(d, segment_bytes=segment_bytes) as j:
                assert [e.seq for e in j.recover()] == [s for s in range(1, 17) if s not in released]
                j.release(seqs)
                released |= seqs
        entries, _ = recover(d)
        assert [e.seq for e in entries] == [s for s in range(1, 17) if s not in released]
        firsts = [int(p.name[8:28]) for p in segments(d)] + [17]
        for lo, hi in zip(firsts, firsts[1:]):  # a segment on disk always still holds an unreleased entry
            assert set(range(lo, hi)) - released


# -- write faults and kill -9 ----------------------------------------------------------------------

# Subprocesses import journal.py (and errors.py) alone: the package __init__ would pull in DuckDB
# and cryptofeed (~0.6 s per process start).
PRELUDE = f"""
import os, sys, types, json, signal, resource
pkg = types.ModuleType("cryptolake_nb"); pkg.__path__ = [{str(PKG_DIR)!r}]; sys.modules["cryptolake_nb"] = pkg
import pyarrow as pa
from cryptolake_nb.journal import Durability, Journal
from cryptolake_nb.errors import JournalError, StorageError
"""

FAULT_SCRIPT = PRELUDE + """
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
batch = pa.record_batch({"x": pa.array(range(4000))})
out = {}
with Journal(sys.argv[1]) as j:
    j.recover()
    acked = [j.append("t", batch) for _ in range(3)]
    size = j.stats()["bytes"]
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 5000, hard))  # room for part of a frame only
    try:
        j.append("t", batch)
    except JournalError as exc:
        out["error"] = [isinstance(exc, StorageError), isinstance(exc, OSError), str(exc)]
    seg = sorted(p for p in os.listdir(sys.argv[1]) if p.startswith("journal-"))[-1]
    out["size_after_failure"] = os.path.getsize(os.path.join(sys.argv[1], seg)) - size
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    acked.append(j.append("t", batch))
out["acked"] = acked
print(json.dumps(out))
"""


def test_a_failed_write_raises_storage_error_and_leaves_the_journal_consistent(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-c", FAULT_SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["error"][:2] == [True, True] and "File too large" in out["error"][2]
    assert out["size_after_failure"] == 0  # the partial frame was cut at once
    assert out["acked"] == [1, 2, 3, 4]  # the failed entry's number was not consumed
    entries, report = recover(tmp_path)
    assert [e.seq for e in entries] == [1, 2, 3, 4] and report.damage is None


# A zygote imports once, then forks one writer per round: each writer is a real process appending
# in a loop that the test kills with SIGKILL, without paying Python + pyarrow start-up 40 times.
WRITER_SCRIPT = PRELUDE + inspect.getsource(batch_for) + inspect.getsource(kill_batch_for) + """
def write(directory, durability, acks):
    out = os.open(acks, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    j = Journal(directory, durability=Durability(durability), segment_bytes=16384)
    j.recover()
    while True:
        seq = j.next_seq
        assert j.append(*kill_batch_for(seq)) == seq
        os.write(out, b"A %d\\n" % seq)  # acknowledged; one write per line, so never half a line
        if seq % 25 == 0 and seq > 30:
            j.release_through(seq - 30)
            os.write(out, b"R %d\\n" % (seq - 30))

for warm in range(6):  # pyarrow's first cast takes ~0.3 s: pay it once, before forking
    kill_batch_for(warm)
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "fork":
        pid = os.fork()
        if pid == 0:
            try:
                write(*args)
            finally:
                os._exit(1)
        print(pid, flush=True)
    elif cmd == "reap":
        _, status = os.waitpid(int(args[0]), 0)
        print(os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1, flush=True)
"""


class _Zygote:
    def __init__(self, script: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ask(self, line: str) -> int:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer, self.proc.stderr.read()
        return int(answer)

    def close(self) -> None:
        self.proc.stdin.close()  # ends its loop
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


def _kill_once(zygote: _Zygote, directory: Path, durability: Durability, acks: Path,
               rng: random.Random) -> list[list[str]]:
    """Fork a writer, SIGKILL it at a random instant; return the complete lines it acknowledged."""
    pid = zygote.ask(f"fork {directory} {durability.value} {acks}")
    try:
        if rng.random() < 0.25:  # sometimes during start-up or recovery
            time.sleep(rng.uniform(0, 0.02))
        else:
            deadline = time.monotonic() + 10
            while not (acks.exists() and acks.stat().st_size) and time.monotonic() < deadline:
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.04))
    finally:
        os.kill(pid, signal.SIGKILL)  # never leave a writer running
    assert zygote.ask(f"reap {pid}") == signal.SIGKILL, "the writer died of something else"
    text = acks.read_text() if acks.exists() else ""
    return [line.split() for line in text.splitlines(keepends=True) if line.endswith("\n")]


@pytest.mark.slow
@pytest.mark.parametrize("durability", [Durability.BATCH, Durability.STRICT])
def test_kill_9_of_an_appending_process_loses_no_acknowledged_entry(tmp_path: Path, durability: Durability) -> None:
    """After each of 30 kills, the recovered entries are a gap-free run holding every acknowledged,
    unreleased entry, and nothing beyond the one being written at the kill."""
    rng = random.Random(durability.value)
    script, directory = tmp_path / "writer.py", tmp_path / "journal"
    script.write_text(WRITER_SCRIPT)
    zygote = _Zygote(script)
    acked: set[int] = set()
    released = known = torn = 0  # known: the highest seq acknowledged or already recovered
    try:
        for round_ in range(30):
            in_flight = None  # a release_through that may have been persisted but not reported
            for word, value in _kill_once(zygote, directory, durability, tmp_path / f"acks{round_}", rng):
                if word == "A":
                    acked.add(int(value))
                    in_flight = int(value) - 30 if int(value) % 25 == 0 and int(value) > 30 else None
                else:
                    released, in_flight = int(value), None
            entries, report = recover(directory)
            seqs = [e.seq for e in entries]
            top = max(acked, default=0)
            floor = seqs[0] - 1 if seqs else max(top, known)
            assert floor in (released, in_flight) or not seqs and floor >= released, (floor, released, in_flight)
            assert seqs == list(range(floor + 1, floor + 1 + len(seqs))), "recovered entries have a gap"
            assert {s for s in acked if s > floor} <= set(seqs), "an acknowledged entry was lost"
            assert not seqs or max(top, known) <= seqs[-1] <= max(top, known) + 1  # + the one being written
            assert all(same(e, *kill_batch_for(e.seq)) for e in entries), "a recovered batch differs"
            torn += report.damage is not None
            assert report.entries_set_aside == 0 and report.lost_seqs is None, report
            released = floor  # an in-flight release seen here is persisted from now on
            known = max([known, top, *seqs])
    finally:
        zygote.close()
    assert len(acked) > 50, (len(acked), torn)  # torn: kills that tore a frame (~4-6 of 30 BATCH, ~1 STRICT)
