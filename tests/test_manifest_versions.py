"""Manifests written by another version: added entry fields are read past; a whole line that cannot
be read is refused, never cut off (cutting it would hide every file committed from there on)."""
from __future__ import annotations

import json
import zlib

import pytest

from cryptolake_nb import Lake, ManifestError
from cryptolake_nb.manifest import Manifest

from feeding import put


def _rewrite(log, edit) -> None:
    lines = []
    for line in log.read_text().splitlines():
        doc = json.loads(line.split(" ", 1)[1])
        edit(doc)
        body = json.dumps(doc, separators=(",", ":"))
        lines.append(f"{zlib.crc32(body.encode()):08x} {body}\n")
    log.write_text("".join(lines))


def _lake_with_two_commits(root, make_trade) -> None:
    with Lake(root, autoflush=False) as lake:
        for i in range(2):
            put(lake, [make_trade(1 + i, 1, 1_700_000_000.0 + i, id=str(i))])
            lake.flush()


def test_fields_added_by_a_newer_version_are_ignored(tmp_path, make_trade):
    _lake_with_two_commits(tmp_path / "lk", make_trade)
    _rewrite(tmp_path / "lk/_manifest/log.jsonl", lambda doc: [e.update(zone_map={"x": 1}) for e in doc["add"]])
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 2


def test_an_unreadable_whole_line_is_refused_and_left_in_place(tmp_path, make_trade):
    _lake_with_two_commits(tmp_path / "lk", make_trade)
    log = tmp_path / "lk/_manifest/log.jsonl"
    _rewrite(log, lambda doc: doc.update(add=[{"path": e["path"]} for e in doc["add"]]) if doc["seq"] == 1 else None)
    before = log.read_bytes()
    with pytest.raises(ManifestError, match="valid checksum but cannot be read"):
        Manifest(tmp_path / "lk")
    with pytest.raises(ManifestError):
        Lake(tmp_path / "lk", autoflush=False)
    assert log.read_bytes() == before  # nothing cut off
    assert len(list((tmp_path / "lk/trades").rglob("*.parquet"))) == 2  # and no file moved aside
