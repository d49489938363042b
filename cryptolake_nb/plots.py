"""Charts with matplotlib: candlesticks with volume, order-book depth, lines (live: live_chart.py).

Every function returns a matplotlib Figure built without pyplot: nothing is left in pyplot's
figure registry (a live chart redrawn every 2 s for hours would otherwise leak), and the inline
backend does not show a second copy at the end of the cell. The figures carry `_repr_png_`, so a
notebook cell (and the HTML nbconvert makes of it) shows the chart even where no matplotlib backend
was set up; in a script, `fig.savefig(...)`. matplotlib is imported on first use only.
"""
from __future__ import annotations

import functools
import io
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .errors import ConfigError

__all__ = ["plot_book", "plot_line", "plot_ohlc"]

UP, DOWN = "#26a69a", "#ef5350"  # up candles / bids, down candles / asks
OHLC_COLUMNS = ("ts", "open", "high", "low", "close")  # and `volume`, drawn in a panel below when present
_BOOK_LEVELS = ("side", "price", "size")
_BOOK_BANDS = ("exchange", "mid", "bid_size", "ask_size")


@functools.cache
def _figure_class() -> type:
    from matplotlib.figure import Figure

    class LakeFigure(Figure):
        """A Figure that shows itself as PNG in notebooks, whatever the backend."""

        def _repr_png_(self) -> bytes:
            out = io.BytesIO()
            self.savefig(out, format="png", bbox_inches="tight")
            return out.getvalue()

    return LakeFigure


def _new_figure(size: tuple[float, float]) -> Any:
    return _figure_class()(figsize=size, layout="constrained")


def _frame(data: Any, what: str) -> pd.DataFrame:
    """pandas, polars or Arrow -> pandas; anything else is a ConfigError."""
    if isinstance(data, pd.DataFrame):
        return data
    if hasattr(data, "to_pandas") and hasattr(data, "columns"):  # polars DataFrame, pyarrow Table
        return data.to_pandas()
    raise ConfigError(f"{what} takes a pandas or polars DataFrame or an Arrow table, got {type(data).__name__}")


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(f"{what} needs columns {', '.join(columns)}; missing {', '.join(missing)}")
    if df.empty:
        raise ConfigError(f"{what}: the frame has no rows to plot")


def _numbers(df: pd.DataFrame, column: str, what: str) -> np.ndarray:
    try:
        return pd.to_numeric(df[column], errors="raise").to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what}: column {column!r} must be numeric ({exc})") from None


def _times(values: pd.Series, what: str) -> np.ndarray:
    """Timestamps (aware or naive = UTC) -> matplotlib date numbers in UTC."""
    from matplotlib.dates import date2num

    typed = pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_numeric_dtype(values)  # numbers: ns
    try:
        utc = pd.to_datetime(values, utc=True) if typed else pd.to_datetime(values, utc=True, format="ISO8601")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what}: column {values.name!r} must hold times ({exc})") from None
    return date2num(utc.dt.tz_convert(None).to_numpy())


def _time_axis(ax: Any) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")


def _one(df: pd.DataFrame, column: str, value: str | None, what: str) -> pd.DataFrame:
    """Keep the rows of one `column` value (symbol, exchange): a tidy multi-symbol frame needs a choice."""
    if column not in df.columns:
        return df
    if value is not None:
        df = df[df[column] == value]
        if df.empty:
            raise ConfigError(f"{what}: no rows with {column} = {value!r}")
        return df
    found = sorted(map(str, df[column].dropna().unique()))
    if len(found) > 1:
        raise ConfigError(f"{what}: the frame holds several {column} values {found}; pass {column}=")
    return df


def _title(df: pd.DataFrame, default: str) -> str:
    names = [str(df[c].iloc[0]) for c in ("exchange", "symbol") if c in df.columns and df[c].nunique() == 1]
    return " ".join(names + [default])


