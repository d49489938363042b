"""Rows waiting to be sealed: appended by cryptofeed callbacks without a lock, taken in bulk by seal.

The append is the lake's whole cost on the feed loop, so it is one closure doing as little as can be:
- No lock. Each row is one `(row, receipt)` tuple appended to one list (`list.append` is atomic), so
  concurrent appenders can never pair an object with another's receipt. `take` copies the first `n`
  rows and deletes them (two atomic steps under the owner's lock); rows appended in between land
  after `n` and stay.
- For a table that names its `fields`, an object of a *plain* type (one whose public attributes are
  all in `fields`: nothing would go to `extra`) is stored as the tuple of those attributes, and the
  object itself is let go at once, as after a no-op callback (benchmarks/parse_cost.py times a
  callback that only keeps each object next to the lake's). Other objects are stored as they are;
  an object that is itself a tuple is wrapped in `records.Unread`, so a stored tuple always means
  "fields, already read".
- The owner's slow path (`on_count`) runs only when the row count reaches `check_at` (the first
  row, a seal-sized run, the flush size, the backpressure limit), never per row.
"""
from __future__ import annotations

import operator
from typing import Any, Callable

from .records import Unread, unmapped_attributes

__all__ = ["PendingRows"]


class PendingRows:
    """Pending `(object or fields tuple, receipt)` rows in arrival order; `take` and `put_back` are
    called under the owner's lock, appenders take no lock."""

    def __init__(self, fields: tuple[str, ...], on_count: Callable[[], None]) -> None:
        self._rows: list[tuple[Any, Any]] = []
        self._fields = operator.attrgetter(*fields) if fields else None
        self._mapped = frozenset(fields)
        self._plain: dict[type, bool] = {}
        self._on_count = on_count
        self.check_at = [1]  # a list so appenders read the current value through their closure
        self.taken = 0  # rows taken by seals, net of rows put back

    def __len__(self) -> int:
        return len(self._rows)

    def appender(self) -> Callable[[Any, Any], None]:
        """A function `(obj, receipt)` storing one row; safe to call from any thread."""
        rows, check_at, fields, on_count, stored = self._rows, self.check_at, self._fields, self._on_count, self._stored
        put = rows.append
        plain: type | None = None  # the type last seen to be plain: its objects take the short path

        def append(obj: Any, receipt: Any) -> None:
            nonlocal plain
            if type(obj) is plain:
                try:
                    obj = fields(obj)  # type: ignore[misc]
                except Exception:  # stored as is: the converter rejects it with its reason
                    pass
            elif fields is not None:
                obj, plain = stored(obj, plain)
            put((obj, receipt))
            if len(rows) >= check_at[0]:
                on_count()

        return append

    def _stored(self, obj: Any, plain: type | None) -> tuple[Any, type | None]:
        """The stored form of an object of a type not yet known to be plain, and the plain type."""
        cls = type(obj)
        if isinstance(obj, tuple):
            return Unread(obj), plain
        known = self._plain.get(cls)
        if known is None:
            known = self._plain[cls] = unmapped_attributes(cls, self._mapped) == ((), False)
        if not known:
            return obj, plain
        try:
            return self._fields(obj), cls  # type: ignore[misc]
        except Exception:
            return obj, cls

    def take(self) -> tuple[list[Any], list[Any]]:
        """Remove and return every row appended so far, as (objects or fields tuples, receipts)."""
        rows = self._rows
        n = len(rows)
        taken = rows[:n]
        del rows[:n]
        self.taken += n
        return [r[0] for r in taken], [r[1] for r in taken]

    def put_back(self, objs: list[Any], receipts: list[Any]) -> None:
        """Return taken rows to the front (a seal that failed), before anything appended since."""
        self._rows[:0] = list(zip(objs, receipts))
        self.taken -= len(objs)
