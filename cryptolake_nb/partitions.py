"""Partition values -> safe relative paths, and file naming."""
from __future__ import annotations

import datetime as dt
import unicodedata
import uuid
from functools import lru_cache
from pathlib import PurePosixPath
from urllib.parse import quote, unquote

from .errors import SymbolError

__all__ = ["KEYS", "MAX_VALUE_CHARS", "check_value", "decode", "encode", "new_file_name", "partition_dir"]

KEYS = ("exchange", "symbol")  # the columns `partition_dir` lays a table's files out by (then the date)

MAX_VALUE_CHARS = 100  # percent-encoding triples at most: 300 bytes is checked below
_MAX_COMPONENT_BYTES = 240


def check_value(kind: str, value: object) -> str:
    """Return `value` if it can be a partition value, else raise SymbolError saying why."""
    if not isinstance(value, str):
        raise SymbolError(f"{kind} must be a string, got {type(value).__name__}: {value!r}")
    return _check_str(kind, value)


@lru_cache(maxsize=65536)
def _check_str(kind: str, value: str) -> str:
    if not value:
        raise SymbolError(f"{kind} must not be empty")
    if len(value) > MAX_VALUE_CHARS:
        raise SymbolError(f"{kind} is {len(value)} characters long; the limit is {MAX_VALUE_CHARS}: {value[:40]!r}...")
    for ch in value:
        if ch == "\x00" or unicodedata.category(ch) in ("Cc", "Cs"):
            raise SymbolError(f"{kind} contains a control character {ch!r}: {value!r}")
    if len(encode(value).encode()) > _MAX_COMPONENT_BYTES:
        raise SymbolError(f"{kind} is too long once encoded as a path: {value[:40]!r}...")
    return value


def encode(value: str) -> str:
    """Percent-encode a value into one path component that is never '.', '..' or hidden."""
    out = quote(value, safe="-_.~")
    if out.startswith("."):
        out = "%2E" + out[1:]
    return out


def decode(component: str) -> str:
    """Invert `encode`."""
    return unquote(component)


def partition_dir(table: str, exchange: str, symbol: str, date: dt.date) -> PurePosixPath:
    """The Hive-style directory of one partition, relative to the lake root."""
    check_value("exchange", exchange)
    check_value("symbol", symbol)
    return PurePosixPath(
        table, f"exchange={encode(exchange)}", f"symbol={encode(symbol)}", f"date={date.isoformat()}"
    )


def new_file_name(seq: int) -> str:
    """A unique data-file name that sorts by commit sequence."""
    return f"part-{seq:010d}-{uuid.uuid4().hex[:12]}.parquet"
