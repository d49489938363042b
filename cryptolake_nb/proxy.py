"""Proxy settings: which proxy (HTTP CONNECT or SOCKS5) a connection to a URL goes through.

One decision for the three clients a feed uses (websockets, aiohttp, requests), because each
reads the environment differently (aiohttp not at all, websockets ignores ALL_PROXY). Pure
values, no network: `transport.py` applies the decision, the config model can hold these.

    explicit `proxy="socks5://user:pw@host:1080"`   every connection of the feed uses it;
                                                     the environment is not read (NO_PROXY neither)
    explicit `proxy=False` (or "direct")            no proxy, whatever the environment says
    `proxy=None` (default)                          https_proxy / HTTPS_PROXY for https and wss
                                                     targets, http_proxy for http/ws, then
                                                     all_proxy / ALL_PROXY; no_proxy / NO_PROXY
                                                     bypasses (lower case wins, as in curl)

Credentials never leave this module in clear except through `ProxyURL.url` (given to the client
that authenticates): `str()`, `repr()` and every error show `scheme://***@host:port`.
"""
from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Union
from urllib.parse import quote, unquote, urlsplit

from .errors import ConfigError

__all__ = ["PROXY_SCHEMES", "ProxyRoute", "ProxySetting", "ProxyURL", "normalise_setting", "redact", "resolve_route",
           "split_no_proxy"]

PROXY_SCHEMES = ("http", "socks5", "socks5h")
"""http: HTTP CONNECT tunnel; socks5: SOCKS5, names resolved here; socks5h: names resolved by the proxy."""

_DEFAULT_PORTS = {"http": 8080, "socks5": 1080, "socks5h": 1080}
_DIRECT_WORDS = ("direct", "none", "off")
# scheme://userinfo@ in any text: the userinfo is what gets masked
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/@'\"]+)@")


