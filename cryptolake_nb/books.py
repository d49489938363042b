"""Order-book helpers over the `l2_book` view (history and live rows): book_at, top_of_book, depth.

The book after update U is the last full group (snapshot or checkpoint) with id B <= U, then the
deltas with B < id <= U (tables/l2_book.py). "The book at instant T" is the book after the last update
whose `ts` is at or before T, in arrival order: U = max(update_id) over the snapshots and deltas with
ts <= T, so an exchange clock that steps back never mixes two states.
"""
from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from .analytics import parse_interval, to_ns
from .errors import ConfigError
from .lake import Output, active_lake, convert
from .schema import TS
from .tables import TABLES
from .tables._book_flush import commit_seq

if TYPE_CHECKING:
    from .lake import Lake

__all__ = ["book_at", "depth", "top_of_book"]

TopSource = Literal["both", "l2_book", "ticker"]

# the update at or before $ts (per exchange) and the last full book at or before it
_BOUNDS = """
WITH u AS (
    SELECT exchange, max(update_id) AS u FROM l2_book
    WHERE {where} AND kind <> 'checkpoint' AND epoch_ns(ts) <= $ts GROUP BY exchange
)
SELECT exchange, u, (SELECT max(f.update_id) FROM l2_book f WHERE f.symbol = $symbol AND f.exchange = u.exchange
                     AND f.kind <> 'delta' AND f.update_id <= u.u) AS b
FROM u ORDER BY exchange
"""

# the levels that full book and the deltas after it leave, the best $depth a side; with the ids
# known, the scan skips every other row of the files
_LEVELS = """
SELECT side, price, size, row_number() OVER (
    PARTITION BY side ORDER BY CASE WHEN side = 'bid' THEN -price ELSE price END) AS level
FROM (
    SELECT side, price, arg_max(size, update_id) AS size FROM l2_book
    WHERE symbol = $symbol AND exchange = $exchange AND update_id BETWEEN $b AND $u
      AND side IS NOT NULL AND (kind = 'delta') = (update_id > $b)
    GROUP BY side, price
)
WHERE size > 0 QUALIFY level <= $depth ORDER BY side = 'ask', level
"""

_ROWS = ("SELECT exchange, update_id, kind <> 'delta' AS is_full, kind <> 'checkpoint' AS real, side = 'bid' AS bid,"
         " price, size, epoch_ns(ts) AS t FROM l2_book WHERE {where} ORDER BY exchange, update_id, is_full")

_TICKER = ("SELECT exchange, (epoch_ns(ts) // $step) * $step AS bucket, arg_max(bid, (ts, receipt_ts)) AS bid,"
           " arg_max(ask, (ts, receipt_ts)) AS ask FROM ticker WHERE {where} GROUP BY exchange, bucket")

_EMPTY_BOOK = pa.schema([
    pa.field("exchange", pa.string()), pa.field("symbol", pa.string()), pa.field("side", pa.string()),
    pa.field("level", pa.int64()), pa.field("price", pa.float64()), pa.field("size", pa.float64()),
]).empty_table()

_TOP = pa.schema([
    pa.field("ts", TS), pa.field("exchange", pa.string()), pa.field("source", pa.string()),
    pa.field("derived", pa.bool_()), pa.field("bid", pa.float64()), pa.field("bid_size", pa.float64()),
    pa.field("ask", pa.float64()), pa.field("ask_size", pa.float64()),
])


def _check(symbol: Any, exchange: Any) -> None:
    if not isinstance(symbol, str):
        raise ConfigError(f"symbol must be a string, got {symbol!r}")
    if exchange is not None and not isinstance(exchange, str):
        raise ConfigError(f"exchange must be a string or None, got {exchange!r}")


def _where(symbol: str, exchange: str | None) -> tuple[str, dict[str, Any]]:
    if exchange is None:
        return "symbol = $symbol", {"symbol": symbol}
    return "symbol = $symbol AND exchange = $exchange", {"symbol": symbol, "exchange": exchange}


