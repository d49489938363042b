"""FeedHealth: what one feed's connections are doing, for status displays and the `gaps` table."""
from __future__ import annotations

import collections
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from cryptofeed.connection import WSAsyncConn
from cryptofeed.exceptions import BadChecksum, BidAskOverlapping, MissingMessage, MissingSequenceNumber

from .clock import Clock, SystemClock

__all__ = ["FEED_STATES", "FeedHealth", "GapCallback", "MALFORMED_SAMPLES"]

log = logging.getLogger(__name__)

GapCallback = Callable[..., None]
"""Called like `GapLog.record(cause, exchange=, symbol=, channel=, start_ns=, end_ns=, count=, detail=)`."""

FEED_STATES = ("starting", "connecting", "connected", "reconnecting", "failed", "stopped")
"""A feed's state is its most troubled connection's: failed > reconnecting > connecting > connected > stopped."""
_PRIORITY = {"failed": 5, "reconnecting": 4, "connecting": 3, "connected": 2, "stopped": 1}

# errors a message handler raises on a frame it cannot read (json.JSONDecodeError and
# UnicodeDecodeError are ValueErrors, decimal.InvalidOperation an ArithmeticError) ...
_MALFORMED_ERRORS = (ValueError, LookupError, TypeError, AttributeError, ArithmeticError)
# ... except these, which cryptofeed raises on purpose to resynchronise by reconnecting
_RESYNC_ERRORS = (MissingSequenceNumber, MissingMessage, BadChecksum, BidAskOverlapping)
MALFORMED_SAMPLES = 20
_SAMPLE_CHARS = 300


@dataclass
class _Link:
    """One cryptofeed connection object (it is re-opened on each reconnect)."""

    pairs: list[tuple[str, str | None]]      # (channel, symbol) it carries, for gap rows
    watched: bool = False                    # a websocket whose frames we see
    state: str = "connecting"
    opened: int = 0                          # successful subscribes
    opened_ns: int | None = None
    last_ns: int | None = None               # receipt time of the last frame
    last_mono: float | None = None           # clock.monotonic() of the last frame or subscribe
    pending: tuple[int, int] | None = None   # reconnect gap to report at the next frame: (start_ns, connection #)
    watchdog: str | None = None              # set when the watchdog forced the loss being reported
    lost: bool = False                       # a connection was lost or an attempt failed


