"""The one adapter to cryptofeed 2.x's Feed/FeedHandler API (cryptofeed 3.x will change it)."""
from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from cryptofeed import FeedHandler
from cryptofeed.config import Config
from cryptofeed.connection import HTTPAsyncConn, HTTPSync, RestEndpoint, WebsocketEndpoint
from cryptofeed.exceptions import ExhaustedRetries, UnsupportedDataFeed, UnsupportedSymbol
from cryptofeed.exchange import Exchange
from cryptofeed.exchanges import EXCHANGE_MAP, Binance
from cryptofeed.feed import Feed

from cryptolake_nb.errors import ConfigError

if TYPE_CHECKING:
    import ssl

    from cryptolake_nb.simulator import ExchangeSimulator

__all__ = [
    "Callback",
    "Feed",
    "FeedSpec",
    "PrivateSymbolsExchange",
    "build_feed",
    "describe_feed",
    "is_dead_feed_error",
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
    """What to subscribe: an exchange (EXCHANGE_MAP name), normalised symbols, cryptofeed channels."""

    exchange: str
    symbols: tuple[str, ...]
    channels: tuple[str, ...]
    simulator: ExchangeSimulator | None = None
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
        if self.simulator is not None and self.exchange != Binance.id:
            raise ConfigError(f"the simulator speaks {Binance.id}'s protocol, not {self.exchange!r}")
        if not isinstance(self.retries, int) or self.retries < -1:
            raise ConfigError(f"retries must be an int >= -1, got {self.retries!r}")

    @property
    def name(self) -> str:
        """A short label for status displays, e.g. 'BINANCE(sim) trades,l2_book BTC-USDT'."""
        sim = "(sim)" if self.simulator is not None else ""
        return f"{self.exchange}{sim} {','.join(self.channels)} {','.join(self.symbols)}"


class _NoSyncHTTP(HTTPSync):
    """Refuses cryptofeed's blocking `requests` calls: a simulated feed must never leave loopback."""

    def read(self, address: str, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError(f"simulated feed refused a blocking request to {address}")

    def write(self, address: str, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError(f"simulated feed refused a blocking request to {address}")


class _TrustingHTTPConn(HTTPAsyncConn):
    """cryptofeed's aiohttp connection, with an SSL context (the simulator's CA) for REST snapshots."""

    def __init__(self, conn_id: str, ssl_context: ssl.SSLContext) -> None:
        super().__init__(conn_id)
        self._ssl_context = ssl_context

    async def _open(self) -> None:
        if self.is_open:
            return
        self.conn = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl_context))
        self.sent = self.received = 0
        self.last_message = None


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


class _SimulatedBinance(Binance, PrivateSymbolsExchange):
    """cryptofeed's Binance parser with its endpoints, symbols and TLS trust taken from a simulator."""

    http_sync = _NoSyncHTTP()

    def __init__(self, simulator: ExchangeSimulator, **kwargs: Any) -> None:
        ctx = simulator.ssl_context
        # proxy=None: websockets >= 15 would otherwise honour *_proxy environment variables
        self.websocket_endpoints = [WebsocketEndpoint(simulator.ws_url, options={"ssl": ctx, "proxy": None})]
        self.rest_endpoints = [RestEndpoint(simulator.rest_url, routes=Binance.rest_endpoints[0].routes)]
        self.own_symbols, _ = Binance._parse_symbol_data(simulator.exchange_info())
        super().__init__(**kwargs)
        self.http_conn = _TrustingHTTPConn(self.id, ctx)

    @classmethod
    def symbol_mapping(cls, refresh: bool = False, headers: dict | None = None) -> dict:
        raise ConfigError("a simulated feed's symbols come from its simulator, not from a request")


def _is_async_callable(cb: object) -> bool:
    return inspect.iscoroutinefunction(cb) or inspect.iscoroutinefunction(getattr(cb, "__call__", None))


def build_feed(spec: FeedSpec, callbacks: Mapping[str, Callback]) -> Feed:
    """Make the cryptofeed Feed for `spec`; the simulator's when set, else the real exchange's.

    Call it on the thread whose event loop will run the feed. Without a simulator, cryptofeed
    fetches the exchange's symbol list with a blocking request at construction.
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
    try:
        if spec.simulator is not None:
            return _SimulatedBinance(spec.simulator, **kwargs)
        return EXCHANGE_MAP[spec.exchange](**kwargs)
    except UnsupportedSymbol as exc:
        raise ConfigError(f"{exc} (requested symbols: {', '.join(spec.symbols)})") from exc
    except UnsupportedDataFeed as exc:
        raise ConfigError(str(exc)) from exc


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