def _history_start(lake: "Lake", symbol: str, exchange: str | None, t_ns: int) -> int | None:
    """The earliest time the committed files needed for the book at `t_ns` can start: for each exchange,
    the files starting at or before `t_ns` from the last commit that has such a file. Each file opens
    with a full book and commits take the live rows in arrival order, so the update at or before
    `t_ns` and its full book are in those files or live. None: no committed file is needed."""
    last: dict[str, tuple[int, list[int]]] = {}
    for e in lake.committed_files("l2_book"):  # the lake's manifest snapshot; a Lake accessor would be nicer
        if e.symbol != symbol or (exchange is not None and e.exchange != exchange) or e.min_ts > t_ns:
            continue
        seq = commit_seq(e.path)
        if e.exchange not in last or last[e.exchange][0] != seq:
            last[e.exchange] = (seq, [])
        last[e.exchange][1].append(e.min_ts)
    return min((min(ts) for _, ts in last.values()), default=None)


def _one_exchange(rows: pa.Table | list[dict], exchange: str | None, symbol: str) -> None:
    found = sorted({r["exchange"] for r in rows} if isinstance(rows, list) else set(rows.column("exchange").to_pylist()))
    if exchange is None and len(found) > 1:
        raise ConfigError(f"{symbol!r} is on several exchanges {found}: pass exchange=")


def book_at(symbol: str, ts: Any, depth: int = 10, *, exchange: str | None = None, to: Output = "pandas",
            lake: "Lake | None" = None) -> Any:
    """The L2 book of `symbol` at instant `ts` (str, datetime, Timestamp or ns): one row per level,
    `exchange, symbol, side, level, price, size`, bids best first (level 1) then asks. Empty if no
    update is at or before `ts`. `depth` is at most the lake's `book_depth`, the depth stored exactly.

    >>> book_at("BTC-USDT", "2024-05-01 12:00", depth=5, exchange="BINANCE")   # doctest: +SKIP
    """
    lake = active_lake(lake)
    _check(symbol, exchange)
    t_ns = to_ns(ts, "ts")
    if t_ns is None:
        raise ConfigError("ts is required: the instant to rebuild the book at")
    limit = lake.config.book_depth
    if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= limit:
        raise ConfigError(f"depth must be an integer from 1 to the lake's book_depth ({limit}), got {depth!r}")
    where, params = _where(symbol, exchange)
    prune: dict[str, Any] = {"symbols": (symbol,), "end_ns": t_ns + 1, "exchange": exchange,
                             "start_ns": _history_start(lake, symbol, exchange, t_ns)}
    bounds = lake.query_arrow(_BOUNDS.format(where=where), {**params, "ts": t_ns}, **prune).to_pylist()
    _one_exchange(bounds, exchange, symbol)
    parts = [_EMPTY_BOOK]
    for row in bounds:
        if row["b"] is None:  # deltas with no full book before them: nothing exact to give
            continue
        levels = lake.query_arrow(_LEVELS, {"symbol": symbol, "exchange": row["exchange"], "b": row["b"], "u": row["u"],
                                            "depth": depth}, **{**prune, "exchange": row["exchange"]})
        n = levels.num_rows
        parts.append(pa.table({"exchange": pa.array([row["exchange"]] * n, pa.string()),
                               "symbol": pa.array([symbol] * n, pa.string()), "side": levels.column("side"),
                               "level": levels.column("level").cast(pa.int64()), "price": levels.column("price"),
                               "size": levels.column("size")}, schema=_EMPTY_BOOK.schema))
    return convert(pa.concat_tables(parts), to)


