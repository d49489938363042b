"""Charts: real matplotlib figures from real lake output; their artists match the rows they came from."""
from __future__ import annotations

import asyncio
from decimal import Decimal

import numpy as np
import pandas as pd
import polars as pl
import pytest
from cryptofeed.types import OrderBook
from IPython.core.interactiveshell import InteractiveShell
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from cryptolake_nb import ConfigError, LiveChart, plot_book, plot_line, plot_ohlc
from cryptolake_nb.plots import DOWN, UP

from feeding import put

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


@pytest.fixture
def bars_lake(lake, make_trade):
    """Six 1 s buckets of BTC-USDT (alternately up and down, one doji), half committed, half live."""
    prices = [(100, 101, 103), (103, 102, 100), (100, 100, 100.5), (99, 104, 105), (105, 101, 101), (101, 102, 102)]
    trades = []
    for b, (o, c, extra) in enumerate(prices):
        for k, p in enumerate((o, extra, c)):
            trades.append(make_trade(p, 1 + k, T0 + b + k * 0.3, id=str(len(trades))))  # consecutive: no gaps
    put(lake, trades[:9])
    lake.flush()
    put(lake, trades[9:])
    return lake


def body_container(fig: Figure):
    ax = fig.axes[0]
    return next(c for c in ax.containers if c.get_label() == "candles")


def test_candles_one_body_per_bar_coloured_by_direction(bars_lake):
    bars = bars_lake.ohlc("BTC-USDT", "1s")
    assert len(bars) == 6
    fig = plot_ohlc(bars)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    bodies = body_container(fig)
    assert len(bodies) == len(bars)
    for patch, (_, row) in zip(bodies, bars.iterrows()):
        assert patch.get_facecolor() == to_rgba(UP if row.close >= row.open else DOWN)
        assert patch.get_y() == pytest.approx(min(row.open, row.close))
    up = [p for p in bodies if p.get_facecolor() == to_rgba(UP)]
    assert len(up) == int((bars.close >= bars.open).sum()) == 4  # one doji (open == close) counts as up
    doji = bodies[2]
    assert 0 < doji.get_height() < 0.1  # still visible, not a full bar
    wicks = fig.axes[0].collections[0]
    lows_highs = [(seg[0][1], seg[1][1]) for seg in wicks.get_segments()]
    assert lows_highs == list(zip(bars.low, bars.high))


def test_volume_panel_and_labels(bars_lake):
    bars = bars_lake.ohlc("BTC-USDT", "1s")
    fig = plot_ohlc(bars, title="BTC 1 s")
    price_ax, volume_ax = fig.axes
    volume = next(c for c in volume_ax.containers if c.get_label() == "volume")
    assert [p.get_height() for p in volume] == list(bars.volume) == [6.0] * 6
    assert price_ax.get_ylabel() == "price" and volume_ax.get_ylabel() == "volume"
    assert volume_ax.get_xlabel() == "time (UTC)" and price_ax.get_title() == "BTC 1 s"
    assert plot_ohlc(bars).axes[0].get_title() == "OHLC"  # no symbol column for one symbol: plain default


def test_without_volume_or_into_given_axes_candles_alone(bars_lake):
    bars = bars_lake.ohlc("BTC-USDT", "1s")
    fig = plot_ohlc(bars.drop(columns="volume"))
    assert len(fig.axes) == 1 and len(body_container(fig)) == 6 and fig.axes[0].get_xlabel() == "time (UTC)"
    host = Figure()
    left, right = host.subplots(1, 2)
    assert plot_ohlc(bars, ax=right) is host
    assert len(host.axes) == 2 and not left.containers and len(right.containers[0]) == 6
    assert [c.get_label() for c in right.containers] == ["candles"]  # no volume panel when placed


def test_polars_and_arrow_frames_draw_the_same_candles(bars_lake):
    pandas = plot_ohlc(bars_lake.ohlc("BTC-USDT", "1s"))
    for to in ("polars", "arrow"):
        fig = plot_ohlc(bars_lake.ohlc("BTC-USDT", "1s", to=to))
        assert [(p.get_x(), p.get_height(), p.get_facecolor()) for p in body_container(fig)] == \
               [(p.get_x(), p.get_height(), p.get_facecolor()) for p in body_container(pandas)]


