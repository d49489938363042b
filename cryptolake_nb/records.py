"""Shared conversion policy for cryptofeed objects -> Arrow columns: Decimals, timestamps, validation.

Each table module (`tables/*.py`) builds its batch from these pieces; the policy lives here once:
- Decimals become float64 through their exact string (correctly rounded); None stays NULL.
- cryptofeed's float seconds become int64 ns rounded to the microsecond (what a float carries).
- A row is rejected, with its reason and raw values, when a value that must be a finite positive
  number is not, when the exchange timestamp is missing, or when exchange/symbol cannot be stored.
- Public attributes of an object that its table does not map go, as one JSON object, to the `extra`
  column (NULL when there are none): a new cryptofeed attribute never fails a row and is not lost.
"""
from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import SymbolError
from .partitions import check_value

__all__ = [
    "EXTRA_FIELD", "IGNORED_ATTRIBUTES", "Converted", "Converter", "Reject", "bools_to_array", "build_batch",
    "decimals_to_array", "event_times", "extra_array", "extract", "finite_reasons", "nonnegative_reasons",
    "optional_times", "partition_reasons", "plain", "positive_reasons", "required_reasons",
    "seconds_to_float", "seconds_to_ns", "str_or_none", "strings_array", "timestamp_reasons", "ts_array",
    "Unread", "unmapped_attributes", "usable",
]

# A converter takes the cryptofeed objects and, in a parallel list, their receipt timestamps (float
# seconds). For a table that names its `fields` (TableSpec), an object may arrive already read: a
# plain `tuple` of those attributes in that order (see pending.py); `extract` handles both forms.
Converter = Callable[[Sequence[Any], Sequence[Any]], "Converted"]


@dataclass(frozen=True)
class Unread:
    """An object given to a table whose rows may be fields tuples, that is itself a tuple: stored
    wrapped so it is never taken for fields already read (it is rejected, shown as itself)."""

    value: tuple

    def __repr__(self) -> str:
        return repr(self.value)


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
    """Timestamps in float seconds (or None) -> float64 array, missing or junk -> NaN."""
    try:  # numbers and None (-> NaN) in one C loop; anything numpy cannot take goes one by one
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
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