def top_of_book(symbol: str, interval: Any = "1s", *, exchange: str | None = None, start: Any = None,
                end: Any = None, source: TopSource = "both", to: Output = "pandas", lake: "Lake | None" = None) -> Any:
    """Best bid and ask per `interval` bucket: `ts, exchange, source, derived, bid, bid_size, ask,
    ask_size, mid, spread, crossed`, one row per source and non-empty bucket, as of the bucket's last
    update. `source="l2_book"` rebuilds them from the L2 rows (`derived=True`); `"ticker"` takes the
    exchanges' own ticker (no sizes); `"both"` gives each that exists.

    >>> top_of_book("BTC-USDT", "1min", exchange="BINANCE", start="2024-05-01")   # doctest: +SKIP
    """
    lake = active_lake(lake)
    _check(symbol, exchange)
    if source not in ("both", "l2_book", "ticker"):
        raise ConfigError(f"source must be 'both', 'l2_book' or 'ticker', got {source!r}")
    step = parse_interval(interval)
    start_ns, end_ns = to_ns(start, "start"), to_ns(end, "end")
    has_ticker = "ticker" in TABLES and {"bid", "ask"} <= set(TABLES["ticker"].schema.names)
    if source == "ticker" and not has_ticker:
        raise ConfigError("this lake has no ticker table with bid and ask; use source='l2_book'")
    where, params = _where(symbol, exchange)
    parts = []
    if source in ("both", "l2_book"):
        prune = {"symbols": (symbol,), "exchange": exchange, "end_ns": end_ns,
                 "start_ns": None if start_ns is None else _history_start(lake, symbol, exchange, start_ns)}
        rows = lake.query_arrow(_ROWS.format(where=where), params, **prune)
        parts.append(_derived_top(rows, step, start_ns, end_ns))
    if source in ("both", "ticker") and has_ticker:
        tw = where + "".join(f" AND epoch_ns(ts) {op} ${n}" for n, op, v in (("start", ">=", start_ns), ("end", "<", end_ns))
                             if v is not None)
        tparams = {**params, "step": step, **{n: v for n, v in (("start", start_ns), ("end", end_ns)) if v is not None}}
        t = lake.query_arrow(_TICKER.format(where=tw), tparams, symbols=(symbol,), exchange=exchange,
                             start_ns=start_ns, end_ns=end_ns)
        n = t.num_rows
        parts.append(pa.table({
            "ts": pc.cast(t.column("bucket"), pa.int64()).cast(TS), "exchange": t.column("exchange"),
            "source": pa.array(["ticker"] * n, pa.string()), "derived": pa.array([False] * n, pa.bool_()),
            "bid": t.column("bid"), "bid_size": pa.nulls(n, pa.float64()),
            "ask": t.column("ask"), "ask_size": pa.nulls(n, pa.float64())}, schema=_TOP))
    out = pa.concat_tables(parts) if parts else _TOP.empty_table()
    _one_exchange(out, exchange, symbol)
    out = out.sort_by([("ts", "ascending"), ("source", "ascending"), ("exchange", "ascending")])
    bid, ask = out.column("bid"), out.column("ask")
    out = out.append_column("mid", pc.divide(pc.add(bid, ask), 2.0))
    out = out.append_column("spread", pc.subtract(ask, bid))
    return convert(out.append_column("crossed", pc.greater_equal(bid, ask)), to)


def _derived_top(rows: pa.Table, step: int, start_ns: int | None, end_ns: int | None) -> pa.Table:
    """Replay the L2 rows (ordered by exchange, update id, deltas before full books) and keep, per
    bucket, the best levels after its last update. Python, one batch of rows at a time."""
    out: dict[tuple[str, int], tuple] = {}
    books: dict[bool, dict] = {True: {}, False: {}}
    heaps: dict[bool, list] = {True: [], False: []}
    prev = None   # (exchange, update id, full) of the group being applied
    real = False  # whether the update being applied came from the exchange (not only a checkpoint)
    pending = None  # (exchange, time) of the last real update, recorded once its last row is applied
    names = ("exchange", "update_id", "is_full", "real", "bid", "price", "size", "t")
    for batch in rows.to_batches(max_chunksize=1 << 20):
        cols = [batch.column(c).to_pylist() for c in names]
        for ex, uid, full, is_real, side, price, size, t in zip(*cols):
            if (ex, uid, full) != prev:
                if prev is None or prev[:2] != (ex, uid):
                    if pending is not None:
                        _record(out, pending, books, heaps, step, start_ns, end_ns)
                    pending, real = None, False
                if prev is not None and prev[0] != ex:
                    books, heaps = {True: {}, False: {}}, {True: [], False: []}
                if full:
                    for which in (True, False):
                        books[which].clear()
                        heaps[which].clear()
                prev = (ex, uid, full)
            if is_real and not real:
                real, pending = True, (ex, t)
            if side is not None:
                if size > 0:
                    books[side][price] = size
                    heapq.heappush(heaps[side], -price if side else price)
                else:
                    books[side].pop(price, None)
    if pending is not None:
        _record(out, pending, books, heaps, step, start_ns, end_ns)
    keys = sorted(out)
    values = [out[k] for k in keys]
    return pa.table({
        "ts": pa.array([k[1] for k in keys], pa.int64()).cast(TS), "exchange": pa.array([k[0] for k in keys], pa.string()),
        "source": pa.array(["l2_book"] * len(keys), pa.string()), "derived": pa.array([True] * len(keys), pa.bool_()),
        **{name: pa.array([v[j] for v in values], pa.float64()) for j, name in enumerate(("bid", "bid_size", "ask", "ask_size"))},
    }, schema=_TOP)


