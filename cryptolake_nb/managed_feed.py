"""The mixin every feed we build carries: our health hooks, proxy routing and reconnect loop.

It sits first in the feed class's MRO and changes two cryptofeed methods: `connect()` (each
connection gets its proxy, REST pollers their routed session, websockets the health hooks) and
`start()` (a `ManagedConnection` per connection instead of cryptofeed's ConnectionHandler). What it
needs per feed is kept in a side table, so the feed's attributes stay exactly cryptofeed's.
"""
from __future__ import annotations

import random
import ssl
import weakref
from dataclasses import dataclass, field
from typing import Any

from cryptofeed.connection import WSAsyncConn

from .errors import ConfigError
from .feed_health import FeedHealth
from .proxy import ProxyRoute, redact
from .reconnect import ManagedConnection, ReconnectPolicy
from .transport import SYMBOL_FETCH_TIMEOUT_S, ProxiedSyncHTTP, route_rest_connection, ws_proxy_option

__all__ = ["FeedRuntime", "ManagedFeed", "attach", "managed_class", "runtime_of"]


@dataclass
class FeedRuntime:
    """What one built feed runs with (besides cryptofeed's own settings)."""

    health: FeedHealth
    route: ProxyRoute = field(default_factory=ProxyRoute)
    retries: int = 10
    policy: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    rng: random.Random = field(default_factory=random.Random)
    ssl_context: ssl.SSLContext | None = None  # None: the system's trust store
    allowed: tuple[str, ...] | None = None     # a simulated feed: its simulator's address prefixes
    connect_timeout: float | None = None       # seconds to open a websocket (None: websockets' default)
    rest_timeout: float | None = None          # seconds per REST request (None: aiohttp's default)


_RUNTIME: weakref.WeakKeyDictionary[Any, FeedRuntime] = weakref.WeakKeyDictionary()


def attach(feed: Any, runtime: FeedRuntime) -> None:
    _RUNTIME[feed] = runtime


def runtime_of(feed: Any) -> FeedRuntime | None:
    return _RUNTIME.get(feed)


def _addresses(conn: Any) -> list[str]:
    address = getattr(conn, "address", None)
    return [str(a) for a in address] if isinstance(address, (list, tuple)) else [str(address)] if address else []


def subscribed_pairs(feed: Any, conn: Any) -> list[tuple[str, str | None]]:
    """(normalised channel, normalised symbol) pairs a connection carries, for gap rows."""
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


class ManagedFeed:
    """First in a built feed class's MRO (see the module docstring)."""

    def connect(self) -> list:
        entries = super().connect()  # type: ignore[misc]
        rt = _RUNTIME.get(self)
        if rt is None:
            return entries
        out = []
        for entry in entries:
            conn = entry[0]
            if rt.allowed is not None:
                stray = [a for a in _addresses(conn) if not a.startswith(rt.allowed)]
                if stray:
                    raise ConfigError(f"simulated {self.id} feed would connect to {redact(stray[0])}, "  # type: ignore[attr-defined]
                                      f"which is not its simulator ({', '.join(rt.allowed)})")
            if isinstance(conn, WSAsyncConn):
                conn.ws_kwargs["proxy"] = ws_proxy_option(rt.route, conn.address)
                if rt.connect_timeout is not None:
                    conn.ws_kwargs["open_timeout"] = rt.connect_timeout
                if rt.ssl_context is not None:
                    conn.ws_kwargs["ssl"] = rt.ssl_context
            else:
                route_rest_connection(conn, rt.route, rt.ssl_context, rt.allowed, timeout=rt.rest_timeout)
            rt.health.register(conn, subscribed_pairs(self, conn))
            out.append(rt.health.wrap(conn, entry))
        return out

    def start(self, loop: Any) -> None:
        """cryptofeed's Feed.start with a ManagedConnection per connection."""
        rt = _RUNTIME.get(self)
        if rt is None:
            super().start(loop)  # type: ignore[misc]
            return
        for conn, subscribe, handler, authenticate in self.connect():
            address = next(iter(_addresses(conn)), "")
            managed = ManagedConnection(conn, subscribe, handler, authenticate, retries=rt.retries, policy=rt.policy,
                                        health=rt.health, rng=rt.rng, proxy=rt.route.for_url(address),
                                        exceptions=self.exceptions, log_on_error=self.log_on_error,  # type: ignore[attr-defined]
                                        start_delay=self.start_delay)  # type: ignore[attr-defined]
            self.connection_handlers.append(managed)  # type: ignore[attr-defined]
            managed.start(loop)
        for callbacks in self.callbacks.values():  # type: ignore[attr-defined]
            for callback in callbacks:
                if hasattr(callback, "start"):  # cryptofeed backends; our callbacks have none
                    callback.start(loop, multiprocess=self.config.backend_multiprocessing)  # type: ignore[attr-defined]


_CLASSES: dict[tuple[type, ProxyRoute, float], type] = {}


def managed_class(base: type, route: ProxyRoute, timeout: float = SYMBOL_FETCH_TIMEOUT_S) -> type:
    """`base` (a cryptofeed exchange class) with ManagedFeed first and its blocking symbol fetch
    on `route` within `timeout` s; one class per (exchange, route, timeout), since cryptofeed reads
    `http_sync` from the class."""
    key = (base, route, timeout)
    cls = _CLASSES.get(key)
    if cls is None:
        cls = _CLASSES[key] = type(base.__name__, (ManagedFeed, base),
                                   {"http_sync": ProxiedSyncHTTP(route, timeout=timeout)})
    return cls
