"""The lake's status report: a plain dict that renders as a compact HTML summary in notebooks.

`Lake.status()` returns a `StatusView`, so a script reads it as a dict (and prints it as JSON)
while a notebook cell shows collector, feeds, tables, memory, gaps and recent queries at a glance.
`Lake.health()` returns a `HealthView` (alerts firing; per feed state, messages/s, lag, reconnects,
open gap; flush latency, disk free); the status shows it first when it holds one under "health".
Everything shown comes from the dict: the view adds no state and never queries the lake. Every
value is escaped (SQL text, error messages and symbols are user or exchange input).
"""
from __future__ import annotations

import html
import json
from collections import Counter
from typing import Any, Iterable, Sequence

import pyarrow as pa

__all__ = ["HealthView", "StatusView", "gaps_summary"]

_SQL_SHOWN = 160  # characters of a statement shown in the table; the full text is in its tooltip


def gaps_summary(gaps: pa.Table, recent: int = 5) -> dict[str, Any]:
    """Counts of the `gaps` table by cause, and its `recent` newest rows (times as ISO strings)."""
    causes = Counter(gaps.column("cause").to_pylist()) if gaps.num_rows else Counter()
    tail = gaps.slice(max(0, gaps.num_rows - recent)).to_pylist()[::-1] if recent > 0 else []
    rows = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in tail]
    return {"total": gaps.num_rows, "by_cause": dict(sorted(causes.items())), "recent": rows}


class StatusView(dict):
    """The status dict (see `Lake.status`), shown as HTML in notebooks and as JSON in a terminal."""

    def _repr_html_(self) -> str:
        parts = [_header(self)]
        health = self.get("health")
        if health:
            parts.append(_health(health))
        if self.get("feeds") and not (health or {}).get("feeds"):
            parts.append(_table("feeds", ("exchange", "connections", "reconnects", "frames", "malformed"),
                                [[f.get(k) for k in ("exchange", "connections", "reconnects", "frames", "malformed")]
                                 for f in self["feeds"]]))
        parts.append(_tables(self.get("tables", {})))
        parts.append(_memory(self.get("memory"), self.get("flush")))
        if self.get("gaps"):
            parts.append(_gaps(self["gaps"]))
        if self.get("queries"):
            parts.append(_queries(self["queries"]))
        return f'<div class="cryptolake-status">{"".join(parts)}</div>'

    def __repr__(self) -> str:
        return json.dumps(self, indent=1, default=str)


class HealthView(dict):
    """The health dict (see `Lake.health`), shown as HTML in notebooks and as JSON in a terminal."""

    def _repr_html_(self) -> str:
        c = self.get("collector", {})
        head = (f"<p><b>lake health</b> {_esc(self.get('root'))} &mdash; collector: <b>{_esc(c.get('state'))}</b></p>")
        return f'<div class="cryptolake-health">{head}{_health(self)}</div>'

    def __repr__(self) -> str:
        return json.dumps(self, indent=1, default=str)


def _health(h: dict) -> str:
    """Alerts firing, the feeds table, and one line of flush latency, gaps, memory and disk."""
    parts = []
    firing = (h.get("alerts") or {}).get("firing") or []
    if firing:
        items = "".join(f"<li><b>{_esc(a.get('kind'))}</b> {_esc(a.get('message'))}</li>" for a in firing)
        parts.append(f'<div class="cryptolake-alerts" style="border-left:4px solid #b00020;padding-left:6px">'
                     f"<b>alerts firing: {len(firing)}</b><ul>{items}</ul></div>")
    feeds = h.get("feeds") or []
    if feeds:
        rows = []
        for f in feeds:
            per_channel = ", ".join(f"{ch} {_num(c.get('messages_per_s'), 1)}/s" for ch, c in (f.get("channels") or {}).items())
            rows.append([f.get("feed"), _Html(f"<b>{_esc(f.get('state'))}</b>"), _num(f.get("messages_per_s"), 1),
                         per_channel, _ms(f.get("lag_p50_s")), _ms(f.get("lag_max_s")), _num(f.get("idle_s"), 0),
                         f.get("reconnects"), f.get("gap_open") or "", f.get("last_error") or ""])
        parts.append(_table("feeds", ("feed", "state", "msg/s", "per channel", "lag p50 ms", "lag max ms", "idle s",
                                      "reconnects", "open gap", "last error"), rows))
    fl, gaps, mem, disk = h.get("flush") or {}, h.get("gaps") or {}, h.get("memory") or {}, h.get("disk") or {}
    bits = [f"flush last {_ms(fl.get('last_s'))} ms, p99 {_ms(fl.get('p99_s'))} ms ({_esc(fl.get('kept', 0))} kept)"
            + (f", <b>failing</b>: {_esc(fl.get('last_error'))}" if fl.get("last_error") else ""),
            f"gaps open {_esc(gaps.get('open', 0))} / total {_esc(gaps.get('total', 0))}"]
    if mem:
        bits.append(f"buffers {_mb(mem.get('used_bytes'))} MB, {_pct(mem.get('used_fraction'))} of the guard's limit")
    if disk.get("free_bytes") is not None:
        bits.append(f"disk free {disk['free_bytes'] / 2**30:.1f} GiB ({_pct(disk.get('free_fraction'))})")
    elif disk.get("error"):
        bits.append(f"disk free unknown: {_esc(disk['error'])}")
    parts.append(f"<p>{' &middot; '.join(bits)}</p>")
    return "".join(parts)