def test_bars_inside_gaps_are_hatched(bars_lake):
    bars = bars_lake.ohlc("BTC-USDT", "1s")
    bars.loc[1, "coverage"] = 0.5
    fig = plot_ohlc(bars)
    assert [p.get_hatch() for p in body_container(fig)] == [None, "//", None, None, None, None]


def test_several_symbols_need_a_choice(bars_lake, make_trade):
    put(bars_lake, [make_trade(10, 1, T0 + 0.5, symbol="ETH-USDT", id="1")])
    both = bars_lake.ohlc(["BTC-USDT", "ETH-USDT"], "1s")
    with pytest.raises(ConfigError, match="several symbol"):
        plot_ohlc(both)
    fig = plot_ohlc(both, symbol="ETH-USDT")
    assert len(body_container(fig)) == 1 and fig.axes[0].get_title() == "ETH-USDT OHLC"
    with pytest.raises(ConfigError, match="no rows with symbol"):
        plot_ohlc(both, symbol="XRP-USDT")


def test_bad_frames_raise_config_errors(bars_lake):
    bars = bars_lake.ohlc("BTC-USDT", "1s")
    with pytest.raises(ConfigError, match="missing close"):
        plot_ohlc(bars.drop(columns="close"))
    with pytest.raises(ConfigError, match="no rows"):
        plot_ohlc(bars.iloc[:0])
    with pytest.raises(ConfigError, match="no rows"):
        plot_ohlc(bars_lake.ohlc("NOPE-USDT", "1s"))
    with pytest.raises(ConfigError, match="numeric"):
        plot_ohlc(bars.assign(open="x"))
    with pytest.raises(ConfigError, match="times"):
        plot_ohlc(bars.assign(ts="not a time"))
    with pytest.raises(ConfigError, match="DataFrame"):
        plot_ohlc([1, 2, 3])


def test_figures_render_as_png_in_ipython():
    bars = pd.DataFrame({"ts": pd.to_datetime([T0, T0 + 60], unit="s", utc=True), "open": [1.0, 2.0],
                         "high": [2.5, 3.0], "low": [0.5, 1.5], "close": [2.0, 1.8], "volume": [3.0, 4.0]})
    fig = plot_ohlc(bars)
    png = fig._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    InteractiveShell.clear_instance()
    try:
        data, _ = InteractiveShell.instance().display_formatter.format(fig)
    finally:
        InteractiveShell.clear_instance()
    assert data["image/png"][:8] == b"\x89PNG\r\n\x1a\n"


def test_line_plot_one_line_per_symbol(bars_lake, make_trade):
    put(bars_lake, [make_trade(10 + i, 1, T0 + i, symbol="ETH-USDT", id=str(i)) for i in range(4)])
    bars = bars_lake.ohlc(["BTC-USDT", "ETH-USDT"], "1s")
    fig = plot_line(bars, y="close")
    ax = fig.axes[0]
    assert sorted(line.get_label() for line in ax.lines) == ["BTC-USDT close", "ETH-USDT close"]
    eth = next(line for line in ax.lines if line.get_label().startswith("ETH"))
    assert list(eth.get_ydata()) == [10.0, 11.0, 12.0, 13.0]
    assert ax.get_ylabel() == "close" and ax.get_xlabel() == "time (UTC)"
    assert ax.get_legend() is not None


def test_line_plot_defaults_and_errors(bars_lake):
    result = bars_lake.sql("SELECT price, amount, side FROM trades ORDER BY ts")
    fig = plot_line(result)  # no ts: x is the first column, y every other numeric one
    assert [line.get_label() for line in fig.axes[0].lines] == ["amount"] and fig.axes[0].get_xlabel() == "price"
    with pytest.raises(ConfigError, match="no column 'nope'"):
        plot_line(result, x="nope")
    with pytest.raises(ConfigError, match="no numeric column"):
        plot_line(result[["side"]])
    with pytest.raises(ConfigError, match="no rows"):
        plot_line(result.iloc[:0])
    assert len(plot_line(pl.from_pandas(result), x="price", y=["amount"]).axes[0].lines) == 1


