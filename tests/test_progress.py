"""Progress bars: quiet in tests and scripts, drawn when asked, counting up to the total."""
from __future__ import annotations

import re

import pytest

from cryptolake_nb import ConfigError, Lake
from cryptolake_nb.progress import ProgressBar, in_notebook, progress_wanted
from cryptolake_nb.replay import capture_sets

from feeding import put

T0 = 1_700_000_000.0


def small_files(lake: Lake, make_trade, symbols=("BTC-USDT", "ETH-USDT"), files: int = 3) -> None:
    """`files` committed files per symbol, all in one date partition each."""
    n = 0
    for _ in range(files):
        put(lake, [make_trade(100 + n, 1, T0 + n, symbol=s, id=str(n)) for s in symbols])
        lake.flush()
        n += 1


def test_not_a_notebook_here():
    assert in_notebook() is False  # pytest: no ZMQ kernel
    assert progress_wanted(None) is False
    assert progress_wanted(True) is True and progress_wanted(False) is False
    with pytest.raises(ConfigError, match="progress must be"):
        progress_wanted("yes")


def test_bar_quiet_unless_enabled_and_counts_reach_the_total(capsys):
    with ProgressBar("quiet") as quiet:
        quiet(500, 1200)
        quiet(1200, 1200)
    assert (quiet.done, quiet.total) == (1200, 1200)
    assert capsys.readouterr().err == ""
    with ProgressBar("loud", unit="line", enabled=True) as loud:
        loud(500, 1200)
        loud(1200, 1200)
    err = capsys.readouterr().err
    assert "loud" in err and "1200/1200" in err and "100%" in err


def test_bar_follows_a_growing_total(capsys):
    with ProgressBar("grow", enabled=True) as bar:
        bar(1, 2)
        bar(3, 4)
    assert "3/4" in capsys.readouterr().err


def test_compaction_quiet_by_default_and_a_bar_when_asked(tmp_path, make_trade, capsys):
    with Lake(tmp_path / "a", autoflush=False, autocompact=False, compact_min_files=2) as lake:
        small_files(lake, make_trade)
        capsys.readouterr()
        done = lake.compact()
        assert len(done) == 2  # one merge per symbol partition
        assert capsys.readouterr().err == ""
    with Lake(tmp_path / "b", autoflush=False, autocompact=False, compact_min_files=2) as lake:
        small_files(lake, make_trade)
        capsys.readouterr()
        done = lake.compact(progress=True)
        assert len(done) == 2 and sum(c.files_in for c in done) == 6
        err = capsys.readouterr().err
        assert "compact" in err and "2/2" in err
        assert lake.compact(progress=True) == [] and capsys.readouterr().err == ""  # nothing to do: no bar
        with pytest.raises(ConfigError, match="progress"):
            lake.compact(progress="on")


def test_replay_quiet_by_default_and_a_bar_over_the_capture_lines(lake, captures, capsys):
    files = capture_sets(captures)["BITFINEX"]
    lines = sum(sum(1 for _ in open(p, "rb")) for p in files if ".ws." in p.name)
    stored = lake.replay(files)
    assert stored["trades"] > 0
    assert capsys.readouterr().err == ""
    lake.replay(files, progress=True)  # again: all duplicates, but the bar still runs to the end
    err = capsys.readouterr().err
    assert "replay BITFINEX" in err
    assert re.search(rf"\b{lines}/{lines}\b", err), err[-300:]