def _ms(seconds: Any) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f}"


def _pct(fraction: Any) -> str:
    return "-" if fraction is None else f"{fraction:.0%}"


def _esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


class _Html(str):
    """A cell already escaped and marked up (so `_table` does not escape it twice)."""


def _table(caption: str, head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    header = "".join(f"<th>{_esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, _Html) else _esc(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><caption>{_esc(caption)}</caption><tr>{header}</tr>{body}</table>"


def _header(s: dict) -> str:
    c = s.get("collector", {})
    errors = "".join(f"<li>{_esc(e)}</li>" for e in c.get("errors", [])[-5:])
    return (f"<p><b>lake</b> {_esc(s.get('root'))} &mdash; collector: <b>{_esc(c.get('state'))}</b></p>"
            + (f"<ul>{errors}</ul>" if errors else ""))


def _tables(tables: dict) -> str:
    used = {t: v for t, v in tables.items()
            if v.get("buffer_rows") or v.get("files") or v.get("rows_committed") or v.get("rejected")}
    rows = [[t, v.get("buffer_rows"), _num(v.get("buffer_age_s"), 1), v.get("files"), v.get("rows_committed"),
             _mb(v.get("bytes_committed")), v.get("rejected")] for t, v in used.items()]
    hidden = len(tables) - len(used)
    caption = f"tables ({hidden} empty not shown)" if hidden else "tables"
    return _table(caption, ("table", "live rows", "oldest live (s)", "files", "history rows", "history MB",
                            "rejected"), rows)


def _memory(memory: dict | None, flush: dict | None) -> str:
    bits = []
    if memory:
        bits.append(f"memory {_mb(memory.get('used_bytes'))} of {_mb(memory.get('cap_bytes'))} MB, "
                    f"spilled rows {_esc(memory.get('spilled_rows'))}, dropped rows {_esc(memory.get('dropped_rows'))}")
    if flush:
        bits.append(f"flushes {_esc(flush.get('flushes'))} ({_esc(flush.get('rows'))} rows)")
        if flush.get("last_error"):
            bits.append(f"last flush error: {_esc(flush['last_error'])}")
    return f"<p>{' &middot; '.join(bits)}</p>" if bits else ""


def _gaps(gaps: dict) -> str:
    causes = ", ".join(f"{_esc(k)} {_esc(v)}" for k, v in gaps.get("by_cause", {}).items()) or "none"
    rows = [[g.get("cause"), g.get("exchange"), g.get("symbol"), g.get("channel"), g.get("start_ts"), g.get("detail")]
            for g in gaps.get("recent", [])]
    text = f"<p><b>gaps</b> {_esc(gaps.get('total', 0))}: {causes}</p>"
    return text + (_table("recent gaps", ("cause", "exchange", "symbol", "channel", "from", "detail"), rows)
                   if rows else "")


def _queries(q: dict) -> str:
    head = (f"<p><b>queries</b> {_esc(q.get('count', 0))} (last {_esc(q.get('kept', 0))} kept): "
            f"p50 {_num(q.get('p50_ms'), 1)} ms, p99 {_num(q.get('p99_ms'), 1)} ms, max {_num(q.get('max_ms'), 1)} ms</p>")
    rows = []
    for r in q.get("recent", []):
        sql = " ".join(str(r.get("sql", "")).split())
        shown = sql if len(sql) <= _SQL_SHOWN else sql[:_SQL_SHOWN - 1] + "\u2026"
        rows.append([_num(r.get("ms"), 1), r.get("rows"), r.get("files_total"), r.get("live_rows_total"),
                     _per_table(r.get("files", {}), r.get("live_rows", {})),
                     _Html(f'<code title="{_esc(sql)}">{_esc(shown)}</code>')])
    table = _table("recent queries, newest first",
                   ("ms", "rows", "files", "live rows", "history files / live rows per table", "sql"), rows)
    return head + (table if rows else "")


def _per_table(files: dict, live: dict) -> str:
    return ", ".join(f"{t} {files.get(t, 0)}/{live.get(t, 0)}" for t in sorted(set(files) | set(live)))


def _num(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mb(value: Any) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"
