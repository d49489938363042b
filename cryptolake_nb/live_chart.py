"""A chart redrawn in place: one Figure and one notebook output, refreshed for a live market."""
from __future__ import annotations

from typing import Any

from .errors import ConfigError
from .plots import OHLC_COLUMNS, _draw_book, _draw_line, _draw_ohlc, _frame, _new_figure
from .progress import in_notebook

__all__ = ["LiveChart"]


class LiveChart:
    """One figure redrawn in place, for watching a live market (`%%lakesql --plot --every 2s`).

    `update(frame)` clears and redraws the same Figure and returns it; an empty frame (no rows yet)
    shows a placeholder instead of raising. `show(frame)` also puts it in the notebook the first
    time and replaces that output afterwards (a display id), so the cell holds one image.

    >>> chart = LiveChart("ohlc")                                      # doctest: +SKIP
    >>> for _ in range(30): chart.show(lake.ohlc("BTC-USDT", "1s")); time.sleep(2)
    """

    KINDS = ("auto", "ohlc", "line", "book")

    def __init__(self, kind: str = "auto", *, title: str | None = None, size: tuple[float, float] = (10, 5),
                 **options: Any) -> None:
        if kind not in self.KINDS:
            raise ConfigError(f"kind must be one of {self.KINDS}, got {kind!r}")
        self.kind = kind
        self.title = title
        self.options = options  # x=, y= for lines; symbol=, exchange= for candles
        self.figure = _new_figure(size)
        self.updates = 0
        self._handle: Any = None

    def update(self, data: Any) -> Any:
        """Redraw the figure from `data` (same kinds of frames as the plot_* functions); return it."""
        df = _frame(data, "LiveChart")
        self.figure.clear()
        kind = self.kind
        if kind == "auto":
            kind = "ohlc" if set(OHLC_COLUMNS) <= set(df.columns) else "line"
        if df.empty:
            ax = self.figure.subplots()
            ax.text(0.5, 0.5, "no rows yet", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            ax.set_title(self.title or "")
        elif kind == "ohlc":
            _draw_ohlc(self.figure, df, self.title, self.options.get("symbol"), self.options.get("exchange"))
        elif kind == "book":
            _draw_book(self.figure, df, self.title, self.options.get("exchange"))
        else:
            _draw_line(self.figure, df, self.options.get("x"), self.options.get("y"), self.title)
        self.updates += 1
        return self.figure

    def show(self, data: Any) -> Any:
        """`update(data)`, then show it in the notebook in place (outside a notebook: only update)."""
        fig = self.update(data)
        if in_notebook():
            from IPython.display import display

            if self._handle is None:
                self._handle = display(fig, display_id=True)
            else:
                self._handle.update(fig)
        return fig
