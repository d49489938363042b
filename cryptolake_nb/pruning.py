"""Which committed files a query can need: exchange/symbol/time conditions -> a file filter.

Two sources of conditions: helpers pass them explicitly (`Lake.query_arrow(exchange=..., ...)`), and
plain SQL has them in its WHERE clauses, read off DuckDB's own parse tree (`json_serialize_sql`).
Files the manifest shows cannot hold a matching row are dropped before DuckDB opens any.

Pruning must never change a result, so extraction is deliberately narrow. A table is pruned only
when the statement names it exactly once, as the lone FROM of a SELECT (no join, no sample), and
only by top-level AND conjuncts of that SELECT's WHERE of the forms

    exchange|symbol = 'v' | $param          exchange|symbol IN ('a', 'b', ...)
    ts  =|<|<=|>|>=  value                  ts BETWEEN value AND value
    ts::DATE (or date(ts))  =|<|<=|>|>=|BETWEEN  'YYYY-MM-DD' | DATE '...' | $param

A WHERE drops every row for which such a conjunct is not TRUE, so a file none of whose rows can
make it TRUE contributes nothing. Anything else (OR, NOT, functions, outer references, a table
named twice, a CTE shadowing it) simply prunes nothing. Time values are evaluated by DuckDB itself
(the same casts the query applies) and widened by a microsecond on each side.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

from .manifest import FileEntry

__all__ = ["Prune", "prune_from_tree", "weakest"]

_DAY_NS = 86_400 * 10**9
_SLACK_NS = 1_000  # DuckDB may compare at microsecond precision: never prune closer than that
_FLIP = {"COMPARE_LESSTHAN": "COMPARE_GREATERTHAN", "COMPARE_GREATERTHAN": "COMPARE_LESSTHAN",
         "COMPARE_LESSTHANOREQUALTO": "COMPARE_GREATERTHANOREQUALTO",
         "COMPARE_GREATERTHANOREQUALTO": "COMPARE_LESSTHANOREQUALTO", "COMPARE_EQUAL": "COMPARE_EQUAL"}
# casts whose result DuckDB compares with a TIMESTAMPTZ column as the same instant we compute
TIME_CASTS = frozenset({"TIMESTAMP", "TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE", "DATE"})

ToNs = Callable[[Any, "str | None"], "int | None"]  # (value, cast type or None) -> ns since epoch


@dataclass(frozen=True)
class Prune:
    """A file filter: keep a committed file only if its rows could match. None = no restriction."""

    exchanges: frozenset[str] | None = None
    symbols: frozenset[str] | None = None
    start_ns: int | None = None  # keep files with max_ts >= start_ns
    end_ns: int | None = None  # keep files with min_ts < end_ns

    @classmethod
    def of(cls, exchange: str | None = None, symbols: Iterable[str] | None = None,
           start_ns: int | None = None, end_ns: int | None = None) -> "Prune":
        """The helpers' keyword form (`Lake.query_arrow(exchange=, symbols=, start_ns=, end_ns=)`)."""
        if isinstance(symbols, str):
            symbols = [symbols]
        return cls(None if exchange is None else frozenset([exchange]),
                   None if symbols is None else frozenset(symbols), start_ns, end_ns)

    def keeps(self, e: FileEntry) -> bool:
        return ((self.exchanges is None or e.exchange in self.exchanges)
                and (self.symbols is None or e.symbol in self.symbols)
                and (self.start_ns is None or e.max_ts >= self.start_ns)
                and (self.end_ns is None or e.min_ts < self.end_ns))

    def __and__(self, other: "Prune") -> "Prune":
        """Both filters at once (each is safe alone, so their conjunction is)."""
        return Prune(_meet(self.exchanges, other.exchanges), _meet(self.symbols, other.symbols),
                     _max(self.start_ns, other.start_ns), _min(self.end_ns, other.end_ns))

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.exchanges, self.symbols, self.start_ns, self.end_ns))

    def describe(self) -> list[str]:
        """The conditions in words, for `--explain`."""
        out = []
        for name, values in (("exchange", self.exchanges), ("symbol", self.symbols)):
            if values is not None:
                out.append(f"{name} in {sorted(values)}" if len(values) != 1 else f"{name} = {next(iter(values))!r}")
        if self.start_ns is not None:
            out.append(f"ts >= {_iso(self.start_ns)}")
        if self.end_ns is not None:
            out.append(f"ts < {_iso(self.end_ns)}")
        return out


