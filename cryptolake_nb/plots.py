"""Charts with matplotlib: candlesticks with volume."""
from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["plot_ohlc"]


def plot_ohlc(bars: Any, *, title: str | None = None, ax: Any = None) -> Any:
    """Candlesticks (green up, red down) over a volume panel, from `ohlc()` output (pandas or polars)."""
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    df = bars.to_pandas() if hasattr(bars, "to_pandas") and not isinstance(bars, pd.DataFrame) else bars
    missing = {"ts", "open", "high", "low", "close", "volume"} - set(df.columns)
    if missing:
        from .errors import ConfigError

        raise ConfigError(f"plot_ohlc needs columns ts, open, high, low, close, volume; missing {sorted(missing)}")
    if ax is None:
        fig, (ax, vax) = plt.subplots(2, 1, sharex=True, figsize=(10, 5), gridspec_kw={"height_ratios": [3, 1]})
    else:
        fig, vax = ax.figure, None
    x = mdates.date2num(pd.to_datetime(df["ts"]).dt.tz_convert(None))
    width = (x[1] - x[0]) * 0.7 if len(x) > 1 else 0.0005
    up = df["close"].to_numpy() >= df["open"].to_numpy()
    colors = ["tab:green" if u else "tab:red" for u in up]
    ax.vlines(x, df["low"], df["high"], colors=colors, linewidth=1)
    body_lo = df[["open", "close"]].min(axis=1)
    body_hi = df[["open", "close"]].max(axis=1)
    ax.bar(x, (body_hi - body_lo).where(body_hi > body_lo, (df["high"] - df["low"]).max() * 0.002 + 1e-12),
           width, bottom=body_lo, color=colors)
    ax.set_ylabel("price")
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    ax.set_title(title or "OHLC")
    if vax is not None:
        vax.bar(x, df["volume"], width, color=colors)
        vax.set_ylabel("volume")
        vax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    fig.autofmt_xdate()
    return fig
