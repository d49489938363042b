"""What one `%%lakesql` cell does once its line is parsed: query, time, explain, chart, refresh in place.

`magics.py` turns the line into a `CellRequest`; `run_cell` carries it out. `--plot` draws with
`LiveChart` (live_chart.py: candlesticks for ts/open/high/low/close, else lines). `--every` keeps the cell
running and updates its outputs through IPython display handles (one for the result or chart, one
for a caption line), so a notebook watches a live market in place instead of appending outputs;
it ends after `--for`, or on Ctrl-C / the kernel's interrupt, leaving the last refresh shown.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, MutableMapping

from .errors import ConfigError
from .live_chart import LiveChart

if TYPE_CHECKING:
    from .lake import Lake

__all__ = ["CellRequest", "parse_duration", "run_cell", "timing_line", "watch"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
MIN_EVERY_S = 0.05  # faster than this is no longer watching, it is hammering the engine


@dataclass(frozen=True)
class CellRequest:
    """A parsed `%%lakesql` cell: the SQL, its bound parameters and the options."""

    sql: str
    params: dict[str, Any]
    to: str = "pandas"  # pandas | polars | arrow
    source: str = "all"  # all | live | history
    out: str | None = None  # notebook variable that also receives the result
    explain: bool = False
    time: bool = False
    plot: bool = False
    every_s: float | None = None
    for_s: float | None = None


def parse_duration(text: str) -> float:
    """'2s', '500ms', '1.5m', '1h' or a bare number of seconds -> seconds (> 0)."""
    m = _DURATION.match(text or "")
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(f"not a duration: {text!r}; use e.g. 2s, 500ms, 1m")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def run_cell(lake: "Lake", req: CellRequest, namespace: MutableMapping[str, Any]) -> Any:
    """Carry out one cell; return what the cell shows as its result (None when it displayed itself)."""
    if req.explain:
        plan = lake.explain(req.sql, req.params, source=req.source)
        _store(namespace, req, plan)
        return plan
    if req.every_s is not None:
        watch(lake, req, namespace)
        return None
    result, line = _query(lake, req)
    _store(namespace, req, result)
    if req.time:
        print(line)
    if req.plot:
        from IPython.display import display

        display(LiveChart().update(result))  # line chart, or candlesticks for ts/open/high/low/close
        return None
    return result


def watch(lake: "Lake", req: CellRequest, namespace: MutableMapping[str, Any], *,
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> int:
    """Re-run every `req.every_s` seconds, updating the same outputs, until `req.for_s` has passed or
    the cell is interrupted; return the number of runs. Errors end the watch and propagate."""
    from IPython.display import Pretty, display

    every = req.every_s or 1.0
    chart = LiveChart() if req.plot else None  # one figure, redrawn on every run (made before the clock starts)
    runs, why, text = 0, "interrupted", ""
    body = caption = None
    started = clock()
    deadline = None if req.for_s is None else started + req.for_s
    try:
        while True:
            tick = clock()
            result, line = _query(lake, req)
            runs += 1
            _store(namespace, req, result)
            shown = chart.update(result) if chart is not None else result
            text = _caption(runs, req, line)
            if body is None:
                body = display(shown, display_id=True)
                caption = display(Pretty(text), display_id=True)
            else:
                body.update(shown)
                caption.update(Pretty(text))
            next_at = tick + every
            if deadline is not None and next_at > deadline:
                why = f"--for {_fmt_s(req.for_s)} elapsed"
                break
            sleep(max(0.0, next_at - clock()))
    except KeyboardInterrupt:
        pass  # Ctrl-C / interrupt is how a watch without --for ends: not an error
    if caption is not None:
        caption.update(Pretty(f"{text} · stopped ({why})"))
    return runs


def timing_line(entry: dict[str, Any], total_ms: float) -> str:
    """'total 4.2 ms · DuckDB 3.1 ms · 3 file(s) · 120 live row(s) · 10 row(s)' from a query record."""
    return (f"total {total_ms:.1f} ms · DuckDB {entry.get('duckdb_ms', 0.0):.1f} ms · "
            f"{entry.get('files_total', 0)} file(s) · {entry.get('live_rows_total', 0):,} live row(s) · "
            f"{entry.get('rows', 0):,} row(s)")


def _query(lake: "Lake", req: CellRequest) -> tuple[Any, str]:
    from .lake import convert

    started = time.perf_counter()
    table, entry = lake.query_timed(req.sql, req.params, source=req.source)
    result = convert(table, req.to)  # type: ignore[arg-type]
    return result, timing_line(entry, (time.perf_counter() - started) * 1e3)


def _store(namespace: MutableMapping[str, Any], req: CellRequest, value: Any) -> None:
    if req.out:
        namespace[req.out] = value


def _caption(runs: int, req: CellRequest, line: str | None) -> str:
    now = time.strftime("%H:%M:%S", time.gmtime())
    head = f"run {runs} at {now} UTC, every {_fmt_s(req.every_s)}"
    if req.for_s is not None:
        head += f" for {_fmt_s(req.for_s)}"
    return head + (f" · {line}" if line and req.time else "")


def _fmt_s(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds:g}s"