def prune_from_tree(tree: Mapping[str, Any] | None, tables: Iterable[str], params: Mapping[str, Any] | None,
                    to_ns: ToNs) -> dict[str, Prune]:
    """Per table of `tables`, the file filter implied by the statement `tree` (json_serialize_sql)."""
    if not tree or tree.get("error") or len(tree.get("statements", ())) != 1:
        return {}
    wanted = {t.lower(): t for t in tables}
    refs: dict[str, int] = {}
    for node in _nodes(tree):
        if node.get("type") == "BASE_TABLE" and isinstance(node.get("table_name"), str):
            key = node["table_name"].lower()
            refs[key] = refs.get(key, 0) + 1
    out: dict[str, Prune] = {}
    for node in _nodes(tree):
        source = node.get("from_table") if node.get("type") == "SELECT_NODE" else None
        if not isinstance(source, dict) or source.get("type") != "BASE_TABLE":
            continue
        key = str(source.get("table_name", "")).lower()
        if (key not in wanted or refs.get(key) != 1 or source.get("schema_name") or source.get("catalog_name")
                or source.get("sample") or source.get("at_clause") or node.get("sample")):
            continue
        names = {(source.get("alias") or key).lower()}
        found = Prune()
        for conjunct in _conjuncts(node.get("where_clause")):
            found = found & _condition(conjunct, names, params or {}, to_ns)
        if found:
            out[wanted[key]] = found
    return out