def redact(text: object) -> str:
    """`text` with the credentials of every URL in it masked (for logs, status and errors)."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", str(text))


@dataclass(frozen=True)
class ProxyURL:
    """A validated proxy address; the password is kept out of repr, str and comparisons' output."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, value: str, *, source: str = "proxy") -> ProxyURL:
        """Parse 'scheme://[user[:password]@]host[:port]'; ConfigError (credentials masked) if invalid."""
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{source} must be a proxy URL like 'http://host:3128' or 'socks5://host:1080', "
                              f"got {redact(value)!r}")
        text = value.strip()
        shown = redact(text)
        if "://" not in text:
            raise ConfigError(f"{source} {shown!r} has no scheme; write e.g. 'http://{shown}' "
                              f"(allowed schemes: {', '.join(PROXY_SCHEMES)})")
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"{source} {shown!r} is not a valid URL: {redact(exc)}") from None
        scheme = parts.scheme.lower()
        if scheme not in PROXY_SCHEMES:
            raise ConfigError(f"{source} {shown!r} has scheme {scheme!r}; allowed: {', '.join(PROXY_SCHEMES)}")
        if not parts.hostname:
            raise ConfigError(f"{source} {shown!r} names no host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(f"{source} {shown!r} must be scheme://host:port only (no path or query)")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        return cls(scheme, parts.hostname, port or _DEFAULT_PORTS[scheme], username, password)

    @property
    def kind(self) -> str:
        """'http' or 'socks5'."""
        return "http" if self.scheme == "http" else "socks5"

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The full URL, credentials included: only for the client that authenticates."""
        return f"{self.scheme}://{self._userinfo(masked=False)}{self.address}"

    @property
    def url_without_credentials(self) -> str:
        return f"{self.scheme}://{self.address}"

    @property
    def redacted(self) -> str:
        """The URL as logs and status show it: 'socks5://***@127.0.0.1:1080' when it has credentials."""
        return f"{self.scheme}://{self._userinfo(masked=True)}{self.address}"

    def _userinfo(self, *, masked: bool) -> str:
        if self.username is None and self.password is None:
            return ""
        if masked:
            return "***@"
        user = quote(self.username or "", safe="")
        return f"{user}:{quote(self.password, safe='')}@" if self.password is not None else f"{user}@"

    def __str__(self) -> str:
        return self.redacted

    def __repr__(self) -> str:
        return f"ProxyURL({self.redacted!r})"


ProxySetting = Union[str, ProxyURL, bool, None]
"""What a user passes as `proxy`: a URL, False/'direct' (never a proxy), or None (the environment)."""


def split_no_proxy(value: str | Sequence[str]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    if not all(isinstance(i, str) for i in items):
        raise ConfigError(f"no_proxy must be a comma-separated string or a list of host names, got {value!r}")
    return tuple(i.strip().lower() for i in items if i.strip())


def _env(env: Mapping[str, str], name: str) -> str | None:
    """Lower case first (curl, requests and urllib agree); empty counts as unset."""
    for key in (name.lower(), name.upper()):
        value = env.get(key)
        if value and value.strip():
            return value
    return None


@dataclass(frozen=True)
class ProxyRoute:
    """The resolved decision for one feed: a proxy per target scheme, and the hosts that bypass it."""

    https: ProxyURL | None = None     # for https:// and wss:// targets
    http: ProxyURL | None = None      # for http:// and ws:// targets
    bypass: tuple[str, ...] = ()      # no_proxy entries: host, .domain, *, IP, CIDR, optionally :port
    source: str = "direct"            # where the decision came from, for status displays

    def for_url(self, url: str) -> ProxyURL | None:
        """The proxy a connection to `url` goes through, or None for a direct connection."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        proxy = self.https if scheme in ("https", "wss") else self.http if scheme in ("http", "ws") else None
        if proxy is None or self._bypassed(parts.hostname or "", parts.port or (443 if scheme in ("https", "wss") else 80)):
            return None
        return proxy

    def _bypassed(self, host: str, port: int) -> bool:
        host = host.lower().rstrip(".")
        for entry in self.bypass:
            if entry == "*":
                return True
            name, _, want_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
            if want_port and want_port != str(port):
                continue
            name = name.strip("[]").lstrip("*").rstrip(".")
            if _ip_match(host, name) or host == name.lstrip(".") or host.endswith("." + name.lstrip(".")):
                return True
        return False

    def describe(self) -> str:
        """e.g. 'https via socks5://***@127.0.0.1:1080 (explicit)' or 'direct'."""
        used = [f"{k} via {p.redacted}" for k, p in (("https", self.https), ("http", self.http)) if p is not None]
        if not used:
            return f"direct ({self.source})" if self.source != "direct" else "direct"
        suffix = f"; bypass {','.join(self.bypass)}" if self.bypass else ""
        return f"{'; '.join(used)} ({self.source}){suffix}"

    @property
    def proxies(self) -> tuple[ProxyURL, ...]:
        return tuple(dict.fromkeys(p for p in (self.https, self.http) if p is not None))


def _ip_match(host: str, entry: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    try:
        return address in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False


def normalise_setting(value: ProxySetting, *, source: str = "proxy") -> ProxyURL | bool | None:
    """Validate a user's `proxy` value now (at subscribe time): a ProxyURL, False (direct) or None (env)."""
    if value is None or isinstance(value, ProxyURL):
        return value
    if value is True:
        return None
    if value is False:
        return False
    if isinstance(value, str) and value.strip().lower() in _DIRECT_WORDS:
        return False
    if isinstance(value, str):
        return ProxyURL.parse(value, source=source)
    raise ConfigError(f"{source} must be a proxy URL, False/'direct' or None (environment), got {type(value).__name__}")


def resolve_route(setting: ProxySetting, *, no_proxy: str | Sequence[str] | None = None,
                  env: Mapping[str, str] | None = None) -> ProxyRoute:
    """The route for a feed: `setting` (see the module doc), `no_proxy` (overrides NO_PROXY), `env`
    (default os.environ, read now: call it when the feed is built)."""
    value = normalise_setting(setting)
    bypass = None if no_proxy is None else split_no_proxy(no_proxy)
    if value is False:
        return ProxyRoute(source="explicit")
    if isinstance(value, ProxyURL):
        return ProxyRoute(https=value, http=value, bypass=bypass or (), source="explicit")
    env = os.environ if env is None else env
    all_proxy = _env(env, "ALL_PROXY")
    found = {}
    for scheme, var in (("https", "HTTPS_PROXY"), ("http", "HTTP_PROXY")):
        raw = _env(env, var)
        name = var if raw is not None else "ALL_PROXY"
        raw = raw if raw is not None else all_proxy
        found[scheme] = None if raw is None else ProxyURL.parse(raw, source=f"environment variable {name}")
    if bypass is None:
        bypass = split_no_proxy(_env(env, "NO_PROXY") or "")
    if found["https"] is None and found["http"] is None:
        return ProxyRoute(source="direct")
    return ProxyRoute(https=found["https"], http=found["http"], bypass=bypass, source="environment")
