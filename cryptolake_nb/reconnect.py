"""When and how a feed's connection is re-made: backoff with jitter, a retry budget, a watchdog.

cryptofeed 2.4.1's ConnectionHandler doubles its delay without jitter or cap (every feed behind one
proxy reconnects in lock step, and after a long outage it waits hours), gives up silently, and its
half-open watchdog reads the wall clock every 30 s. `ManagedConnection` keeps cryptofeed's
connection, subscribe and handler calls and replaces that loop; every decision is reported to the
feed's `FeedHealth`, so it shows in `lake.status()` and in `gaps`.
"""
from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptofeed.connection_handler import ConnectionHandler
from cryptofeed.exceptions import ExhaustedRetries

from .errors import ConfigError
from .proxy import ProxyURL
from .transport import explain_failure

if TYPE_CHECKING:
    from .feed_health import FeedHealth

__all__ = ["ManagedConnection", "ReconnectPolicy"]

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[Any]]


def _positive(name: str, value: object, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number of seconds, got {value!r}")


@dataclass(frozen=True)
class ReconnectPolicy:
    """Exponential backoff with jitter between reconnection attempts, and the half-open watchdog.

    Before attempt n of an outage (n = 1, 2, ...) the feed waits
    `min(max_delay, initial_delay * factor**(n-1)) * (1 - jitter * U)`, U uniform in [0, 1): jitter
    spreads feeds that lost their connections together. A connection that delivered data ends the
    outage (the count restarts). `watchdog_s`: a websocket that delivers nothing for this long while
    open is treated as dead (a half-open socket) and re-made; None turns the watchdog off.
    """

    initial_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 60.0
    jitter: float = 0.5
    watchdog_s: float | None = 120.0

    def __post_init__(self) -> None:
        _positive("initial_delay", self.initial_delay, allow_zero=True)
        _positive("max_delay", self.max_delay, allow_zero=True)
        if not isinstance(self.factor, (int, float)) or isinstance(self.factor, bool) or not 1 <= self.factor <= 10:
            raise ConfigError(f"factor must be a number in [1, 10], got {self.factor!r}")
        if not isinstance(self.jitter, (int, float)) or isinstance(self.jitter, bool) or not 0 <= self.jitter <= 1:
            raise ConfigError(f"jitter must be a share in [0, 1], got {self.jitter!r}")
        if self.max_delay < self.initial_delay:
            raise ConfigError(f"max_delay ({self.max_delay!r}) must be at least initial_delay ({self.initial_delay!r})")
        if self.watchdog_s is not None:
            _positive("watchdog_s", self.watchdog_s)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before reconnection attempt `attempt` (1-based) of an outage."""
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt}")
        exponent = min(attempt - 1, 200)  # factor <= 10: 10**200 still fits a float
        base = min(self.max_delay, self.initial_delay * self.factor ** exponent)
        return base * (1.0 - self.jitter * rng.random())

    @property
    def watchdog_interval(self) -> float:
        """How often the watchdog looks: often enough to act within ~25% of `watchdog_s`."""
        return min(5.0, max(0.02, (self.watchdog_s or 0.0) / 4))


class ManagedConnection(ConnectionHandler):
    """cryptofeed's ConnectionHandler with `ReconnectPolicy`, a retry budget and reporting.

    `retries`: reconnection attempts an outage may use (-1: no limit); when they are used up the
    feed is marked failed in `health` (a `feed_failed` gap) and `ExhaustedRetries` goes to the
    loop's exception handler with the reason, as cryptofeed does. `proxy`: the proxy this
    connection goes through, so a failure can say whether the proxy itself was unreachable.
    `rng` and `sleep` are injected so tests can replay the exact delays.
    """

    def __init__(self, conn: Any, subscribe: Any, handler: Any, authenticate: Any, *, retries: int,
                 policy: ReconnectPolicy, health: FeedHealth, rng: random.Random, proxy: ProxyURL | None = None,
                 sleep: Sleep = asyncio.sleep, exceptions: Any = None, log_on_error: bool = False,
                 start_delay: float = 0) -> None:
        super().__init__(conn, subscribe, handler, authenticate, retries, timeout=-1,
                         exceptions=exceptions, log_on_error=log_on_error, start_delay=start_delay)
        self.policy, self.health, self.rng, self.proxy, self._sleep = policy, health, rng, proxy, sleep
        self._watchdog_tripped: float | None = None

    async def _create_connection(self) -> None:
        if self.start_delay:
            await self._sleep(self.start_delay)
        failures = 0
        while self.running:
            self.health.attempting(self.conn)
            self._watchdog_tripped = None
            self.conn.received = 0  # a failed connect leaves the previous connection's count
            error: BaseException | None = None
            try:
                async with self.conn.connect() as connection:
                    await self.authenticate(connection)
                    await self.subscribe(connection)
                    await self._run_watched(connection)
            except Exception as exc:
                if self.exceptions and isinstance(exc, tuple(self.exceptions)):
                    raise
                error = exc
            if not self.running:
                break
            if self.conn.received > 0:  # the connection delivered data: this is a new outage
                failures = 0
            failures += 1
            reason = await self._reason(error)
            if self.retries != -1 and failures > self.retries:
                self.health.gave_up(self.conn, reason, failures)
                raise ExhaustedRetries(f"{self.conn.uuid}: gave up after {failures - 1} reconnection attempt(s): {reason}")
            delay = self.policy.delay(failures, self.rng)
            self.health.backing_off(self.conn, reason, failures, delay)
            log.warning("%s: %s; reconnection attempt %d%s in %.2f s", self.conn.uuid, reason, failures,
                        "" if self.retries == -1 else f"/{self.retries}", delay)
            await self._sleep(delay)
        self.health.stopped(self.conn)

    async def _run_watched(self, connection: Any) -> None:
        watchdog = None
        if self.policy.watchdog_s is not None and self.health.watches(self.conn):
            watchdog = asyncio.get_running_loop().create_task(self._watcher())
        try:
            await self._handler(connection, self.handler)
        finally:
            if watchdog is not None:
                watchdog.cancel()

    async def _watcher(self) -> None:
        """Abort a websocket that has been open and silent for `watchdog_s` (it may be half-open)."""
        limit = self.policy.watchdog_s or 0.0
        while self.running and self.conn.is_open:
            await self._sleep(self.policy.watchdog_interval)
            idle = self.health.idle_s(self.conn)
            if idle is not None and idle > limit and self.conn.is_open:
                self._watchdog_tripped = idle
                self.health.watchdog_tripped(self.conn, idle, limit)
                log.warning("%s: no message for %.1f s on an open websocket (watchdog %.1f s): reconnecting",
                            self.conn.uuid, idle, limit)
                transport = getattr(self.conn.conn, "transport", None)
                if transport is not None:  # a half-open peer would not answer a closing handshake
                    transport.abort()
                await self.conn.close()
                return

    async def _reason(self, error: BaseException | None) -> str:
        if self._watchdog_tripped is not None:
            return f"watchdog: no message for {self._watchdog_tripped:.1f} s on an open websocket"
        if error is None:
            return "the server closed the connection"
        return await explain_failure(error, self.proxy)
