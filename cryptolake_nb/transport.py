"""How a feed's REST traffic leaves the process: per-URL proxy routing for cryptofeed's HTTP clients.

cryptofeed's `http_proxy` reaches only aiohttp GETs and only HTTP proxies; its blocking symbol
fetch uses `requests` with whatever the environment says and no timeout. Here the `ProxyRoute` of
`proxy.py` is applied to both: aiohttp sessions (HTTP CONNECT natively, SOCKS5 through an
aiohttp-socks connector) and requests (HTTP CONNECT natively, SOCKS5 through PySocks). The
websocket side is one option of websockets.connect (`ws_proxy_option`). Failures are explained
(`explain_failure`): a proxy that does not answer is named as such, without credentials.
"""
from __future__ import annotations

import asyncio
import base64
import socket
import ssl
from typing import Any

import aiohttp
import requests
from aiohttp_socks import ProxyConnector, ProxyType
from cryptofeed.connection import HTTPAsyncConn, HTTPConcurrentPoll, HTTPPoll, HTTPSync

from .errors import ConfigError, ProxyError
from .proxy import ProxyRoute, ProxyURL, redact

__all__ = ["ProxiedSyncHTTP", "RoutedHTTPConn", "RoutedSession", "explain_failure", "route_rest_connection",
           "ws_proxy_option"]

PROBE_TIMEOUT_S = 2.0
SYMBOL_FETCH_TIMEOUT_S = 30.0


def _proxy_headers(proxy: ProxyURL) -> dict[str, str] | None:
    if proxy.username is None:
        return None
    token = base64.b64encode(f"{proxy.username}:{proxy.password or ''}".encode()).decode("ascii")
    return {"Proxy-Authorization": f"Basic {token}"}


def ws_proxy_option(route: ProxyRoute, address: str) -> str | None:
    """websockets.connect's `proxy=` for `address`: the URL (credentials included) or None (direct).
    Always explicit: websockets >= 15 would otherwise read the environment on its own."""
    proxy = route.for_url(address)
    return None if proxy is None else proxy.url


class RoutedSession:
    """Stands where cryptofeed keeps its aiohttp.ClientSession: get/post/delete pick, per URL, a
    direct session, aiohttp's own HTTP CONNECT proxying, or a session on a SOCKS5 connector."""

    def __init__(self, route: ProxyRoute, ssl_context: ssl.SSLContext | None = None, *,
                 timeout: float | None = None) -> None:
        self.route = route
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        # None: aiohttp's default (5 minutes per request)
        self._timeout = aiohttp.ClientTimeout(total=timeout) if timeout is not None else None
        self._sessions: dict[ProxyURL | None, aiohttp.ClientSession] = {}
        self._closed = False

    def _pick(self, url: Any) -> tuple[aiohttp.ClientSession, dict[str, Any]]:
        if self._closed:
            raise RuntimeError("session is closed")
        proxy = self.route.for_url(str(url))
        key = proxy if proxy is not None and proxy.kind == "socks5" else None
        session = self._sessions.get(key)
        if session is None:
            if key is None:
                connector: aiohttp.BaseConnector = aiohttp.TCPConnector(ssl=self._ssl)
            else:
                connector = ProxyConnector(host=key.host, port=key.port, proxy_type=ProxyType.SOCKS5,
                                           username=key.username, password=key.password,
                                           rdns=key.scheme == "socks5h", ssl=self._ssl)
            extra = {"timeout": self._timeout} if self._timeout is not None else {}
            session = self._sessions[key] = aiohttp.ClientSession(connector=connector, **extra)
        if proxy is not None and proxy.kind == "http":
            return session, {"proxy": proxy.url_without_credentials, "proxy_headers": _proxy_headers(proxy)}
        return session, {"proxy": None}

    def _call(self, method: str, url: Any, kwargs: dict[str, Any]) -> Any:
        session, routing = self._pick(url)
        kwargs.pop("proxy_auth", None)
        kwargs.update(routing)
        return getattr(session, method)(url, **kwargs)

    def get(self, url: Any, **kwargs: Any) -> Any:
        return self._call("get", url, kwargs)

    def post(self, url: Any, **kwargs: Any) -> Any:
        return self._call("post", url, kwargs)

    def delete(self, url: Any, **kwargs: Any) -> Any:
        return self._call("delete", url, kwargs)

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        self._closed = True
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


class _Routed:
    """Mixin for cryptofeed's aiohttp connections: the session is a RoutedSession; with `_allowed`
    set (a simulated feed), any address outside those prefixes is refused before a socket opens."""

    _route: ProxyRoute = ProxyRoute()
    _ssl_context: ssl.SSLContext | None = None
    _allowed: tuple[str, ...] | None = None
    _timeout: float | None = None

    async def _open(self) -> None:
        if self.is_open:  # type: ignore[attr-defined]
            return
        self.conn = RoutedSession(self._route, self._ssl_context, timeout=self._timeout)
        self.sent = self.received = 0
        self.last_message = None

    def _check(self, address: str) -> None:
        if self._allowed is not None and not str(address).startswith(self._allowed):
            raise ConfigError(f"simulated feed refused a request to {redact(address)} (not the simulator: "
                              f"{', '.join(self._allowed)})")


