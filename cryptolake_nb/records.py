"""Shared conversion policy for cryptofeed objects -> Arrow columns: Decimals, timestamps, validation.

Each table module (`tables/*.py`) builds its batch from these pieces; the policy lives here once:
- Decimals become float64 through their exact string (correctly rounded); None stays NULL.
- cryptofeed's float seconds become int64 ns rounded to the microsecond (what a float carries).
- A row is rejected, with its reason and raw values, when a value that must be a finite positive
  number is not, when the exchange timestamp is missing, or when exchange/symbol cannot be stored.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import SymbolError
from .partitions import check_value

__all__ = [
    "Converted", "Converter", "Reject", "build_batch", "decimals_to_array", "partition_reasons", "plain",
    "positive_reasons", "required_reasons", "seconds_to_float", "seconds_to_ns", "str_or_none",
    "timestamp_reasons", "ts_array", "usable",
]

# A converter takes the cryptofeed objects and, in a parallel list, their receipt timestamps (float
# seconds). Two flat lists rather than (obj, receipt) tuples: a tuple per row is a GC-tracked
# container, and with 10^5 of them pending the cyclic collector made each append ~8x slower.
Converter = Callable[[Sequence[Any], Sequence[Any]], "Converted"]


@dataclass(frozen=True)
class Reject:
    """A row kept aside instead of stored, with the reason and the raw values."""

    table: str
    reason: str
    values: dict[str, Any]


@dataclass(frozen=True)
class Converted:
    """The valid rows of a batch of objects, and the rejected ones."""

    batch: pa.RecordBatch
    rejects: list[Reject] = field(default_factory=list)


def decimals_to_array(values: Sequence[Any]) -> pa.Array:
    """Decimals (or numbers, or None) -> float64, correctly rounded; None -> NULL, junk -> NaN."""
    strings = [None if v is None else str(v) for v in values]
    try:
        return pc.cast(pa.array(strings, pa.string()), pa.float64())
    except (pa.ArrowInvalid, TypeError):
        return pa.array([None if v is None else _to_float(v) for v in values], pa.float64())


def _to_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def seconds_to_float(values: Sequence[Any]) -> np.ndarray:
    """Timestamps in float seconds (or None) -> float64 array, missing -> NaN."""
    return np.array([_to_float(v) for v in values], dtype=np.float64)


def seconds_to_ns(secs: np.ndarray) -> np.ndarray:
    """Float seconds since the epoch -> int64 ns, rounded to the microsecond (NaN -> 0)."""
    out = np.zeros(len(secs), dtype=np.int64)
    ok = np.isfinite(secs)
    out[ok] = np.round(secs[ok] * 1e6).astype(np.int64) * 1000
    return out


def ts_array(secs: np.ndarray, nullable: bool = False) -> pa.Array:
    """Float seconds -> timestamp[ns, UTC]; NaN -> NULL when `nullable`."""
    arr = pa.array(seconds_to_ns(secs), pa.int64(), mask=~np.isfinite(secs) if nullable else None)
    return arr.cast(pa.timestamp("ns", tz="UTC"))


def str_or_none(v: Any) -> str | None:
    return None if v is None else str(v)


def plain(v: Any) -> Any:
    """A value as JSON can hold it (for the raw values of a rejected row)."""
    return v if v is None or isinstance(v, (str, int, float, bool)) else str(v)


def usable(objs: Sequence[Any], receipts: Sequence[Any], getter: Callable[[Any], Any],
           table: str) -> tuple[list[Any], list[Any], list[Reject]]:
    """Split off objects `getter` cannot read (not what the table stores); never raises."""
    try:
        for obj in objs:
            getter(obj)
        return list(objs), list(receipts), []
    except Exception:
        pass
    ok, ok_receipts, rejects = [], [], []
    for obj, receipt in zip(objs, receipts):
        try:
            getter(obj)
            ok.append(obj)
            ok_receipts.append(receipt)
        except Exception as exc:
            rejects.append(Reject(table, f"not a {table} object: {type(obj).__name__} ({exc})",
                                  {"object": repr(obj)[:500], "receipt_timestamp": plain(receipt)}))
    return ok, ok_receipts, rejects


def positive_reasons(columns: Mapping[str, pa.Array], out: dict[int, str]) -> None:
    """Record rows where a present value is not a finite positive number (NULL is allowed)."""
    for name, arr in columns.items():
        values = arr.to_numpy(zero_copy_only=False)
        present = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        with np.errstate(invalid="ignore"):
            bad = present & ~(np.isfinite(values) & (values > 0))
        for i in np.flatnonzero(bad):
            out.setdefault(int(i), f"{name} must be a finite positive number, got {float(values[i])!r}")


def required_reasons(columns: Mapping[str, pa.Array], out: dict[int, str]) -> None:
    """Record rows where a value the table cannot do without is missing or NaN."""
    for name, arr in columns.items():
        values = arr.to_numpy(zero_copy_only=False).astype(np.float64)
        for i in np.flatnonzero(~np.isfinite(values)):
            out.setdefault(int(i), f"{name} is missing or not a finite number")


def timestamp_reasons(ts: np.ndarray, out: dict[int, str]) -> None:
    for i in np.flatnonzero(~np.isfinite(ts)):
        out.setdefault(int(i), "missing or non-numeric exchange timestamp")


def partition_reasons(exchange: Sequence[Any], symbol: Sequence[Any], out: dict[int, str]) -> None:
    """Record rows whose exchange or symbol cannot become a partition path."""
    bad: dict[tuple, str] = {}
    for key in set(zip(exchange, symbol)):
        try:
            check_value("exchange", key[0])
            check_value("symbol", key[1])
        except SymbolError as exc:
            bad[key] = str(exc)
    if bad:
        for i, key in enumerate(zip(exchange, symbol)):
            if key in bad:
                out.setdefault(i, bad[key])


def build_batch(schema: pa.Schema, columns: Mapping[str, Any], reasons: Mapping[int, str],
                objs: Sequence[Any], receipts: Sequence[Any], raw_names: Iterable[str],
                unusable: list[Reject]) -> Converted:
    """Assemble the batch in schema order, drop rejected rows, and describe them."""
    table = schema.metadata[b"cryptolake.table"].decode()
    rejects = list(unusable)
    names = tuple(raw_names)
    for i, reason in sorted(reasons.items()):
        raw = {n: plain(getattr(objs[i], n, None)) for n in names}
        raw["receipt_timestamp"] = plain(receipts[i])
        rejects.append(Reject(table, reason, raw))
    arrays = [pa.array(columns[f.name], f.type) if not isinstance(columns[f.name], pa.Array)
              else columns[f.name].cast(f.type) for f in schema]
    batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
    if reasons:
        keep = np.ones(len(objs), dtype=bool)
        keep[list(reasons)] = False
        batch = batch.filter(pa.array(keep))
    return Converted(batch, rejects)
