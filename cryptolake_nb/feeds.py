"""The one adapter to cryptofeed 2.x's Feed/FeedHandler API (cryptofeed 3.x will change it)."""
from __future__ import annotations

import collections
import dataclasses
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from cryptofeed import FeedHandler
from cryptofeed.config import Config
from cryptofeed.connection import HTTPAsyncConn, HTTPConcurrentPoll, HTTPPoll, HTTPSync, WSAsyncConn
from cryptofeed.exceptions import (BadChecksum, BidAskOverlapping, ExhaustedRetries, MissingMessage,
                                   MissingSequenceNumber, UnsupportedDataFeed, UnsupportedSymbol)
from cryptofeed.exchange import Exchange
from cryptofeed.exchanges import EXCHANGE_MAP
from cryptofeed.feed import Feed

from cryptolake_nb.errors import ConfigError, CryptolakeError

if TYPE_CHECKING:
    import ssl

    from cryptolake_nb.simulator import LoopbackServer

__all__ = [
    "Callback",
    "Feed",
    "FeedHealth",
    "FeedSpec",
    "GapCallback",
    "PrivateSymbolsExchange",
    "REPLAY_FEED_OPTIONS",
    "build_feed",
    "describe_feed",
    "feed_health",
    "is_dead_feed_error",
    "load_symbol_data",
    "make_feedhandler",
    "route_cryptofeed_logging",
]

log = logging.getLogger(__name__)

Callback = Callable[[Any, float], Awaitable[None]]
"""An async callable `(cryptofeed object, receipt_timestamp)`, keyed by cryptofeed channel name."""

CRYPTOFEED_LOGGER = "feedhandler"
ROUTED_LOGGER = "cryptolake_nb.cryptofeed"
# "log.disabled" keeps FeedHandler from adding a stderr handler and writing ./feedhandler.log;
# passing a dict also keeps the CRYPTOFEED_CONFIG environment variable out of the kernel
_CONFIG: dict[str, Any] = {"uvloop": False, "log": {"disabled": True}}


def _public_channels(exchange: str) -> tuple[str, ...]:
    cls = EXCHANGE_MAP[exchange]
    return tuple(sorted(c for c in cls.websocket_channels if not cls.is_authenticated_channel(c)))