def _draw_ohlc(fig: Any, df: pd.DataFrame, title: str | None, symbol: str | None, exchange: str | None,
               ax: Any = None) -> None:
    """Candles on `ax` (given: no volume panel), else on new axes of `fig` with volume below if present."""
    what = "plot_ohlc"
    _require(df, OHLC_COLUMNS, what)
    df = _one(_one(df, "symbol", symbol, what), "exchange", exchange, what)
    x = _times(df["ts"], what)
    o, h, lo, c = (_numbers(df, col, what) for col in OHLC_COLUMNS[1:])
    steps = np.diff(np.unique(x))
    width = 0.7 * (steps.min() if len(steps) else 1 / 1440)  # one bar alone: a minute wide
    colors = np.where(c >= o, UP, DOWN)
    vax = None
    if ax is None and "volume" in df.columns:
        ax, vax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    elif ax is None:
        ax = fig.subplots()
    ax.vlines(x, lo, h, colors=colors, linewidth=1, label="wicks")
    span = np.nanmax(h) - np.nanmin(lo) if np.isfinite(h).any() else 0.0
    height = np.maximum(np.abs(c - o), span * 0.002 or 1e-9)  # a doji still shows a line
    bodies = ax.bar(x, height, width, bottom=np.fmin(o, c), color=colors, label="candles")
    if "coverage" in df.columns:  # bars partly inside gaps: drawn hatched and pale
        for patch, cov in zip(bodies, _numbers(df, "coverage", what)):
            if cov < 1:
                patch.set_hatch("//")
                patch.set_alpha(0.45)
    if vax is not None:
        vax.bar(x, _numbers(df, "volume", what), width, color=colors, alpha=0.7, label="volume")
        vax.set_ylabel("volume")
    ax.set_ylabel("price")
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    _time_axis(vax if vax is not None else ax)
    ax.set_title(title or _title(df, "OHLC"))


def plot_ohlc(bars: Any, *, title: str | None = None, symbol: str | None = None, exchange: str | None = None,
              ax: Any = None) -> Any:
    """Candlesticks (teal up, red down) over a volume panel, from `ohlc()` output: ts, open, high,
    low, close[, volume] (pandas, polars or Arrow). Bars with `coverage` < 1 (partly inside a known
    gap) are hatched. A frame with several symbols needs `symbol=`. With `ax` (matplotlib Axes), the
    candles go there, without a volume panel, and `ax`'s figure is returned.

    >>> plot_ohlc(lake.ohlc("BTC-USDT", "1min"))            # doctest: +SKIP
    """
    fig = _new_figure((10, 5)) if ax is None else ax.figure
    _draw_ohlc(fig, _frame(bars, "plot_ohlc"), title, symbol, exchange, ax)
    return fig


def _draw_line(fig: Any, df: pd.DataFrame, x: str | None, y: str | Sequence[str] | None, title: str | None) -> None:
    what = "plot_line"
    if df.empty:
        raise ConfigError(f"{what}: the frame has no rows to plot")
    x = x if x is not None else "ts" if "ts" in df.columns else str(df.columns[0])
    if x not in df.columns:
        raise ConfigError(f"{what}: no column {x!r}; columns are {list(df.columns)}")
    groups = [c for c in ("exchange", "symbol") if c in df.columns and c != x and df[c].nunique() > 1]
    if y is None:
        ys = [c for c in df.columns if c != x and c not in groups and pd.api.types.is_numeric_dtype(df[c])
              and not pd.api.types.is_bool_dtype(df[c])]
        if not ys:
            raise ConfigError(f"{what}: no numeric column to plot against {x!r}; pass y=")
    else:
        ys = [y] if isinstance(y, str) else list(y)
        missing = [c for c in ys if c not in df.columns]
        if missing:
            raise ConfigError(f"{what}: no column(s) {missing}; columns are {list(df.columns)}")
    timed = x == "ts" or pd.api.types.is_datetime64_any_dtype(df[x])
    ax = fig.subplots()
    for key, part in (df.groupby(groups, sort=True) if groups else [((), df)]):
        part = part.sort_values(x)
        xs = _times(part[x], what) if timed else part[x].to_numpy()
        prefix = " ".join(map(str, key if isinstance(key, tuple) else (key,)))
        for col in ys:
            ax.plot(xs, _numbers(part, col, what), label=f"{prefix} {col}".strip())
    if timed:
        _time_axis(ax)
    else:
        ax.set_xlabel(x)
    if len(ys) == 1:
        ax.set_ylabel(ys[0])
    if len(ax.lines) > 1:
        ax.legend(loc="best", fontsize="small")
    ax.set_title(title or _title(df, ", ".join(ys)))


