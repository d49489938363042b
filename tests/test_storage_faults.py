"""Storage faults: full disk, EIO on fsync, read-only root. Clear error, nothing lost, automatic resume.

The full disk and the read-only root are real: a small tmpfs mounted by the test (CI runs as root).
"""
from __future__ import annotations

import errno
import subprocess

import pytest

from cryptolake_nb import Lake, StorageError
from cryptolake_nb.faults import FAULTS

import waiting
from feeding import put


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "fs"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"these tests mount a small tmpfs and need root: {res.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def trades(make_trade, n, start=0):
    return [make_trade(100 + i % 10, 1, 1_700_000_000.0 + start + i, id=str(start + i)) for i in range(n)]


def count(lake):
    return lake.sql("SELECT count(*) AS n, count(DISTINCT trade_id) AS d FROM trades").to_dict("records")[0]


def test_disk_full_keeps_rows_and_resumes(small_fs, make_trade):
    with Lake(small_fs / "lk", flush_interval=0.2) as lake:
        put(lake, trades(make_trade, 500))
        assert waiting.wait_for(lambda: lake.status()["tables"]["trades"]["rows_committed"] == 500, 10)
        filler = small_fs / "filler"
        with open(filler, "wb") as fh:  # fill the disk
            try:
                while True:
                    fh.write(b"\0" * 65536)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        put(lake, trades(make_trade, 20_000, start=500))
        assert waiting.wait_for(lambda: lake.status()["flush"]["last_error"], 5), "no error surfaced"
        assert "No space left" in lake.status()["flush"]["last_error"]
        assert count(lake) == {"n": 20_500, "d": 20_500}  # queryable, nothing lost
        assert lake.verify().ok  # committed files intact
        filler.unlink()  # the fault clears
        # the flusher clears its error after the commit and what follows it (journal, compaction check)
        assert waiting.wait_for(lambda: lake.status()["tables"]["trades"]["rows_committed"] == 20_500
                                and lake.status()["flush"]["last_error"] is None, 15)
        assert count(lake) == {"n": 20_500, "d": 20_500}
        assert not list(lake.root.rglob("*.inprogress"))


def test_read_only_data_tree_then_writable_again(small_fs, make_trade):
    with Lake(small_fs / "lk", flush_interval=0.2) as lake:
        put(lake, trades(make_trade, 100))
        assert waiting.wait_for(lambda: lake.status()["tables"]["trades"]["rows_committed"] == 100, 10)
        data = lake.root / "trades"  # the lake holds its lock file open, so remount the data tree
        subprocess.run(["mount", "--bind", str(data), str(data)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(data)], check=True)
        try:
            put(lake, trades(make_trade, 100, start=100))
            assert waiting.wait_for(lambda: lake.status()["flush"]["last_error"], 5)
            with pytest.raises(StorageError, match="Read-only"):
                lake.flush()
            assert count(lake) == {"n": 200, "d": 200}
        finally:
            subprocess.run(["umount", str(data)], check=True)
        assert waiting.wait_for(lambda: lake.status()["tables"]["trades"]["rows_committed"] == 200, 15)


@pytest.mark.parametrize("site", ["fsync", "write", "manifest"])
def test_eio_keeps_rows_and_leaves_no_file_behind(lake, make_trade, site):
    put(lake, trades(make_trade, 50))
    lake.flush()
    put(lake, trades(make_trade, 50, start=50))
    FAULTS.arm(site, errno.EIO, times=1)
    try:
        with pytest.raises(StorageError, match="Input/output error"):
            lake.flush()
    finally:
        FAULTS.clear()
    assert count(lake) == {"n": 100, "d": 100}
    assert len(list(lake.root.rglob("*.parquet"))) == 1 and not list(lake.root.rglob("*.inprogress"))
    lake.flush()
    assert count(lake) == {"n": 100, "d": 100} and lake.status()["tables"]["trades"]["buffer_rows"] == 0
    assert lake.verify().ok