@dataclass(frozen=True)
class FeedSpec:
    """What to subscribe: an exchange (EXCHANGE_MAP name), normalised symbols, cryptofeed channels.

    With `simulator` (an ExchangeSimulator or CaptureServer speaking `exchange`), the feed connects
    to it instead of the exchange.
    """

    exchange: str
    symbols: tuple[str, ...]
    channels: tuple[str, ...]
    simulator: LoopbackServer | None = None
    retries: int = 10  # cryptofeed reconnect attempts before the feed dies; -1 retries forever

    def __post_init__(self) -> None:
        for name in ("symbols", "channels"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
                raise ConfigError(f"FeedSpec.{name} must be a sequence of non-empty strings, got {value!r}")
            object.__setattr__(self, name, tuple(dict.fromkeys(value)))
        if isinstance(self.exchange, str):
            object.__setattr__(self, "exchange", self.exchange.upper())
        if self.exchange not in EXCHANGE_MAP:
            raise ConfigError(f"unknown exchange {self.exchange!r}; allowed: {', '.join(sorted(EXCHANGE_MAP))}")
        if not self.symbols:
            raise ConfigError(f"FeedSpec for {self.exchange} needs at least one symbol")
        if not self.channels:
            raise ConfigError(f"FeedSpec for {self.exchange} needs at least one channel")
        allowed = _public_channels(self.exchange)
        for channel in self.channels:
            if channel not in allowed:
                raise ConfigError(f"unknown channel {channel!r} for {self.exchange}; allowed: {', '.join(allowed)}")
        speaks = getattr(self.simulator, "exchange", None)
        if self.simulator is not None and self.exchange != speaks:
            raise ConfigError(f"the simulator speaks {speaks}'s protocol, not {self.exchange!r}")
        if not isinstance(self.retries, int) or self.retries < -1:
            raise ConfigError(f"retries must be an int >= -1, got {self.retries!r}")

    @property
    def name(self) -> str:
        """A short label for status displays, e.g. 'BINANCE(sim) trades,l2_book BTC-USDT'."""
        sim = "(sim)" if self.simulator is not None else ""
        return f"{self.exchange}{sim} {','.join(self.channels)} {','.join(self.symbols)}"


class PrivateSymbolsExchange(Exchange):
    """Sits just before Exchange in the MRO: symbols come from `own_symbols`, not cryptofeed's
    process-wide Symbols cache (which a live feed or a replay in another thread may be using).
    Used by the simulated feed here and by capture replay."""

    own_symbols: dict[str, str] = {}

    def __init__(self, config: Any = None, sandbox: bool = False, subaccount: Any = None, **kwargs: Any) -> None:
        # what cryptofeed 2.4.1's Exchange.__init__ sets, minus reading or filling Symbols
        self.config = Config(config=config)
        self.sandbox, self.subaccount = sandbox, subaccount
        keys = self.config[self.id.lower()]
        keys = keys if subaccount is None else keys[subaccount]
        self.key_id, self.key_secret = keys.key_id, keys.key_secret
        self.key_passphrase, self.account_name = keys.key_passphrase, keys.account_name
        self.ignore_invalid_instruments = self.config.ignore_invalid_instruments
        self.normalized_symbol_mapping = dict(self.own_symbols)
        self.exchange_symbol_mapping = {v: k for k, v in self.normalized_symbol_mapping.items()}


REPLAY_FEED_OPTIONS: dict[str, Any] = {"candle_closed_only": False}
"""Feed options for replaying a capture (the driver in replay.py, or a CaptureServer over the socket)."""


def load_symbol_data(cls: type[Exchange]) -> tuple[dict, dict]:
    """(symbols, info) as `Exchange.symbol_mapping` loads them (its endpoints, `cls.http_sync` for the
    GETs, `_parse_symbol_data`), without reading or filling cryptofeed's process-wide Symbols cache."""
    data = []
    for endpoint in cls.rest_endpoints:
        addresses = cls._symbol_endpoint_prepare(endpoint)
        for address in addresses if isinstance(addresses, list) else [addresses]:
            data.append(cls.http_sync.read(address, json=True, uuid=cls.id))
    return cls._parse_symbol_data(data if len(data) > 1 else data[0])


class _SimulatorSyncHTTP(HTTPSync):
    """Stands in for cryptofeed's blocking `requests` calls: symbol lists come from the simulator
    in-process; anything else is refused, so a simulated feed never leaves loopback."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader

    def read(self, address: str, params: Any = None, headers: Any = None, json: bool = False, text: bool = True,
             uuid: Any = None) -> Any:
        try:
            return self.reader.read(address, json=json)
        except CryptolakeError as exc:
            raise ConfigError(f"simulated feed refused a blocking request to {address}: {exc}") from exc

    def write(self, address: str, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError(f"simulated feed refused a blocking request to {address}")


class _TrustingSession:
    """Opens cryptofeed's aiohttp session with the simulator's CA (and only it) as trust anchor."""

    _ssl_context: ssl.SSLContext | None = None
    _allowed: str = ""

    async def _open(self) -> None:
        if self.is_open:  # type: ignore[attr-defined]
            return
        self.conn = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl_context))
        self.sent = self.received = 0
        self.last_message = None


class _TrustingHTTPConn(_TrustingSession, HTTPAsyncConn):
    """cryptofeed's aiohttp connection for REST snapshots, trusting (and reaching) only the simulator."""

    def __init__(self, conn_id: str, ssl_context: ssl.SSLContext, allowed: str) -> None:
        super().__init__(conn_id)
        self._ssl_context, self._allowed = ssl_context, allowed

    async def read(self, address: str, *args: Any, **kwargs: Any) -> Any:
        if not address.startswith(self._allowed):
            raise ConfigError(f"simulated feed refused a request to {address} (not the simulator)")
        return await super().read(address, *args, **kwargs)


class _TrustingPoll(_TrustingSession, HTTPPoll):
    """cryptofeed's REST poller (e.g. open interest), trusting the simulator's CA."""


class _TrustingConcurrentPoll(_TrustingSession, HTTPConcurrentPoll):
    """cryptofeed's concurrent REST poller, trusting the simulator's CA."""


_TRUSTING_POLLS = {HTTPPoll: _TrustingPoll, HTTPConcurrentPoll: _TrustingConcurrentPoll}


def _endpoint_addresses(conn: Any) -> list[str]:
    address = getattr(conn, "address", None)
    return list(address) if isinstance(address, (list, tuple)) else [address] if address else []


class _SimulatedFeed:
    """First in a simulated feed class's MRO, before the cryptofeed exchange class: endpoints and
    TLS trust from a simulator (per instance), every connection checked to go to it."""

    def __init__(self, simulator: Any, **kwargs: Any) -> None:
        ctx = simulator.ssl_context
        cls = type(self)
        # proxy=None: websockets >= 15 would otherwise honour *_proxy environment variables
        self.websocket_endpoints = [
            dataclasses.replace(ep, address=simulator.local_url(ep.address), sandbox=None,
                                options={**(ep.options or {}), "ssl": ctx, "proxy": None})
            for ep in cls.websocket_endpoints]
        self.rest_endpoints = [dataclasses.replace(ep, address=simulator.local_url(ep.address), sandbox=None)
                               for ep in cls.rest_endpoints]
        super().__init__(**kwargs)
        self.http_conn = _TrustingHTTPConn(self.id, ctx, simulator.rest_url)  # type: ignore[attr-defined]

    @classmethod
    def symbol_mapping(cls, refresh: bool = False, headers: dict | None = None) -> dict:
        raise ConfigError("a simulated feed's symbols come from its simulator, not from a request")

    def connect(self) -> list:
        entries = super().connect()  # type: ignore[misc]
        ctx, allowed = self.http_conn._ssl_context, self.http_conn._allowed  # type: ignore[attr-defined]
        loopback = (allowed, allowed.replace("https://", "wss://", 1))
        for conn, *_ in entries:
            stray = [a for a in _endpoint_addresses(conn) if not str(a).startswith(loopback)]
            if stray:
                raise ConfigError(f"simulated {self.id} feed would connect to {stray[0]}, "  # type: ignore[attr-defined]
                                  "which is not its simulator")
            trusting = _TRUSTING_POLLS.get(type(conn))
            if trusting is not None:  # cryptofeed makes these in _connect_rest with a default session
                conn.__class__ = trusting
                conn._ssl_context, conn._allowed = ctx, allowed
        return entries


def _simulated_class(simulator: Any) -> type[Feed]:
    """A private subclass of the exchange's cryptofeed class whose symbol data come from `simulator`."""
    base = EXCHANGE_MAP[simulator.exchange]
    cls = type(f"Simulated{base.__name__}", (_MonitoredFeed, _SimulatedFeed, base, PrivateSymbolsExchange),
               {"http_sync": _SimulatorSyncHTTP(simulator.symbol_reader())})
    try:
        cls.own_symbols, _ = load_symbol_data(cls)
    except CryptolakeError as exc:
        raise ConfigError(f"{simulator.exchange}: the simulator's symbol data cannot be loaded: {exc}") from exc
    except Exception as exc:
        raise ConfigError(f"{simulator.exchange}: cryptofeed cannot parse the simulator's symbol data: "
                          f"{type(exc).__name__}: {exc}") from exc
    return cls


def _is_async_callable(cb: object) -> bool:
    return inspect.iscoroutinefunction(cb) or inspect.iscoroutinefunction(getattr(cb, "__call__", None))


GapCallback = Callable[..., None]
"""Called like `GapLog.record(cause, exchange=, symbol=, channel=, start_ns=, end_ns=, count=, detail=)`."""

# errors a message handler raises on a frame it cannot read (json.JSONDecodeError and
# UnicodeDecodeError are ValueErrors, decimal.InvalidOperation an ArithmeticError) ...
_MALFORMED_ERRORS = (ValueError, LookupError, TypeError, AttributeError, ArithmeticError)
# ... except these, which cryptofeed raises on purpose to resynchronise by reconnecting
_RESYNC_ERRORS = (MissingSequenceNumber, MissingMessage, BadChecksum, BidAskOverlapping)
MALFORMED_SAMPLES = 20
_SAMPLE_CHARS = 300


class FeedHealth:
    """Connection and frame accounting for one feed, from hooks `build_feed` puts around cryptofeed's
    per-connection `subscribe` (called on every websocket (re)connection) and message handler.

    - `connections`: websocket connections made (1 per connection at start, +1 per reconnect);
      `reconnects`: those after the first on the same connection object.
    - A reconnect is reported through `on_gap` as a `reconnect` gap per (channel, symbol) of the
      connection, spanning [receipt time of the last frame before the drop, receipt time of the first
      frame after it); it is reported when that first frame arrives.
    - `malformed`: frames the exchange's parser could not read (invalid JSON, an unknown shape). They
      are skipped instead of letting cryptofeed reconnect (a reconnect loses data), logged at WARNING
      and the first `max_samples` kept in `malformed_samples` as (error, frame text) pairs.
      cryptofeed's deliberate resynchronisation errors (missing sequence numbers, bad checksums) still
      reconnect.
    """

    def __init__(self, exchange: str, *, on_gap: GapCallback | None = None, max_samples: int = MALFORMED_SAMPLES) -> None:
        self.exchange = exchange
        self.on_gap = on_gap
        self.connections = 0
        self.reconnects = 0
        self.frames = 0
        self.malformed = 0
        self.malformed_samples: collections.deque[tuple[str, str]] = collections.deque(maxlen=max_samples)
        self._lock = threading.Lock()

    def status(self) -> dict[str, Any]:
        return {"exchange": self.exchange, "connections": self.connections, "reconnects": self.reconnects,
                "frames": self.frames, "malformed": self.malformed, "malformed_samples": list(self.malformed_samples)}

    def wrap(self, feed: Any, entry: tuple) -> tuple:
        """(conn, subscribe, handler, authenticate) with the hooks, for websocket connections."""
        conn, subscribe, handler, *rest = entry
        if not isinstance(conn, WSAsyncConn):
            return entry
        state: dict[str, Any] = {"connected": 0, "last_ns": None, "pending": None}

        async def hooked_subscribe(connection: Any) -> Any:
            now = time.time_ns()
            with self._lock:
                self.connections += 1
                state["connected"] += 1
                if state["connected"] > 1:
                    self.reconnects += 1
                    state["pending"] = (state["last_ns"] if state["last_ns"] is not None else state["opened_ns"],
                                        state["connected"])
                state["opened_ns"] = now
            return await subscribe(connection)

        async def hooked_handler(msg: Any, connection: Any, timestamp: Any) -> None:
            now = int(timestamp * 1e9) if isinstance(timestamp, (int, float)) else time.time_ns()
            pending = state["pending"]
            state["last_ns"] = now
            self.frames += 1
            if pending is not None:
                state["pending"] = None
                self._report_reconnect(feed, conn, pending[0], now, pending[1])
            try:
                await handler(msg, connection, timestamp)
            except _RESYNC_ERRORS:
                raise
            except _MALFORMED_ERRORS as exc:
                self._skip(msg, exc)

        return (conn, hooked_subscribe, hooked_handler, *rest)

    def _skip(self, msg: Any, exc: BaseException) -> None:
        self.malformed += 1
        text = msg if isinstance(msg, str) else repr(msg)
        text = text if len(text) <= _SAMPLE_CHARS else text[:_SAMPLE_CHARS] + "..."
        error = f"{type(exc).__name__}: {exc}"
        if len(self.malformed_samples) < (self.malformed_samples.maxlen or 0):
            self.malformed_samples.append((error, text))
        log.warning("%s: skipped a malformed frame (%d so far; %s): %s", self.exchange, self.malformed, error, text)

    def _report_reconnect(self, feed: Any, conn: Any, start_ns: int, end_ns: int, connection_no: int) -> None:
        detail = f"websocket reconnected (connection #{connection_no}); no data for {(end_ns - start_ns) / 1e9:.3f} s"
        log.warning("%s: %s", self.exchange, detail)
        if self.on_gap is None:
            return
        for channel, symbol in _subscribed(feed, conn):
            try:
                self.on_gap("reconnect", exchange=self.exchange, symbol=symbol, channel=channel,
                            start_ns=start_ns, end_ns=end_ns, count=None, detail=detail)
            except Exception:  # never raise into cryptofeed: that would reconnect again
                log.exception("%s: could not record a reconnect gap", self.exchange)


def _subscribed(feed: Any, conn: Any) -> list[tuple[str, str | None]]:
    """(normalised channel, normalised symbol) pairs a websocket connection carries."""
    pairs: list[tuple[str, str | None]] = []
    for channel, symbols in (getattr(conn, "subscription", None) or {}).items():
        try:
            std_channel = feed.exchange_channel_to_std(channel)
        except Exception:
            std_channel = channel
        for symbol in symbols or [None]:
            try:
                std_symbol = symbol if symbol is None else feed.exchange_symbol_to_std_symbol(symbol)
            except Exception:
                std_symbol = symbol
            pairs.append((std_channel, std_symbol))
    return pairs or [(c, None) for c in (getattr(feed, "_feed_config", None) or {None: None})]


# feed -> its FeedHealth; kept outside the feed so its attributes stay exactly cryptofeed's
_HEALTH: weakref.WeakKeyDictionary[Any, FeedHealth] = weakref.WeakKeyDictionary()


class _MonitoredFeed:
    """First in a built feed class's MRO: wraps each connection's subscribe and message handler."""

    def connect(self) -> list:
        entries = super().connect()  # type: ignore[misc]
        health = _HEALTH.get(self)
        return entries if health is None else [health.wrap(self, entry) for entry in entries]


_MONITORED: dict[type, type] = {}


def _monitored_class(base: type) -> type:
    cls = _MONITORED.get(base)
    if cls is None:
        cls = _MONITORED[base] = type(base.__name__, (_MonitoredFeed, base), {})
    return cls


def feed_health(feed: Feed) -> FeedHealth | None:
    """The FeedHealth `build_feed` attached to `feed`, if any."""
    return _HEALTH.get(feed)


def build_feed(spec: FeedSpec, callbacks: Mapping[str, Callback], *, on_gap: GapCallback | None = None,
               health: FeedHealth | None = None) -> Feed:
    """Make the cryptofeed Feed for `spec`; the simulator's when set, else the real exchange's.

    Call it on the thread whose event loop will run the feed. Without a simulator, cryptofeed
    fetches the exchange's symbol list with a blocking request at construction.

    The feed counts its connections and skips malformed frames (`FeedHealth`, as `health` or a new
    one, reachable with `feed_health(feed)`); reconnects are reported to `on_gap` (or `health.on_gap`),
    e.g. `GapLog.record`.
    """
    for channel, cb in callbacks.items():
        if channel not in spec.channels:
            raise ConfigError(f"callback for channel {channel!r} which the spec does not subscribe ({', '.join(spec.channels)})")
        if not _is_async_callable(cb):
            raise ConfigError(f"callback for {channel!r} must be an async callable (obj, receipt_timestamp), got {cb!r}")
    kwargs: dict[str, Any] = dict(
        symbols=list(spec.symbols), channels=list(spec.channels), callbacks=dict(callbacks),
        retries=spec.retries, config=dict(_CONFIG),
    )
    if getattr(spec.simulator, "capture", None) is not None:
        kwargs.update(REPLAY_FEED_OPTIONS)  # the same feed options as the replay driver
    try:
        if spec.simulator is not None:
            feed = _simulated_class(spec.simulator)(spec.simulator, **kwargs)
        else:
            feed = _monitored_class(EXCHANGE_MAP[spec.exchange])(**kwargs)
    except UnsupportedSymbol as exc:
        raise ConfigError(f"{exc} (requested symbols: {', '.join(spec.symbols)})") from exc
    except UnsupportedDataFeed as exc:
        raise ConfigError(str(exc)) from exc
    if health is None:
        health = FeedHealth(spec.exchange, on_gap=on_gap)
    elif on_gap is not None:
        health.on_gap = on_gap
    _HEALTH[feed] = health
    return feed


class _Forward(logging.Handler):
    """Hands cryptofeed's records to a logger of ours, so they travel our tree (and only it)."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        if self.target.isEnabledFor(record.levelno):
            self.target.handle(record)


def route_cryptofeed_logging(level: int = logging.WARNING) -> logging.Logger:
    """Send the 'feedhandler' logger to 'cryptolake_nb.cryptofeed'; idempotent; returns the target."""
    target = logging.getLogger(ROUTED_LOGGER)
    package = logging.getLogger("cryptolake_nb")
    # a handler in the chain keeps logging.lastResort from printing into notebook cells
    if not any(isinstance(h, logging.NullHandler) for h in package.handlers):
        package.addHandler(logging.NullHandler())
    source = logging.getLogger(CRYPTOFEED_LOGGER)
    for handler in list(source.handlers):
        if not isinstance(handler, _Forward):
            source.removeHandler(handler)  # e.g. a stderr/file handler left by another FeedHandler
            handler.close()
    if not source.handlers:
        source.addHandler(_Forward(target))
    source.propagate = False
    source.setLevel(level)
    return target


def make_feedhandler(level: int = logging.WARNING) -> FeedHandler:
    """A FeedHandler fit for a kernel: no uvloop policy switch, no log file, logs routed to our tree."""
    route_cryptofeed_logging(level)
    return FeedHandler(config=dict(_CONFIG))


def describe_feed(feed: Feed) -> str:
    """A short label for a built feed, e.g. 'BINANCE l2_book,trades BTC-USDT'."""
    channels = ",".join(sorted(getattr(feed, "_feed_config", None) or {}))
    symbols = ",".join(str(s) for s in getattr(feed, "normalized_symbols", None) or [])
    return f"{feed.id} {channels} {symbols}".strip()


def is_dead_feed_error(exc: BaseException | None) -> bool:
    """True for the error cryptofeed raises (into the loop) when a feed stops reconnecting."""
    return isinstance(exc, ExhaustedRetries)