def strings_array(values: Sequence[Any]) -> pa.Array:
    """Values as Arrow strings (None -> NULL, anything else through str())."""
    try:  # strings and None: converted by Arrow in one pass
        return pa.array(values, pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array([str_or_none(v) for v in values], pa.string())


def plain(v: Any) -> Any:
    """A value as JSON can hold it (for the raw values of a rejected row)."""
    return v if v is None or isinstance(v, (str, int, float, bool)) else str(v)


def usable(objs: Sequence[Any], receipts: Sequence[Any], getter: Callable[[Any], Any],
           table: str) -> tuple[list[Any], list[Any], list[Reject]]:
    """Split off objects `getter` cannot read (not what the table stores); never raises."""
    return _split(objs, receipts, getter, table, read=False)[:3]


def extract(objs: Sequence[Any], receipts: Sequence[Any], getter: Callable[[Any], Any],
            table: str) -> tuple[list[Any], list[Any], list[Reject], list[Any]]:
    """`usable`, plus what `getter` returned for each object kept, for a table that names its
    `fields`: an object that is a plain `tuple` was read already (those fields, in `getter`'s order)."""
    return _split(objs, receipts, getter, table, read=True)


def _split(objs: Sequence[Any], receipts: Sequence[Any], getter: Callable[[Any], Any], table: str,
           read: bool) -> tuple[list[Any], list[Any], list[Reject], list[Any]]:
    try:
        if read:
            return list(objs), list(receipts), [], [o if type(o) is tuple else getter(o) for o in objs]
        return list(objs), list(receipts), [], list(map(getter, objs))
    except Exception:
        pass
    ok, ok_receipts, rejects, values = [], [], [], []
    for obj, receipt in zip(objs, receipts):
        if isinstance(obj, Unread):  # a tuple given as an object: read as one (a namedtuple may fit)
            obj = obj.value
        elif read and type(obj) is tuple:
            values.append(obj)
            ok.append(obj)
            ok_receipts.append(receipt)
            continue
        try:
            values.append(getter(obj))
            ok.append(obj)
            ok_receipts.append(receipt)
        except Exception as exc:
            rejects.append(Reject(table, f"not a {table} object: {type(obj).__name__} ({exc})",
                                  {"object": repr(obj)[:500], "receipt_timestamp": plain(receipt)}))
    return ok, ok_receipts, rejects, values


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
        row = objs[i]  # an object, or its fields read already (a tuple in `raw_names` order)
        raw = ({n: plain(v) for n, v in zip(names, row)} if type(row) is tuple
               else {n: plain(getattr(row, n, None)) for n in names})
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


# -- more checks, for the tables beyond trades ------------------------------------------------

def _present_values(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    values = arr.to_numpy(zero_copy_only=False).astype(np.float64)
    present = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    return values, present


def nonnegative_reasons(columns: Mapping[str, pa.Array], out: dict[int, str]) -> None:
    """Record rows where a present value is not a finite number >= 0 (NULL is allowed)."""
    for name, arr in columns.items():
        values, present = _present_values(arr)
        with np.errstate(invalid="ignore"):
            bad = present & ~(np.isfinite(values) & (values >= 0))
        for i in np.flatnonzero(bad):
            out.setdefault(int(i), f"{name} must be a finite number >= 0, got {float(values[i])!r}")


def finite_reasons(columns: Mapping[str, pa.Array], out: dict[int, str]) -> None:
    """Record rows where a present value is NaN or infinite (any sign, zero and NULL allowed)."""
    for name, arr in columns.items():
        values, present = _present_values(arr)
        for i in np.flatnonzero(present & ~np.isfinite(values)):
            out.setdefault(int(i), f"{name} must be a finite number, got {float(values[i])!r}")


def optional_times(values: Sequence[Any], name: str, out: dict[int, str]) -> np.ndarray:
    """Float seconds of an optional time column (None -> NaN, stored NULL); a value that is present but
    not a finite number rejects its row."""
    secs = seconds_to_float(values)
    for i in np.flatnonzero(~np.isfinite(secs)):
        if values[i] is not None:
            out.setdefault(int(i), f"{name} is not a finite number of seconds: {plain(values[i])!r}")
    return secs


def event_times(ts_values: Sequence[Any], receipts: Sequence[Any], out: dict[int, str]) -> tuple[np.ndarray, np.ndarray]:
    """(ts, receipt) in float seconds for tables whose exchanges may send no time of their own
    (Kraken and Bitfinex tickers, HITBTC candles, BitMEX liquidations): the exchange's time, else the
    receipt time; a missing receipt time is the exchange's. Rows with neither are rejected."""
    ts = seconds_to_float(ts_values)
    receipt = seconds_to_float(receipts)
    ts = np.where(np.isfinite(ts), ts, receipt)
    receipt = np.where(np.isfinite(receipt), receipt, ts)
    for i in np.flatnonzero(~np.isfinite(ts)):
        out.setdefault(int(i), "neither an exchange timestamp nor a receipt timestamp")
    return ts, receipt


def bools_to_array(values: Sequence[Any], name: str, out: dict[int, str]) -> pa.Array:
    """True/False/None -> bool (None -> NULL); anything else rejects its row (stored NULL until dropped)."""
    clean = []
    for i, v in enumerate(values):
        if v is None or isinstance(v, (bool, np.bool_)):
            clean.append(None if v is None else bool(v))
        else:
            clean.append(None)
            out.setdefault(i, f"{name} must be true, false or missing, got {plain(v)!r}")
    return pa.array(clean, pa.bool_())


# -- `extra`: public attributes a table does not map --------------------------------------------

# the exchange's raw message (kept by cryptofeed only when asked to): a copy of the capture, not a field
IGNORED_ATTRIBUTES = frozenset({"raw"})
EXTRA_FIELD = pa.field("extra", pa.string())  # see extra_array

# (type, mapped names) -> (unmapped attribute names on the type, whether instances have a __dict__)
_PLANS: dict[tuple[type, frozenset[str]], tuple[tuple[str, ...], bool]] = {}


def unmapped_attributes(cls: type, mapped: frozenset[str]) -> tuple[tuple[str, ...], bool]:
    """The public data attributes of `cls` that are not in `mapped` (methods, `_private` names and
    IGNORED_ATTRIBUTES left out), and whether instances carry a `__dict__` that may hold more.
    Computed once per type and cached: cryptofeed's types are extension types with fixed fields."""
    key = (cls, mapped)
    plan = _PLANS.get(key)
    if plan is None:
        names = []
        for name in dir(cls):
            if name.startswith("_") or name in mapped or name in IGNORED_ATTRIBUTES:
                continue
            try:
                attr = inspect.getattr_static(cls, name)
            except AttributeError:
                continue
            if not isinstance(attr, (staticmethod, classmethod)) and not callable(attr):
                names.append(name)
        plan = _PLANS[key] = (tuple(names), getattr(cls, "__dictoffset__", 0) != 0)
    return plan


def _jsonable(v: Any) -> Any:
    """A value as JSON holds it exactly: Decimals as their string, non-finite floats as strings."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)


def _extra_of(obj: Any, names: tuple[str, ...], dynamic: bool, mapped: frozenset[str]) -> str | None:
    found: dict[str, Any] = {}
    for name in names:
        try:
            value = getattr(obj, name)
        except Exception:  # a property that raises is skipped, never fails the row
            continue
        if value is not None:
            found[name] = _jsonable(value)
    if dynamic:
        for name, value in getattr(obj, "__dict__", {}).items():
            if (value is not None and not name.startswith("_") and name not in mapped
                    and name not in IGNORED_ATTRIBUTES and name not in found and not callable(value)):
                found[name] = _jsonable(value)
    return json.dumps(found, sort_keys=True) if found else None


def extra_array(objs: Sequence[Any], mapped: frozenset[str]) -> pa.Array:
    """The `extra` column: per object, its public attributes outside `mapped` with a value other than
    None, as a JSON object string; NULL when it has none. When no object's type has such attributes
    (cryptofeed 2.4.1's types as the tables map them) this is one set of types and an all-NULL array."""
    plans = {cls: unmapped_attributes(cls, mapped) for cls in set(map(type, objs))}
    if not any(names or dynamic for names, dynamic in plans.values()):
        return pa.nulls(len(objs), pa.string())
    return pa.array([_extra_of(o, *plans[type(o)], mapped) for o in objs], pa.string())