def plot_line(data: Any, x: str | None = None, y: str | Sequence[str] | None = None, *,
              title: str | None = None) -> Any:
    """Lines of `y` (default: every numeric column) against `x` (default `ts`, else the first column),
    one line per symbol (and exchange) of a tidy long frame. For any query result (`%%lakesql --plot`).

    >>> plot_line(lake.sql("SELECT ts, price FROM trades"), y="price")   # doctest: +SKIP
    """
    fig = _new_figure((10, 4))
    _draw_line(fig, _frame(data, "plot_line"), x, y, title)
    return fig


def _draw_book(fig: Any, df: pd.DataFrame, title: str | None, exchange: str | None) -> None:
    what = "plot_book"
    if set(_BOOK_LEVELS) <= set(df.columns):
        _require(df, _BOOK_LEVELS, what)
        _draw_depth_curves(fig.subplots(), _one(df, "exchange", exchange, what), title)
    elif set(_BOOK_BANDS) <= set(df.columns):
        _require(df, _BOOK_BANDS, what)
        _draw_bands(fig.subplots(), df if exchange is None else _one(df, "exchange", exchange, what), title)
    else:
        raise ConfigError(f"{what} takes book_at() output (columns {', '.join(_BOOK_LEVELS)}) or depth() output "
                          f"(columns {', '.join(_BOOK_BANDS)}); got columns {list(df.columns)}")


def _draw_depth_curves(ax: Any, df: pd.DataFrame, title: str | None) -> None:
    what = "plot_book"
    sides = set(df["side"].dropna().unique())
    if not sides <= {"bid", "ask"}:
        raise ConfigError(f"{what}: side must be 'bid' or 'ask', got {sorted(map(str, sides - {'bid', 'ask'}))}")
    price, size = _numbers(df, "price", what), _numbers(df, "size", what)
    best = {}
    for side, color, ascending in (("bid", UP, False), ("ask", DOWN, True)):
        mask = (df["side"] == side).to_numpy()
        if not mask.any():
            continue
        order = np.argsort(price[mask] if ascending else -price[mask], kind="stable")
        p, cum = price[mask][order], np.cumsum(size[mask][order])
        ax.step(p, cum, where="post", color=color, label=f"{side}s")
        ax.fill_between(p, cum, step="post", color=color, alpha=0.25)
        best[side] = p[0]
    if len(best) == 2:
        ax.axvline((best["bid"] + best["ask"]) / 2, color="grey", linestyle="--", linewidth=1, label="mid")
    ax.set_xlabel("price")
    ax.set_ylabel("cumulative size")
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    ax.legend(loc="upper center", fontsize="small")
    ax.set_title(title or _title(df, "order book depth"))


def _draw_bands(ax: Any, df: pd.DataFrame, title: str | None) -> None:
    what = "plot_book"
    y = np.arange(len(df))
    bid, ask = _numbers(df, "bid_size", what), _numbers(df, "ask_size", what)
    ax.barh(y - 0.2, bid, 0.4, color=UP, label="bid size in band")
    ax.barh(y + 0.2, ask, 0.4, color=DOWN, label="ask size in band")
    ax.set_yticks(y, [str(e) for e in df["exchange"]])
    ax.set_xlabel("size within the band around the mid")
    ax.legend(loc="best", fontsize="small")
    ax.set_title(title or _title(df.drop(columns="exchange"), "liquidity near the mid"))


def plot_book(book: Any, *, title: str | None = None, exchange: str | None = None) -> Any:
    """Depth chart of an order book: cumulative bid and ask size against price (from `book_at()`),
    with the mid dashed; or, from `depth()`, bid and ask size within the band per exchange.

    >>> plot_book(lake.book_at("BTC-USDT", "2024-05-01 12:00", depth=50))   # doctest: +SKIP
    """
    fig = _new_figure((8, 4))
    _draw_book(fig, _frame(book, "plot_book"), title, exchange)
    return fig
