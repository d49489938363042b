"""The one adapter to cryptofeed 2.x's Feed/FeedHandler API (cryptofeed 3.x will change it).

`FeedSpec` says what to collect and how to connect (proxy, retries, reconnect policy);
`build_feed` makes the cryptofeed Feed: the exchange's own class with `ManagedFeed` first
(managed_feed.py), or the same pointed at a simulator (feed_sim.py).
"""
from __future__ import annotations

import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptofeed import FeedHandler
from cryptofeed.exceptions import ExhaustedRetries, UnsupportedDataFeed, UnsupportedSymbol
from cryptofeed.exchanges import EXCHANGE_MAP
from cryptofeed.feed import Feed

from cryptolake_nb.errors import ConfigError
from cryptolake_nb.feed_health import FeedHealth, GapCallback
from cryptolake_nb.feed_sim import PrivateSymbolsExchange, load_symbol_data, simulated_class, simulator_prefixes
from cryptolake_nb.managed_feed import FeedRuntime, attach, managed_class, runtime_of
from cryptolake_nb.proxy import ProxyRoute, ProxySetting, normalise_setting, redact, resolve_route, split_no_proxy
from cryptolake_nb.reconnect import ReconnectPolicy
from cryptolake_nb.transport import RoutedHTTPConn

if TYPE_CHECKING:
    from cryptolake_nb.simulator import LoopbackServer

__all__ = [
    "Callback",
    "Feed",
    "FeedHealth",
    "FeedSpec",
    "GapCallback",
    "PrivateSymbolsExchange",
    "REPLAY_FEED_OPTIONS",
    "ReconnectPolicy",
    "build_feed",
    "check_cryptofeed_config",
    "check_feed_options",
    "cryptofeed_config",
    "describe_feed",
    "exchange_id",
    "feed_options",
    "feed_health",
    "is_dead_feed_error",
    "load_symbol_data",
    "make_feedhandler",
    "public_channels",
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

REPLAY_FEED_OPTIONS: dict[str, Any] = {"candle_closed_only": False}
"""Feed options for replaying a capture (the driver in replay.py, or a CaptureServer over the socket)."""


# Feed keyword arguments the lake sets itself, and the setting to use instead
RESERVED_OPTIONS = {
    "symbols": "symbols", "channels": "channels", "subscription": "symbols and channels",
    "callbacks": "nothing: the lake's callbacks store the data", "retries": "retries",
    "http_proxy": "proxy (it covers websockets too)", "timeout": "reconnect.watchdog_s",
    "timeout_interval": "reconnect.watchdog_s", "exceptions": "nothing: the lake handles connection errors",
}
# keys of cryptofeed's own configuration that a kernel needs as the lake sets them (see _CONFIG)
KERNEL_CONFIG_KEYS = {"uvloop": "the kernel's event loop policy must not change",
                      "log": "cryptofeed's logger is routed into the logging tree (route_cryptofeed_logging)"}


def exchange_id(value: object) -> str:
    """cryptofeed's exchange id (EXCHANGE_MAP key) for `value`, any case; ConfigError if unknown."""
    name = value.strip().upper() if isinstance(value, str) else value
    if name not in EXCHANGE_MAP:
        raise ConfigError(f"unknown exchange {value!r}; allowed: {', '.join(sorted(EXCHANGE_MAP))}")
    return name


def public_channels(exchange: str) -> tuple[str, ...]:
    """The channels of `exchange` that need no API key."""
    cls = EXCHANGE_MAP[exchange]
    return tuple(sorted(c for c in cls.websocket_channels if not cls.is_authenticated_channel(c)))


def feed_options(exchange: str) -> tuple[str, ...]:
    """The keyword arguments `exchange`'s cryptofeed Feed class takes that a configuration may set."""
    names: set[str] = set()
    for cls in EXCHANGE_MAP[exchange].__mro__:
        init = cls.__dict__.get("__init__")
        if init is None or cls is object:
            continue
        for param in inspect.signature(init).parameters.values():
            if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD) and param.name != "self":
                names.add(param.name)
    return tuple(sorted(names - set(RESERVED_OPTIONS) - {"address"}))


def check_cryptofeed_config(config: object, *, where: str = "cryptofeed") -> dict[str, Any]:
    """cryptofeed's own configuration (API keys per exchange, ...), minus what the lake must set."""
    if not isinstance(config, Mapping) or not all(isinstance(k, str) for k in config):
        raise ConfigError(f"{where} must be a mapping of cryptofeed configuration keys, got {type(config).__name__}")
    for key, why in KERNEL_CONFIG_KEYS.items():
        if key in config:
            raise ConfigError(f"{where}.{key} cannot be set: {why}")
    return dict(config)


