"""Progress bars for long operations: shown in notebooks, silent in tests and scripts.

Long operations (`lake.replay` of a large capture, `lake.compact`) report `(done, total)` through a
plain callable, so the modules doing the work know nothing of tqdm. `ProgressBar` is that callable:
it opens a tqdm bar on the first report, only when progress is wanted. "Wanted" is the caller's
explicit `progress=True/False`, else whether the code runs in a Jupyter kernel (a ZMQ shell): a
terminal IPython, a script or pytest stays quiet, so logs and captured output hold no bar noise.
"""
from __future__ import annotations

import sys
import threading
from typing import Any

from .errors import ConfigError

__all__ = ["ProgressBar", "in_notebook", "progress_wanted"]


def in_notebook() -> bool:
    """True in a Jupyter kernel (IPython's ZMQInteractiveShell), False in a terminal, script or test."""
    if "IPython" not in sys.modules:  # never import IPython just to learn it is not running
        return False
    shell = sys.modules["IPython"].get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def progress_wanted(progress: bool | None) -> bool:
    """The caller's explicit choice, else: in a notebook."""
    if progress is None:
        return in_notebook()
    if not isinstance(progress, bool):
        raise ConfigError(f"progress must be True, False or None (automatic), got {progress!r}")
    return progress


def _bar_class(notebook: bool) -> Any:
    """tqdm's widget bar in a notebook that has ipywidgets, its text bar (to stderr) otherwise.

    Not tqdm.auto: without ipywidgets it warns into the cell; the text bar renders in notebooks
    and in executed HTML alike.
    """
    if notebook:
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            pass
        else:
            from tqdm.notebook import tqdm as widget_bar

            return widget_bar
    from tqdm.std import tqdm as text_bar

    return text_bar


class ProgressBar:
    """A `(done, total)` callable that draws a tqdm bar when progress is wanted, nothing otherwise.

    The bar opens on the first report (an operation with nothing to do shows none) and closes on
    `close()` or at the end of a `with` block. Reports may come from another thread (replay runs
    in its own). `done` and `total` keep the last report either way.

    >>> with ProgressBar("compact", unit="partition", enabled=True) as report:   # doctest: +SKIP
    ...     lake_compactor.compact(progress=report)
    """

    def __init__(self, desc: str, *, unit: str = "it", enabled: bool | None = None) -> None:
        self.desc = desc
        self.unit = unit
        self.enabled = progress_wanted(enabled)
        self.done = 0
        self.total = 0
        self._bar: Any = None
        self._lock = threading.Lock()

    def __call__(self, done: int, total: int) -> None:
        """Record that `done` of `total` units are finished."""
        with self._lock:
            self.done, self.total = done, total
            if not self.enabled:
                return
            if self._bar is None:
                self._bar = _bar_class(in_notebook())(total=total, desc=self.desc, unit=self.unit, leave=True)
            if self._bar.total != total:
                self._bar.total = total
            self._bar.update(done - self._bar.n)

    def close(self) -> None:
        """Finish the bar (it stays on screen at its last value)."""
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