def send_book(lake, bids: dict, asks: dict, ts: float, exchange: str = "BINANCE") -> None:
    book = OrderBook(exchange, "BTC-USDT", bids={Decimal(str(p)): Decimal(str(s)) for p, s in bids.items()},
                     asks={Decimal(str(p)): Decimal(str(s)) for p, s in asks.items()})
    book.delta, book.timestamp, book.sequence_number, book.checksum = None, ts, None, None
    asyncio.run(lake.callbacks(["l2_book"])["l2_book"](book, ts + 0.01))


def test_book_depth_curves_are_cumulative_from_the_touch(lake):
    send_book(lake, {99: 1, 98: 2, 97: 4}, {101: 0.5, 102: 1.5, 104: 3}, T0)
    book = lake.book_at("BTC-USDT", pd.Timestamp(T0 + 1, unit="s", tz="UTC"))
    fig = plot_book(book)
    ax = fig.axes[0]
    bids = next(line for line in ax.lines if line.get_label() == "bids")
    asks = next(line for line in ax.lines if line.get_label() == "asks")
    assert list(bids.get_xdata()) == [99, 98, 97] and list(bids.get_ydata()) == [1, 3, 7]
    assert list(asks.get_xdata()) == [101, 102, 104] and list(asks.get_ydata()) == [0.5, 2, 5]
    assert to_rgba(bids.get_color()) == to_rgba(UP) and to_rgba(asks.get_color()) == to_rgba(DOWN)
    mid = next(line for line in ax.lines if line.get_label() == "mid")
    assert list(mid.get_xdata()) == [100, 100]
    assert ax.get_xlabel() == "price" and ax.get_ylabel() == "cumulative size"
    assert ax.get_title() == "BINANCE BTC-USDT order book depth"


def test_book_from_depth_bands_and_bad_books(lake):
    send_book(lake, {99: 1, 98: 2}, {101: 0.5, 150: 9}, T0)
    at = pd.Timestamp(T0 + 1, unit="s", tz="UTC")
    bands = lake.depth("BTC-USDT", at, pct=2.0)
    fig = plot_book(bands)
    widths = sorted(p.get_width() for p in fig.axes[0].patches)
    assert widths == sorted([bands.bid_size[0], bands.ask_size[0]]) == [0.5, 3.0]
    with pytest.raises(ConfigError, match="no rows"):
        plot_book(lake.book_at("BTC-USDT", pd.Timestamp(T0 - 10, unit="s", tz="UTC")))
    with pytest.raises(ConfigError, match="book_at"):
        plot_book(pd.DataFrame({"price": [1.0]}))
    with pytest.raises(ConfigError, match="side must be"):
        plot_book(pd.DataFrame({"side": ["buy"], "price": [1.0], "size": [1.0]}))


def test_live_chart_redraws_the_same_figure(bars_lake, make_trade):
    chart = LiveChart()
    empty = chart.update(bars_lake.ohlc("BTC-USDT", "1s", start=pd.Timestamp(T0 + 100, unit="s", tz="UTC")))
    assert empty.axes[0].texts[0].get_text() == "no rows yet"
    first = chart.update(bars_lake.ohlc("BTC-USDT", "1s"))
    assert first is empty and len(body_container(first)) == 6 and len(first.axes) == 2
    put(bars_lake, [make_trade(50, 2, T0 + 6.5, id="18")])
    again = chart.show(bars_lake.ohlc("BTC-USDT", "1s"))  # outside a notebook: redraw only
    assert again is first and len(body_container(again)) == 7 and len(again.axes) == 2 and chart.updates == 3
    lines = LiveChart("line", y="price").update(bars_lake.sql("SELECT ts, price FROM trades"))
    assert len(lines.axes[0].lines) == 1 and len(lines.axes[0].lines[0].get_xdata()) == 19
    with pytest.raises(ConfigError, match="kind"):
        LiveChart("pie")
    with pytest.raises(ConfigError, match="missing"):
        LiveChart("ohlc").update(pd.DataFrame({"ts": [1]}))


def test_live_chart_dates_stay_in_utc(bars_lake):
    fig = LiveChart("ohlc").update(bars_lake.ohlc("BTC-USDT", "1s"))
    x = np.array([p.get_x() + p.get_width() / 2 for p in body_container(fig)])
    from matplotlib.dates import num2date

    assert num2date(x[0]).timestamp() == pytest.approx(T0, abs=1e-3)