def _nodes(tree: Any) -> Iterator[dict]:
    """Every JSON object in the tree, depth first."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _conjuncts(expr: Any) -> Iterator[dict]:
    if not isinstance(expr, dict):
        return
    if expr.get("type") == "CONJUNCTION_AND":
        for child in expr.get("children", ()):
            yield from _conjuncts(child)
    else:
        yield expr


def _condition(expr: dict, names: set[str], params: Mapping[str, Any], to_ns: ToNs) -> Prune:
    """The filter one conjunct implies, or no restriction when it is not one of the known forms."""
    kind = expr.get("type")
    if expr.get("class") == "COMPARISON" and kind in _FLIP:
        left, right, op = expr.get("left"), expr.get("right"), kind
        if _column(left, names) is None and _column(right, names) is not None:
            left, right, op = right, left, _FLIP[kind]
        return _compare(_column(left, names), op, right, params, to_ns)
    if kind == "COMPARE_IN":
        children = expr.get("children") or []
        col = _column(children[0], names) if children else None
        if col in ("exchange", "symbol"):
            values = [_string(v, params) for v in children[1:]]
            if values and all(v is not None for v in values):
                return Prune(**{col + "s": frozenset(values)})
        return Prune()
    if kind == "COMPARE_BETWEEN":
        col = _column(expr.get("input"), names)
        low = _compare(col, "COMPARE_GREATERTHANOREQUALTO", expr.get("lower"), params, to_ns)
        high = _compare(col, "COMPARE_LESSTHANOREQUALTO", expr.get("upper"), params, to_ns)
        return low & high
    return Prune()


def _compare(col: str | None, op: str, value: Any, params: Mapping[str, Any], to_ns: ToNs) -> Prune:
    if col in ("exchange", "symbol"):
        text = _string(value, params) if op == "COMPARE_EQUAL" else None
        return Prune() if text is None else Prune(**{col + "s": frozenset([text])})
    if col == "ts":
        t = _instant(value, params, to_ns, date=False)
        if t is None:
            return Prune()
        lo, hi = t - _SLACK_NS, t + _SLACK_NS
        return {"COMPARE_EQUAL": Prune(start_ns=lo, end_ns=hi + 1), "COMPARE_GREATERTHAN": Prune(start_ns=lo),
                "COMPARE_GREATERTHANOREQUALTO": Prune(start_ns=lo), "COMPARE_LESSTHAN": Prune(end_ns=hi),
                "COMPARE_LESSTHANOREQUALTO": Prune(end_ns=hi + 1)}[op]
    if col == "ts::date":
        day = _instant(value, params, to_ns, date=True)  # midnight UTC (the session time zone)
        if day is None:
            return Prune()
        lo, hi = day - _SLACK_NS, day + _DAY_NS + _SLACK_NS
        return {"COMPARE_EQUAL": Prune(start_ns=lo, end_ns=hi), "COMPARE_GREATERTHAN": Prune(start_ns=hi - 2 * _SLACK_NS),
                "COMPARE_GREATERTHANOREQUALTO": Prune(start_ns=lo), "COMPARE_LESSTHAN": Prune(end_ns=day + _SLACK_NS),
                "COMPARE_LESSTHANOREQUALTO": Prune(end_ns=hi)}[op]
    return Prune()


def _column(expr: Any, names: set[str]) -> str | None:
    """'exchange', 'symbol', 'ts' or 'ts::date' when `expr` is that column of the FROM table."""
    if not isinstance(expr, dict):
        return None
    if expr.get("class") == "CAST" and not expr.get("try_cast") and _type_name(expr) == "DATE":
        return "ts::date" if _column(expr.get("child"), names) == "ts" else None
    if expr.get("class") != "COLUMN_REF":
        return None
    parts = [str(p).lower() for p in expr.get("column_names", ())]
    if len(parts) == 2 and parts[0] in names:
        parts = parts[1:]
    return parts[0] if len(parts) == 1 and parts[0] in ("exchange", "symbol", "ts") else None


def _string(expr: Any, params: Mapping[str, Any]) -> str | None:
    """A plain string literal or a `$param` bound to a str; anything else is unknown."""
    literal = _literal(expr)
    if literal is not None:
        return literal
    value = _param(expr, params)
    return value if isinstance(value, str) else None


def _instant(expr: Any, params: Mapping[str, Any], to_ns: ToNs, *, date: bool) -> int | None:
    """ns since the epoch of a time value, as DuckDB casts it; None when not a known constant."""
    literal = _literal(expr)
    if literal is not None:
        return to_ns(literal, "DATE" if date else None)
    if isinstance(expr, dict) and expr.get("class") == "CAST" and not expr.get("try_cast"):
        cast, text = _type_name(expr), _literal(expr.get("child"))
        if text is not None and cast in TIME_CASTS and (cast == "DATE" or not date):
            return to_ns(text, cast)
        return None
    value = _param(expr, params)
    if date:  # a datetime compared with a DATE column compares as a timestamp: not a day filter
        ok = isinstance(value, str) or (isinstance(value, dt.date) and not isinstance(value, dt.datetime))
        return to_ns(value, "DATE") if ok else None
    return None if value is None or isinstance(value, (bool, int, float)) else to_ns(value, None)


def _literal(expr: Any) -> str | None:
    if isinstance(expr, dict) and expr.get("class") == "CONSTANT":
        lit = expr.get("literal") or {}
        if lit.get("kind") == "STRING" and isinstance(lit.get("text"), str):
            return lit["text"]
    return None


def _param(expr: Any, params: Mapping[str, Any]) -> Any:
    if isinstance(expr, dict) and expr.get("class") == "PARAMETER":
        return params.get(str(expr.get("identifier")))
    return None


def _type_name(expr: dict) -> str:
    t = expr.get("type_expr") or {}
    return "" if t.get("children") else str(t.get("type_name", "")).upper()


def _meet(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    return b if a is None else a if b is None else a & b


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _iso(ns: int) -> str:
    """An instant to the millisecond (which hides the microsecond of slack), trailing zeros dropped."""
    ms = round(ns / 1e6)
    text = dt.datetime.fromtimestamp(ms / 1e3, dt.timezone.utc).isoformat(timespec="milliseconds")
    return text.replace(".000+", "+").replace("+00:00", "Z")


def weakest(prunes: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One `Lake.sources` pruning for reads with the prunings `prunes`: only what every one allows."""
    listed = list(prunes)
    out: dict[str, Any] = {}
    for key in ("exchange", "symbols"):
        values = [p.get(key) for p in listed]
        if all(v is not None and v == values[0] for v in values):
            out[key] = values[0]
    for key, pick in (("start_ns", min), ("end_ns", max)):
        values = [p.get(key) for p in listed]
        if all(v is not None for v in values):
            out[key] = pick(values)
    return out