class RoutedHTTPConn(_Routed, HTTPAsyncConn):
    """cryptofeed's REST connection (book snapshots and the like) on a ProxyRoute."""

    def __init__(self, conn_id: str, route: ProxyRoute, ssl_context: ssl.SSLContext | None = None,
                 allowed: tuple[str, ...] | None = None, *, timeout: float | None = None) -> None:
        super().__init__(conn_id)
        self._route, self._ssl_context, self._allowed, self._timeout = route, ssl_context, allowed, timeout

    async def read(self, address: str, *args: Any, **kwargs: Any) -> Any:
        self._check(address)
        return await super().read(address, *args, **kwargs)


class _RoutedPoll(_Routed, HTTPPoll):
    """cryptofeed's REST poller (e.g. open interest) on a ProxyRoute."""

    async def _read_address(self, address: str, header: Any = None) -> str:
        self._check(address)
        return await super()._read_address(address, header)


class _RoutedConcurrentPoll(_Routed, HTTPConcurrentPoll):
    """cryptofeed's concurrent REST poller on a ProxyRoute."""

    async def _read_address(self, address: str, header: Any = None) -> str:
        self._check(address)
        return await super()._read_address(address, header)


_ROUTED_POLLS = {HTTPPoll: _RoutedPoll, HTTPConcurrentPoll: _RoutedConcurrentPoll}


def route_rest_connection(conn: Any, route: ProxyRoute, ssl_context: ssl.SSLContext | None = None,
                          allowed: tuple[str, ...] | None = None, *, timeout: float | None = None) -> bool:
    """Put a poller cryptofeed made in `_connect_rest` on `route` (it makes them with a default
    session and no proxy), each request within `timeout` s; False if `conn` is not one of cryptofeed's pollers."""
    routed = _ROUTED_POLLS.get(type(conn))
    if routed is None:
        return False
    conn.__class__ = routed
    conn._route, conn._ssl_context, conn._allowed, conn._timeout = route, ssl_context, allowed, timeout
    return True


class ProxiedSyncHTTP(HTTPSync):
    """cryptofeed's blocking GET (the symbol list, at Feed construction) on a ProxyRoute, with a
    timeout. The route already read the environment, so requests is told not to read it again.
    `verify`: requests' meaning (True, or the path of a CA bundle)."""

    def __init__(self, route: ProxyRoute, *, timeout: float = SYMBOL_FETCH_TIMEOUT_S, verify: bool | str = True) -> None:
        self.route, self.timeout, self.verify = route, timeout, verify

    def read(self, address: str, params: Any = None, headers: Any = None, json: bool = False, text: bool = True,
             uuid: Any = None) -> Any:
        proxy = self.route.for_url(address)
        with requests.Session() as session:
            session.trust_env = False
            proxies = {"http": proxy.url, "https": proxy.url} if proxy is not None else {}
            try:
                response = session.get(address, params=params, headers=headers, proxies=proxies,
                                       timeout=self.timeout, verify=self.verify)
            except requests.RequestException as exc:
                if proxy is None:
                    raise
                raise ProxyError(f"{uuid or 'feed'}: GET {redact(address)}: {_explain_sync(exc, proxy)}") from None
        return self.process_response(response, address, json=json, text=text, uuid=uuid)

    def write(self, address: str, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError(f"refused a blocking POST to {redact(address)}: public feeds only read")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return redact(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _reachable_sync(proxy: ProxyURL) -> bool:
    try:
        with socket.create_connection((proxy.host, proxy.port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _explain_sync(exc: BaseException, proxy: ProxyURL) -> str:
    if not _reachable_sync(proxy):
        return f"proxy {proxy.redacted} unreachable ({_describe(exc)})"
    return f"connection through proxy {proxy.redacted} failed ({_describe(exc)})"


async def _reachable(proxy: ProxyURL) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(proxy.host, proxy.port), PROBE_TIMEOUT_S)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True


async def explain_failure(exc: BaseException, proxy: ProxyURL | None) -> str:
    """One line for status and logs, credentials masked. Behind a proxy, the proxy is probed, so a
    dead proxy reads 'proxy http://***@host:port unreachable (...)' rather than a bare socket error."""
    if proxy is None:
        return _describe(exc)
    if not await _reachable(proxy):
        return f"proxy {proxy.redacted} unreachable ({_describe(exc)})"
    return f"connection through proxy {proxy.redacted} failed ({_describe(exc)})"