def check_feed_options(exchange: str, options: object) -> dict[str, Any]:
    """Keyword arguments for `exchange`'s cryptofeed Feed class (max_depth, candle_interval, ...),
    checked against its signature; `config` is cryptofeed's configuration (check_cryptofeed_config)."""
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise ConfigError(f"cryptofeed options must be a mapping of keyword arguments, got {type(options).__name__}")
    allowed = feed_options(exchange)
    for key in options:
        if key in RESERVED_OPTIONS:
            raise ConfigError(f"cryptofeed option {key!r} is set by the lake; use {RESERVED_OPTIONS[key]}")
        if key not in allowed:
            raise ConfigError(f"cryptofeed option {key!r} is not a keyword argument of {exchange}'s Feed; "
                              f"allowed: {', '.join(allowed)}")
    out = dict(options)
    if "config" in out:
        out["config"] = check_cryptofeed_config(out["config"] or {}, where="cryptofeed.config")
    return out


def cryptofeed_config(user: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `config=` a Feed gets: the user's cryptofeed configuration with the kernel's keys set."""
    return {**(user or {}), **_CONFIG}


@dataclass(frozen=True)
class FeedSpec:
    """What to subscribe: an exchange (EXCHANGE_MAP name), normalised symbols, cryptofeed channels.

    With `simulator` (an ExchangeSimulator or CaptureServer speaking `exchange`), the feed connects
    to it instead of the exchange.

    Connections: `proxy` (a URL 'http://...' or 'socks5://...', False/'direct', or None: the
    HTTPS_PROXY/ALL_PROXY/NO_PROXY environment; a simulated feed reads no environment) and
    `no_proxy` (hosts that bypass it) as in proxy.py; `retries` reconnection attempts per outage
    before the feed is failed (-1: no limit); `reconnect` the backoff and watchdog (reconnect.py);
    `connect_timeout` / `rest_timeout` in seconds for opening a websocket / a REST request.

    `options`: keyword arguments for the exchange's cryptofeed Feed class (`max_depth`,
    `candle_interval`, `depth_interval`, ...; `config` is cryptofeed's own configuration, e.g. API
    keys), checked against its signature; what the lake sets itself is refused (`check_feed_options`).
    """

    exchange: str
    symbols: tuple[str, ...]
    channels: tuple[str, ...]
    simulator: LoopbackServer | None = None
    retries: int = 10  # reconnection attempts per outage before the feed fails; -1 retries forever
    proxy: ProxySetting = None
    no_proxy: tuple[str, ...] | None = None
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)  # cryptofeed Feed keyword arguments
    connect_timeout: float = 10.0  # seconds a websocket may take to open (proxy tunnel and TLS included)
    rest_timeout: float = 30.0     # seconds a REST request may take (the symbol list, snapshots)

    def __post_init__(self) -> None:
        for name in ("symbols", "channels"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
                raise ConfigError(f"FeedSpec.{name} must be a sequence of non-empty strings, got {value!r}")
            object.__setattr__(self, name, tuple(dict.fromkeys(value)))
        object.__setattr__(self, "exchange", exchange_id(self.exchange))
        if not self.symbols:
            raise ConfigError(f"FeedSpec for {self.exchange} needs at least one symbol")
        if not self.channels:
            raise ConfigError(f"FeedSpec for {self.exchange} needs at least one channel")
        allowed = public_channels(self.exchange)
        for channel in self.channels:
            if channel not in allowed:
                raise ConfigError(f"unknown channel {channel!r} for {self.exchange}; allowed: {', '.join(allowed)}")
        speaks = getattr(self.simulator, "exchange", None)
        if self.simulator is not None and self.exchange != speaks:
            raise ConfigError(f"the simulator speaks {speaks}'s protocol, not {self.exchange!r}")
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < -1:
            raise ConfigError(f"retries must be an int >= -1, got {self.retries!r}")
        object.__setattr__(self, "proxy", normalise_setting(self.proxy))
        if self.no_proxy is not None:
            object.__setattr__(self, "no_proxy", split_no_proxy(self.no_proxy))
        if not isinstance(self.reconnect, ReconnectPolicy):
            raise ConfigError(f"reconnect must be a ReconnectPolicy, got {type(self.reconnect).__name__}")
        object.__setattr__(self, "options", check_feed_options(self.exchange, self.options))
        for name in ("connect_timeout", "rest_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < float("inf"):
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")

    @property
    def name(self) -> str:
        """A short label for status displays, e.g. 'BINANCE(sim) trades,l2_book BTC-USDT'."""
        sim = "(sim)" if self.simulator is not None else ""
        return f"{self.exchange}{sim} {','.join(self.channels)} {','.join(self.symbols)}"

    def route(self, env: Mapping[str, str] | None = None) -> ProxyRoute:
        """Where this feed's connections go, from the settings and (read now) the environment."""
        if self.simulator is not None and self.proxy is None:
            return ProxyRoute()  # loopback: an environment proxy must not see the simulator's traffic
        return resolve_route(self.proxy, no_proxy=self.no_proxy, env=env)