class FeedHealth:
    """Connection and frame accounting for one feed, fed by the hooks `build_feed` installs.

    - `connections`: websocket connections made (1 per connection at start, +1 per reconnect);
      `reconnects`: those after the first on the same connection object.
    - A reconnect is reported through `on_gap` as a `reconnect` gap per (channel, symbol) of the
      connection, spanning [receipt time of the last frame before the drop, receipt time of the first
      frame after it); it is reported when that first frame arrives. When the watchdog forced the
      reconnect (a silent but open socket), the row's cause is `silence` and its detail says so.
    - `state` (see FEED_STATES), `failures` (connections lost and attempts failed), `last_error`,
      `last_delay_s` (the backoff before the latest attempt): from the reconnect loop (`reconnect.ManagedConnection`). When its retries are used up the state is `failed` and a
      `feed_failed` gap per (channel, symbol) runs from the last frame to the moment it gave up.
    - `malformed`: frames the exchange's parser could not read (invalid JSON, an unknown shape). They
      are skipped instead of letting cryptofeed reconnect (a reconnect loses data), logged at WARNING
      and the first `max_samples` kept in `malformed_samples` as (error, frame text) pairs.
      cryptofeed's deliberate resynchronisation errors (missing sequence numbers, bad checksums) still
      reconnect.
    - `proxy`: how the feed's connections leave the process, credentials masked.
    """

    def __init__(self, exchange: str, *, on_gap: GapCallback | None = None, max_samples: int = MALFORMED_SAMPLES,
                 clock: Clock | None = None) -> None:
        self.exchange = exchange
        self.on_gap = on_gap
        self.clock: Clock = clock or SystemClock()
        self.proxy = "direct"
        self.connections = 0
        self.reconnects = 0
        self.frames = 0
        self.malformed = 0
        self.malformed_samples: collections.deque[tuple[str, str]] = collections.deque(maxlen=max_samples)
        self.failures = 0
        self.watchdog_trips = 0
        self.last_error: str | None = None
        self.last_delay_s: float | None = None
        self.backoffs: collections.deque[tuple[int, float]] = collections.deque(maxlen=50)  # (attempt, delay s)
        self._links: weakref.WeakKeyDictionary[Any, _Link] = weakref.WeakKeyDictionary()  # cryptofeed connection -> link
        self._lock = threading.Lock()

    # -- reading ----------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        with self._lock:
            states = [link.state for link in list(self._links.values())]
        return max(states, key=_PRIORITY.__getitem__) if states else "starting"

    def status(self) -> dict[str, Any]:
        return {"exchange": self.exchange, "state": self.state, "proxy": self.proxy,
                "connections": self.connections, "reconnects": self.reconnects, "frames": self.frames,
                "failures": self.failures, "last_error": self.last_error,
                "last_delay_s": self.last_delay_s, "watchdog_trips": self.watchdog_trips,
                "malformed": self.malformed, "malformed_samples": list(self.malformed_samples)}

    # -- the feed's connect(): one registration per cryptofeed connection --------------------------
    def register(self, conn: Any, pairs: list[tuple[str, str | None]]) -> None:
        with self._lock:
            self._links.setdefault(conn, _Link(pairs))

    def _link(self, conn: Any) -> _Link:
        with self._lock:
            return self._links.setdefault(conn, _Link([]))

    def wrap(self, conn: Any, entry: tuple) -> tuple:
        """(conn, subscribe, handler, authenticate) with the hooks, for websocket connections."""
        _, subscribe, handler, *rest = entry
        if not isinstance(conn, WSAsyncConn):
            return entry
        link = self._link(conn)
        link.watched = True

        async def hooked_subscribe(connection: Any) -> Any:
            now = time.time_ns()
            with self._lock:
                self.connections += 1
                link.opened += 1
                if link.opened > 1:
                    self.reconnects += 1
                    start = link.last_ns if link.last_ns is not None else link.opened_ns
                    link.pending = (start if start is not None else now, link.opened)
                link.opened_ns, link.last_mono, link.state = now, self.clock.monotonic(), "connected"
            return await subscribe(connection)

        async def hooked_handler(msg: Any, connection: Any, timestamp: Any) -> None:
            now = int(timestamp * 1e9) if isinstance(timestamp, (int, float)) else time.time_ns()
            pending = link.pending
            link.last_ns, link.last_mono = now, self.clock.monotonic()
            self.frames += 1
            if pending is not None:
                link.pending = None
                self._report_reconnect(link, pending[0], now, pending[1])
            try:
                await handler(msg, connection, timestamp)
            except _RESYNC_ERRORS:
                raise
            except _MALFORMED_ERRORS as exc:
                self._skip(msg, exc)

        return (conn, hooked_subscribe, hooked_handler, *rest)

    # -- the reconnect loop ------------------------------------------------------------------------
    def watches(self, conn: Any) -> bool:
        """True for websockets whose frames the hooks see (the watchdog needs that)."""
        return self._link(conn).watched

    def idle_s(self, conn: Any) -> float | None:
        """Seconds since the last frame (or the subscribe) on `conn`; None before the first."""
        last = self._link(conn).last_mono
        return None if last is None else self.clock.monotonic() - last

    def attempting(self, conn: Any) -> None:
        link = self._link(conn)
        if link.state != "failed":
            link.state = "reconnecting" if link.opened or link.lost else "connecting"

    def backing_off(self, conn: Any, reason: str, attempt: int, delay: float) -> None:
        link = self._link(conn)
        with self._lock:
            self.failures += 1
            self.last_error, self.last_delay_s = reason, delay
            self.backoffs.append((attempt, delay))
            link.state, link.lost = "reconnecting", True

    def watchdog_tripped(self, conn: Any, idle: float, limit: float) -> None:
        link = self._link(conn)
        with self._lock:
            self.watchdog_trips += 1
            link.watchdog = f"watchdog: no message for {idle:.1f} s on an open websocket (limit {limit:g} s)"

    def gave_up(self, conn: Any, reason: str, failures: int) -> None:
        link = self._link(conn)
        now = self.clock.time_ns()
        start = link.last_ns if link.last_ns is not None else link.opened_ns
        detail = f"feed gave up after {max(failures - 1, 0)} reconnection attempt(s); last error: {reason}"
        log.error("%s: %s", self.exchange, detail)
        self._gap(link, "feed_failed", start if start is not None else now, now, detail)
        with self._lock:  # last: whoever sees "failed" in status() finds the log line and the gap too
            self.failures += 1
            self.last_error = f"retries exhausted: {reason}"
            link.state = "failed"

    def stopped(self, conn: Any) -> None:
        link = self._link(conn)
        if link.state != "failed":
            link.state = "stopped"

    # -- internals ---------------------------------------------------------------------------------
    def _skip(self, msg: Any, exc: BaseException) -> None:
        self.malformed += 1
        text = msg if isinstance(msg, str) else repr(msg)
        text = text if len(text) <= _SAMPLE_CHARS else text[:_SAMPLE_CHARS] + "..."
        error = f"{type(exc).__name__}: {exc}"
        if len(self.malformed_samples) < (self.malformed_samples.maxlen or 0):
            self.malformed_samples.append((error, text))
        log.warning("%s: skipped a malformed frame (%d so far; %s): %s", self.exchange, self.malformed, error, text)

    def _report_reconnect(self, link: _Link, start_ns: int, end_ns: int, connection_no: int) -> None:
        detail = f"websocket reconnected (connection #{connection_no}); no data for {(end_ns - start_ns) / 1e9:.3f} s"
        cause = "reconnect"
        if link.watchdog is not None:
            cause, detail, link.watchdog = "silence", f"{link.watchdog}; {detail}", None
        log.warning("%s: %s", self.exchange, detail)
        self._gap(link, cause, start_ns, end_ns, detail)

    def _gap(self, link: _Link, cause: str, start_ns: int, end_ns: int, detail: str) -> None:
        if self.on_gap is None:
            return
        for channel, symbol in link.pairs or [(None, None)]:
            try:
                self.on_gap(cause, exchange=self.exchange, symbol=symbol, channel=channel,
                            start_ns=start_ns, end_ns=end_ns, count=None, detail=detail)
            except Exception:  # never raise into cryptofeed: that would reconnect again
                log.exception("%s: could not record a %s gap", self.exchange, cause)
