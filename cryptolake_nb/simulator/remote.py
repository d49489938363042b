"""A simulator in another process, as a simulated feed needs to see it: exchange, addresses, TLS trust.

`ExchangeSimulator` (or `cryptolake simulate`) serves on 127.0.0.1 in one process; a collector in
another (`cryptolake collect` with `simulator: {url, ca_file}` in a feed's configuration) reaches it
through a `SimulatorEndpoint`: the same attributes `build_feed` reads from an in-process simulator,
with the symbol lists fetched from the simulator's REST routes over TLS instead of in-process.
Only loopback addresses are accepted, and no proxy from the environment is ever used.
"""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptolake_nb.errors import ConfigError, SimulatorError
from cryptolake_nb.simulator.loopback import LOOPBACK_HOSTS

__all__ = ["SimulatorEndpoint"]


class SimulatorEndpoint:
    """A running simulator at `url` ('https://127.0.0.1:PORT' or 'wss://...'), speaking `exchange`'s
    protocol, trusted through its certificate authority: `ca_file` (a PEM path) or `ca_pem`.

    `timeout` bounds each symbol-list request (at feed construction).
    """

    capture = None  # not a CaptureServer: a feed on it takes no replay options

    def __init__(self, exchange: str, url: str, *, ca_file: str | Path | None = None,
                 ca_pem: bytes | str | None = None, timeout: float = 10.0) -> None:
        if not isinstance(exchange, str) or not exchange.strip():
            raise ConfigError(f"simulator exchange must be a non-empty string, got {exchange!r}")
        self.exchange = exchange.strip().upper()
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("https", "wss") or parts.hostname is None:
            raise ConfigError(f"simulator url must look like 'https://127.0.0.1:PORT', got {url!r}")
        if parts.hostname not in LOOPBACK_HOSTS:
            raise ConfigError(f"simulator url must be on loopback ({', '.join(LOOPBACK_HOSTS)}), got {url!r}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not port:
            raise ConfigError(f"simulator url needs a port, e.g. 'https://127.0.0.1:8443', got {url!r}")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        self.port = port
        self.rest_url, self.ws_url = f"https://{host}:{port}", f"wss://{host}:{port}"
        if (ca_file is None) == (ca_pem is None):
            raise ConfigError("a simulator endpoint needs exactly one of ca_file (a PEM path) or ca_pem")
        if ca_file is not None:
            try:
                ca_pem = Path(ca_file).read_bytes()
            except OSError as exc:
                raise ConfigError(f"simulator ca_file {str(ca_file)!r} cannot be read: {exc.strerror or exc}") from None
        text = ca_pem.decode("ascii", "replace") if isinstance(ca_pem, bytes) else str(ca_pem)
        try:
            self.ssl_context = ssl.create_default_context(cadata=text)
        except (ssl.SSLError, ValueError) as exc:
            where = f"ca_file {str(ca_file)!r}" if ca_file is not None else "ca_pem"
            raise ConfigError(f"simulator {where} is not a PEM certificate: {exc}") from None
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise ConfigError(f"simulator timeout must be a positive number of seconds, got {timeout!r}")
        self.timeout = float(timeout)

    def local_url(self, url: str) -> str:
        """Where the simulator answers what the exchange serves at `url` (same path and query)."""
        parts = urlsplit(url)
        base = self.ws_url if parts.scheme in ("ws", "wss") else self.rest_url
        return base + parts.path + (f"?{parts.query}" if parts.query else "")

    def symbol_reader(self) -> "_HTTPSReader":
        """cryptofeed's blocking symbol-list reads, as GETs to the simulator."""
        return _HTTPSReader(self)

    def __repr__(self) -> str:
        return f"SimulatorEndpoint({self.exchange} at {self.rest_url})"


class _HTTPSReader:
    """HTTPSync.read's shape: GET the simulator's route for an exchange address, over TLS, direct."""

    def __init__(self, endpoint: SimulatorEndpoint) -> None:
        self.endpoint = endpoint
        # ProxyHandler({}): HTTPS_PROXY and friends must never see loopback traffic
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                   urllib.request.HTTPSHandler(context=endpoint.ssl_context))

    def read(self, address: str, params: Any = None, headers: Any = None, json: bool = False,
             text: bool = True, uuid: Any = None) -> Any:
        url = self.endpoint.local_url(address)
        try:
            with self._opener.open(url, timeout=self.endpoint.timeout) as response:
                body = response.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            raise SimulatorError(f"the simulator at {self.endpoint.rest_url} answered {exc.code} to GET {url}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SimulatorError(f"the simulator at {self.endpoint.rest_url} cannot be reached: {reason}") from None
        return _loads(body) if json else body


def _loads(body: str) -> Any:
    return json.loads(body, parse_float=Decimal)  # as cryptofeed's HTTPSync reads JSON