def _record(out: dict, update: tuple[str, int], books: dict, heaps: dict, step: int, start_ns: int | None,
            end_ns: int | None) -> None:
    ex, t = update
    if (start_ns is None or t >= start_ns) and (end_ns is None or t < end_ns):
        out[(ex, t // step * step)] = (*_best(books[True], heaps[True], True), *_best(books[False], heaps[False], False))


def _best(book: dict, heap: list, bid: bool) -> tuple[float | None, float | None]:
    while heap:
        price = -heap[0] if bid else heap[0]
        if price in book:
            return price, book[price]
        heapq.heappop(heap)
    return None, None


def depth(symbol: str, ts: Any, pct: float = 1.0, *, exchange: str | None = None, to: Output = "pandas",
          lake: "Lake | None" = None) -> Any:
    """Liquidity within `pct` percent of the mid at instant `ts`, one row per exchange: `exchange,
    symbol, ts, mid, bid_size, bid_notional, bid_levels, ask_size, ask_notional, ask_levels, complete`.
    Sizes are in the base currency, notionals price * size. Only the stored `book_depth` levels are
    known exactly: `complete` is False when the band may reach beyond them.

    >>> depth("BTC-USDT", "2024-05-01 12:00", pct=0.5, exchange="BINANCE")   # doctest: +SKIP
    """
    lake = active_lake(lake)
    if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 0 < pct <= 100:
        raise ConfigError(f"pct must be a number in (0, 100], got {pct!r}")
    limit = lake.config.book_depth
    book = book_at(symbol, ts, depth=limit, exchange=exchange, to="arrow", lake=lake).to_pylist()
    rows = []
    for ex in sorted({r["exchange"] for r in book}):
        sides = {s: [r for r in book if r["exchange"] == ex and r["side"] == s] for s in ("bid", "ask")}
        if not sides["bid"] or not sides["ask"]:
            continue  # no mid without both sides
        mid = (sides["bid"][0]["price"] + sides["ask"][0]["price"]) / 2
        lo, hi = mid * (1 - pct / 100), mid * (1 + pct / 100)
        row: dict[str, Any] = {"exchange": ex, "symbol": symbol, "ts": to_ns(ts, "ts"), "mid": mid}
        complete = True
        for s, inside in (("bid", lambda p: p >= lo), ("ask", lambda p: p <= hi)):
            levels = [r for r in sides[s] if inside(r["price"])]
            row.update({f"{s}_size": sum(r["size"] for r in levels),
                        f"{s}_notional": sum(r["price"] * r["size"] for r in levels), f"{s}_levels": len(levels)})
            complete &= len(sides[s]) < limit or not inside(sides[s][-1]["price"])
        rows.append({**row, "complete": complete})
    schema = pa.schema([("exchange", pa.string()), ("symbol", pa.string()), ("ts", TS), ("mid", pa.float64()),
                        ("bid_size", pa.float64()), ("bid_notional", pa.float64()), ("bid_levels", pa.int64()),
                        ("ask_size", pa.float64()), ("ask_notional", pa.float64()), ("ask_levels", pa.int64()),
                        ("complete", pa.bool_())])
    table = pa.Table.from_pylist(rows, schema=pa.schema([f.with_type(pa.int64()) if f.name == "ts" else f for f in schema]))
    return convert(table.set_column(2, "ts", table.column("ts").cast(TS)), to)