def _is_async_callable(cb: object) -> bool:
    return inspect.iscoroutinefunction(cb) or inspect.iscoroutinefunction(getattr(cb, "__call__", None))


def feed_health(feed: Feed) -> FeedHealth | None:
    """The FeedHealth `build_feed` attached to `feed`, if any."""
    runtime = runtime_of(feed)
    return None if runtime is None else runtime.health


def build_feed(spec: FeedSpec, callbacks: Mapping[str, Callback], *, on_gap: GapCallback | None = None,
               health: FeedHealth | None = None, rng: random.Random | None = None,
               env: Mapping[str, str] | None = None) -> Feed:
    """Make the cryptofeed Feed for `spec`; the simulator's when set, else the real exchange's.

    Call it on the thread whose event loop will run the feed. Without a simulator, cryptofeed
    fetches the exchange's symbol list with a blocking request at construction (here through the
    feed's proxy, with a timeout; an unreachable proxy raises ProxyError).

    The feed counts its connections, skips malformed frames and reconnects by `spec.reconnect`
    (`FeedHealth`, as `health` or a new one, reachable with `feed_health(feed)`); reconnects,
    watchdog trips and a failed feed are reported to `on_gap` (or `health.on_gap`), e.g.
    `GapLog.record`. `rng` draws the backoff jitter; `env` replaces os.environ for the proxy.
    """
    for channel, cb in callbacks.items():
        if channel not in spec.channels:
            raise ConfigError(f"callback for channel {channel!r} which the spec does not subscribe ({', '.join(spec.channels)})")
        if not _is_async_callable(cb):
            raise ConfigError(f"callback for {channel!r} must be an async callable (obj, receipt_timestamp), got {cb!r}")
    route = spec.route(env)
    options = dict(spec.options)
    kwargs: dict[str, Any] = dict(
        symbols=list(spec.symbols), channels=list(spec.channels), callbacks=dict(callbacks),
        retries=spec.retries, config=cryptofeed_config(options.pop("config", None)), **options,
    )
    if getattr(spec.simulator, "capture", None) is not None:
        kwargs.update(REPLAY_FEED_OPTIONS)  # the same feed options as the replay driver
    ssl_context, allowed = None, None
    try:
        if spec.simulator is not None:
            ssl_context, allowed = spec.simulator.ssl_context, simulator_prefixes(spec.simulator)
            feed = simulated_class(spec.simulator)(spec.simulator, **kwargs)
        else:
            feed = managed_class(EXCHANGE_MAP[spec.exchange], route, spec.rest_timeout)(**kwargs)
    except UnsupportedSymbol as exc:
        raise ConfigError(f"{exc} (requested symbols: {', '.join(spec.symbols)})") from exc
    except UnsupportedDataFeed as exc:
        raise ConfigError(str(exc)) from exc
    feed.http_conn = RoutedHTTPConn(feed.id, route, ssl_context, allowed, timeout=spec.rest_timeout)
    if health is None:
        health = FeedHealth(spec.exchange, on_gap=on_gap)
    elif on_gap is not None:
        health.on_gap = on_gap
    health.proxy = route.describe()
    attach(feed, FeedRuntime(health, route, spec.retries, spec.reconnect, rng or random.Random(), ssl_context, allowed,
                             connect_timeout=spec.connect_timeout, rest_timeout=spec.rest_timeout))
    return feed


class _Forward(logging.Handler):
    """Hands cryptofeed's records to a logger of ours, so they travel our tree (and only it)."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        if self.target.isEnabledFor(record.levelno):
            self.target.handle(_redacted(record))


def _redacted(record: logging.LogRecord) -> logging.LogRecord:
    """A copy with URL credentials masked in the message and traceback (cryptofeed logs exceptions
    whose text may hold a proxy URL)."""
    copy = logging.makeLogRecord(record.__dict__)
    copy.msg, copy.args = redact(record.getMessage()), None
    if record.exc_info:
        copy.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        copy.exc_info = None
    return copy


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
