"""cryptofeed objects -> Arrow record batches: the Decimal, timestamp and validation policy."""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import SymbolError
from .partitions import check_value
from .schema import schema_for

__all__ = ["CONVERTERS", "Converted", "Converter", "Reject", "decimals_to_float", "seconds_to_float", "seconds_to_ns", "trades_to_batch"]

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


def decimals_to_float(values: Sequence[Any]) -> np.ndarray:
    """Decimals (or numbers) -> float64, correctly rounded; unparseable or missing -> NaN."""
    try:
        strings = pa.array([None if v is None else str(v) for v in values], pa.string())
        return pc.cast(strings, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, TypeError):
        return np.array([_to_float(v) for v in values], dtype=np.float64)


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


def _str_or_none(v: Any) -> str | None:
    return None if v is None else str(v)


_TRADE_FIELDS = operator.attrgetter("exchange", "symbol", "side", "amount", "price", "id", "type", "timestamp")


def _usable(objs: Sequence[Any], receipts: Sequence[Any], getter: Callable[[Any], tuple],
            table: str) -> tuple[list[Any], list[Any], list[Reject]]:
    """Split off objects that are not what the table stores (never raises)."""
    try:
        for obj in objs:
            getter(obj)
        return list(objs), list(receipts), []
    except Exception:
        pass
    ok: list[Any] = []
    ok_receipts: list[Any] = []
    rejects: list[Reject] = []
    for obj, receipt in zip(objs, receipts):
        try:
            getter(obj)
            ok.append(obj)
            ok_receipts.append(receipt)
        except Exception as exc:
            rejects.append(Reject(table, f"not a {table} object: {type(obj).__name__} ({exc})", {"object": repr(obj)[:500], "receipt_timestamp": _plain(receipt)}))
    return ok, ok_receipts, rejects


def trades_to_batch(objs: Sequence[Any], receipts: Sequence[Any]) -> Converted:
    """cryptofeed Trade objects -> a `trades` batch; invalid rows become Rejects."""
    schema = schema_for("trades")
    items, receipts, unusable = _usable(objs, receipts, _TRADE_FIELDS, "trades")
    exchange = [t.exchange for t in items]
    symbol = [t.symbol for t in items]
    price = decimals_to_float([t.price for t in items])
    amount = decimals_to_float([t.amount for t in items])
    ts = seconds_to_float([t.timestamp for t in items])
    receipt = seconds_to_float(receipts)
    receipt = np.where(np.isfinite(receipt), receipt, ts)
    reasons = _reasons(exchange, symbol, price, amount, ts)
    rejects: list[Reject] = list(unusable)
    keep = np.ones(len(items), dtype=bool)
    for i, reason in reasons.items():
        keep[i] = False
        t, r = items[i], receipts[i]
        rejects.append(Reject("trades", reason, _raw_trade(t, r)))
    cols = {
        "exchange": pa.array(exchange, pa.string()),
        "symbol": pa.array(symbol, pa.string()),
        "side": pa.array([_str_or_none(t.side) for t in items], pa.string()),
        "amount": pa.array(amount, pa.float64()),
        "price": pa.array(price, pa.float64()),
        "trade_id": pa.array([_str_or_none(t.id) for t in items], pa.string()),
        "type": pa.array([_str_or_none(t.type) for t in items], pa.string()),
        "ts": pa.array(seconds_to_ns(ts), pa.int64()).cast(schema.field("ts").type),
        "receipt_ts": pa.array(seconds_to_ns(receipt), pa.int64()).cast(schema.field("receipt_ts").type),
    }
    batch = pa.RecordBatch.from_arrays([cols[f.name] for f in schema], schema=schema)
    if len(rejects) > len(unusable):
        batch = batch.filter(pa.array(keep))
    return Converted(batch, rejects)


def _reasons(exchange: list, symbol: list, price: np.ndarray, amount: np.ndarray, ts: np.ndarray) -> dict[int, str]:
    """Row index -> why the row cannot be stored."""
    out: dict[int, str] = {}
    with np.errstate(invalid="ignore"):
        for name, arr in (("price", price), ("amount", amount)):
            for i in np.flatnonzero(~(np.isfinite(arr) & (arr > 0))):
                out.setdefault(int(i), f"{name} must be a finite positive number, got {float(arr[i])!r}")
    for i in np.flatnonzero(~np.isfinite(ts)):
        out.setdefault(int(i), "missing or non-numeric exchange timestamp")
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
    return out


def _raw_trade(t: Any, receipt: Any) -> dict[str, Any]:
    names = ("exchange", "symbol", "side", "amount", "price", "id", "type", "timestamp")
    raw = {n: _plain(getattr(t, n, None)) for n in names}
    raw["receipt_timestamp"] = _plain(receipt)
    return raw


def _plain(v: Any) -> Any:
    return v if v is None or isinstance(v, (str, int, float, bool)) else str(v)


CONVERTERS: dict[str, Converter] = {"trades": trades_to_batch}
