"""One writer per lake, any number of read-only readers that follow the writer's commits."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from cryptolake_nb import ConfigError, Lake, LakeLockedError, TradeLake
from feeding import put


def test_second_writer_in_this_process_is_refused(tmp_path):
    with Lake(tmp_path / "lk", autoflush=False):
        with pytest.raises(LakeLockedError, match="already open"):
            Lake(tmp_path / "lk")
    Lake(tmp_path / "lk", autoflush=False).close()  # released on close


def test_second_writer_in_another_process_is_refused_readers_follow(tmp_path, make_trade):
    root = tmp_path / "lk"
    with Lake(root, autoflush=False) as writer:
        code = textwrap.dedent(f"""
            from cryptolake_nb import Lake, LakeLockedError
            try:
                Lake({str(root)!r})
            except LakeLockedError as exc:
                print("refused:", exc)
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
        assert out.startswith("refused:") and "read_only=True" in out
        reader = Lake(root, read_only=True)
        assert reader.sql("SELECT count(*) AS n FROM trades")["n"][0] == 0
        put(writer, [make_trade(100, 1, 1_700_000_000.0)])
        assert reader.sql("SELECT count(*) AS n FROM trades")["n"][0] == 0  # live rows are the writer's
        writer.flush()
        assert reader.sql("SELECT count(*) AS n FROM trades")["n"][0] == 1  # committed rows are everyone's
        with pytest.raises(ConfigError, match="read-only"):
            TradeLake(reader)
        reader.close()


def test_read_only_needs_an_existing_lake(tmp_path):
    with pytest.raises(ConfigError, match="no lake"):
        Lake(tmp_path / "nothing", read_only=True)
