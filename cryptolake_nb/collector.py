"""The collector thread: a cryptofeed FeedHandler on its own event loop, with start/stop/status."""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import datetime as dt
import enum
import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from cryptolake_nb.clock import Clock, SystemClock
from cryptolake_nb.errors import CollectorError
from cryptolake_nb.feeds import Feed, describe_feed, is_dead_feed_error, make_feedhandler
from cryptolake_nb.proxy import redact

__all__ = ["Collector", "CollectorState"]

log = logging.getLogger(__name__)

MAX_ERRORS = 100


class CollectorState(str, enum.Enum):
    """Lifecycle of the collector thread."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"


class Collector:
    """Runs the feeds `build_feeds()` returns (built on the collector's own loop) in a daemon thread."""

    def __init__(
        self,
        build_feeds: Callable[[], list[Feed]],
        *,
        name: str = "cryptolake-collector",
        clock: Clock | None = None,
    ) -> None:
        self._build_feeds = build_feeds
        self.name = name
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._state = CollectorState.STOPPED
        self._errors: collections.deque[str] = collections.deque(maxlen=MAX_ERRORS)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fh: Any = None
        self._feed_names: list[str] = []
        self._started_at: dt.datetime | None = None
        self._stopped_at: dt.datetime | None = None

    # -- caller side -----------------------------------------------------------------------------
    @property
    def state(self) -> CollectorState:
        return self._state

    @property
    def running(self) -> bool:
        """True while the thread is alive (even if a feed inside it has failed)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> None:
        """Start the thread and return once the feeds are built and started (or failed to)."""
        with self._lock:
            if self.running:
                raise CollectorError(f"collector {self.name!r} is already running; stop() it first")
            self._errors.clear()
            self._state = CollectorState.STARTING
            self._started_at, self._stopped_at = self._now(), None
            self._feed_names = []
            ready = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(ready,), name=self.name, daemon=True)
            self._thread.start()
        if not ready.wait(timeout):
            self._record(f"feeds were not built within {timeout} s")
        log.info("collector %r: %s", self.name, self._state.value)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the feeds and the loop; return within `timeout` seconds. Idempotent."""
        with self._lock:
            thread, loop, fh = self._thread, self._loop, self._fh
            if thread is None:
                return
            if thread is threading.current_thread():
                raise CollectorError("stop() was called from the collector's own thread (e.g. a callback)")
            deadline = time.monotonic() + timeout
            if thread.is_alive() and loop is not None and not loop.is_closed():
                try:
                    if fh is not None:
                        # most of the budget for a clean shutdown (close frames, HTTP sessions)
                        future = asyncio.run_coroutine_threadsafe(fh.stop_async(loop=loop), loop)
                        future.result(max(0.0, timeout * 0.6))
                except (concurrent.futures.TimeoutError, RuntimeError) as exc:
                    log.warning("collector %r: clean feed shutdown did not finish: %r", self.name, exc)
                except Exception as exc:
                    self._record(f"error while stopping feeds: {exc!r}", exc)
                try:
                    loop.call_soon_threadsafe(loop.stop)
                except RuntimeError:  # loop closed meanwhile: the thread is exiting anyway
                    pass
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self._record(f"thread did not stop within {timeout} s")
                raise CollectorError(f"collector {self.name!r} did not stop within {timeout} s")
            self._thread = self._loop = self._fh = None
            if self._state is not CollectorState.FAILED:
                self._state = CollectorState.STOPPED
            self._stopped_at = self._stopped_at or self._now()
        log.info("collector %r stopped", self.name)

    def status(self) -> dict[str, Any]:
        """A snapshot: state, errors (most recent last), started_at/stopped_at (UTC datetimes), feeds."""
        return {
            "name": self.name,
            "state": self._state.value,
            "errors": list(self._errors),
            "started_at": self._started_at,
            "stopped_at": self._stopped_at,
            "feeds": list(self._feed_names),
            "thread_alive": self.running,
        }

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the thread ------------------------------------------------------------------------------
    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock.time_ns() / 1e9, tz=dt.timezone.utc)

    def _record(self, message: str, exc: BaseException | None = None, *, fatal: bool = False) -> None:
        message = redact(message)  # errors may quote a proxy URL: never its credentials
        trace = "" if exc is None else "".join(traceback.format_exception(exc))
        # logged first: whoever sees the error in status() (another thread) finds it in the log too
        if redact(trace) == trace:
            log.error("collector %r: %s", self.name, message, exc_info=exc)
        else:
            log.error("collector %r: %s\n%s", self.name, message, redact(trace))
        self._errors.append(message)
        if fatal:
            self._state = CollectorState.FAILED

    def _exception_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # cryptofeed reports a feed that gave up reconnecting only here (a task's unretrieved error)
        exc = context.get("exception")
        message = context.get("message", "unhandled error in the collector loop")
        text = f"{message}: {exc!r}" if exc is not None else message
        dead = is_dead_feed_error(exc)
        if dead:
            text = f"a feed gave up reconnecting (retries exhausted); no more data from it: {text}"
        self._record(text, exc, fatal=dead)

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(self._exception_handler)
        self._loop = loop
        try:
            try:
                fh = make_feedhandler()
                feeds = self._build_feeds()
                for feed in feeds:
                    fh.add_feed(feed)
                self._feed_names = [describe_feed(f) for f in feeds]
                fh.run(start_loop=False, install_signal_handlers=False)  # signal handlers are main-thread only
                self._fh = fh
                if self._state is CollectorState.STARTING:
                    self._state = CollectorState.RUNNING
            except Exception as exc:
                self._record(f"could not start feeds: {exc}", exc, fatal=True)
                return
            finally:
                ready.set()
            loop.run_forever()
        except BaseException as exc:  # a crash of the thread itself; recorded, never printed
            self._record(f"collector thread crashed: {exc!r}", exc, fatal=True)
        finally:
            self._close_loop(loop)
            self._stopped_at = self._now()

    def _close_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
            loop.run_until_complete(loop.shutdown_asyncgens())
        except Exception as exc:
            self._record(f"error while closing the loop: {exc!r}", exc)
        finally:
            asyncio.set_event_loop(None)
            loop.close()
