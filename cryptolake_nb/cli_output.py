"""How `cryptolake` prints: query results as a table, CSV or JSON; reports (status, verify) as JSON or a table."""
from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import pandas as pd

__all__ = ["FORMATS", "json_default", "print_frame", "print_report"]

FORMATS = ("table", "csv", "json")


def json_default(value: Any) -> Any:
    """JSON for what status dicts hold besides plain types: datetimes, paths, numpy scalars."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return str(value)


def print_frame(frame: pd.DataFrame, fmt: str, out: TextIO) -> None:
    """A query result in `fmt`: an aligned table (all rows), CSV with a header, or a JSON array of
    objects (timestamps as ISO 8601 with microseconds, UTC)."""
    if fmt == "csv":
        frame.to_csv(out, index=False, date_format="%Y-%m-%dT%H:%M:%S.%f%z")
    elif fmt == "json":
        out.write(frame.to_json(orient="records", date_format="iso", date_unit="us", force_ascii=False))
        out.write("\n")
    elif fmt == "table":
        if frame.empty:
            out.write(" ".join(map(str, frame.columns)) + "\n" if len(frame.columns) else "")
        else:
            out.write(frame.to_string(index=False) + "\n")
        out.write(f"({len(frame)} row{'s' if len(frame) != 1 else ''})\n")
    else:
        raise ValueError(f"unknown format {fmt!r}")


def print_report(report: Mapping[str, Any], fmt: str, out: TextIO) -> None:
    """A nested report (status, health, verify): indented JSON, or a table per section."""
    if fmt == "json":
        out.write(json.dumps(report, indent=1, default=json_default) + "\n")
        return
    for line in _lines(report, ""):
        out.write(line + "\n")


def _lines(value: Mapping[str, Any], prefix: str) -> list[str]:
    """Scalars as `key  value` lines; a mapping of mappings or a list of mappings as a table."""
    lines: list[str] = []
    scalars = [(k, v) for k, v in value.items() if not isinstance(v, (Mapping, list, tuple))]
    width = max((len(prefix + str(k)) for k, _ in scalars), default=0)
    lines += [f"{prefix + str(k):<{width}}  {_cell(v)}" for k, v in scalars]
    for key, sub in value.items():
        name = prefix + str(key)
        if isinstance(sub, Mapping):
            rows = _rows_of_mapping(sub)
            if rows is not None:
                lines += ["", f"[{name}]", *_grid(rows)] if rows else []
            elif sub:
                lines += ["", f"[{name}]", *_lines(sub, "")]
        elif isinstance(sub, (list, tuple)):
            if sub and all(isinstance(r, Mapping) for r in sub):
                lines += ["", f"[{name}]", *_grid([dict(r) for r in sub])]
            elif sub:
                lines += ["", f"[{name}]", *(f"  {_cell(v)}" for v in sub)]
    return lines


def _rows_of_mapping(sub: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """{name: {col: scalar}} -> rows with a `name` column (only the rows that hold something)."""
    if not sub or not all(isinstance(v, Mapping) for v in sub.values()):
        return None
    if any(isinstance(c, (Mapping, list, tuple)) for v in sub.values() for c in v.values()):
        return None
    return [{"name": k, **v} for k, v in sub.items() if any(c not in (0, None, "", 0.0) for c in v.values())]


def _grid(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(f"{v:<{w}}" for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return [line(columns), *(line(r) for r in cells)]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, default=json_default)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value)
