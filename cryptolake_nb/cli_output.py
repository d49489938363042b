"""How `cryptolake` prints: query results as a table, CSV or JSON; reports (status, verify) as JSON or a table."""
from __future__ import annotations

import datetime as dt
import json
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import pandas as pd

__all__ = ["FORMATS", "PROG", "json_default", "print_error", "print_frame", "print_report"]

FORMATS = ("table", "csv", "json")
PROG = "cryptolake"


def print_error(message: str) -> None:
    """The one line an error gets on stderr."""
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()


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
    lines = _lines(report, "")
    for line in lines[1:] if lines and not lines[0] else lines:  # no blank first line
        out.write(line + "\n")


def _lines(value: Mapping[str, Any], path: str) -> list[str]:
    """Scalars as `key  value` lines; then each nested section under its dotted path: a mapping of
    flat mappings or a list of mappings as a table, any other mapping recursively."""
    lines: list[str] = []
    scalars = [(k, v) for k, v in value.items() if not isinstance(v, (Mapping, list, tuple))]
    width = max((len(str(k)) for k, _ in scalars), default=0)
    lines += [f"{str(k):<{width}}  {_cell(v)}" for k, v in scalars]
    for key, sub in value.items():
        name = f"{path}.{key}" if path else str(key)
        if isinstance(sub, Mapping):
            rows = _rows_of_mapping(sub)
            if rows is not None:
                lines += _table(name, rows)
            elif sub:
                lines += ["", f"[{name}]", *_lines(sub, name)]
        elif isinstance(sub, (list, tuple)) and sub:
            if all(isinstance(r, Mapping) for r in sub):
                lines += _table(name, [dict(r) for r in sub])
            else:
                lines += ["", f"[{name}]", *(_cell(v) for v in sub)]
    return lines


def _rows_of_mapping(sub: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """{name: {col: scalar}} -> rows with a `name` column (only the rows that hold something)."""
    if not sub or not all(isinstance(v, Mapping) for v in sub.values()):
        return None
    if any(isinstance(c, (Mapping, list, tuple)) for v in sub.values() for c in v.values()):
        return None  # not a table: shown section by section
    return [{"name": k, **v} for k, v in sub.items() if any(c not in (0, None, "", 0.0) for c in v.values())]


def _table(name: str, rows: list[dict[str, Any]]) -> list[str]:
    """A grid of the rows' scalar columns; their nested mappings as tables of their own below."""
    if not rows:
        return []
    flat = [{k: v for k, v in r.items() if not isinstance(v, Mapping)} for r in rows]
    lines = ["", f"[{name}]", *_grid(flat)]
    for i, row in enumerate(rows):
        label = row.get("name", row.get("feed", i))
        for key, sub in row.items():
            if isinstance(sub, Mapping) and sub:
                nested = _rows_of_mapping(sub)
                lines += _table(f"{name}.{label}.{key}", nested) if nested is not None else \
                    ["", f"[{name}.{label}.{key}]", *_lines(sub, f"{name}.{label}.{key}")]
    return lines


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
