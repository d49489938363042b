"""Feeds whose symbols do not come from cryptofeed's process-wide cache: simulated feeds and replay.

A simulated feed is the exchange's own cryptofeed class pointed at a loopback venue
(`ExchangeSimulator`, `CaptureServer`): its endpoints and TLS trust come from the simulator, its
symbol list is answered in-process (no request), and every connection is checked to go there.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from cryptofeed.config import Config
from cryptofeed.connection import HTTPSync
from cryptofeed.exchange import Exchange
from cryptofeed.exchanges import EXCHANGE_MAP
from cryptofeed.feed import Feed

from .errors import ConfigError, CryptolakeError
from .managed_feed import ManagedFeed

__all__ = ["PrivateSymbolsExchange", "load_symbol_data", "simulated_class", "simulator_prefixes"]


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


def simulator_prefixes(simulator: Any) -> tuple[str, ...]:
    """The address prefixes a feed on `simulator` may reach (its https and wss bases)."""
    return (simulator.rest_url, simulator.ws_url)


class _SimulatedFeed:
    """Before the cryptofeed exchange class in the MRO: endpoints and TLS trust from a simulator
    (per instance); the symbol list never by request."""

    def __init__(self, simulator: Any, **kwargs: Any) -> None:
        ctx = simulator.ssl_context
        cls = type(self)
        # proxy=None until connect() sets the feed's own: websockets >= 15 would read *_proxy variables
        self.websocket_endpoints = [
            dataclasses.replace(ep, address=simulator.local_url(ep.address), sandbox=None,
                                options={**(ep.options or {}), "ssl": ctx, "proxy": None})
            for ep in cls.websocket_endpoints]
        self.rest_endpoints = [dataclasses.replace(ep, address=simulator.local_url(ep.address), sandbox=None)
                               for ep in cls.rest_endpoints]
        super().__init__(**kwargs)

    @classmethod
    def symbol_mapping(cls, refresh: bool = False, headers: dict | None = None) -> dict:
        raise ConfigError("a simulated feed's symbols come from its simulator, not from a request")


def simulated_class(simulator: Any) -> type[Feed]:
    """A private subclass of the exchange's cryptofeed class whose symbol data come from `simulator`."""
    base = EXCHANGE_MAP[simulator.exchange]
    cls = type(f"Simulated{base.__name__}", (ManagedFeed, _SimulatedFeed, base, PrivateSymbolsExchange),
               {"http_sync": _SimulatorSyncHTTP(simulator.symbol_reader())})
    try:
        cls.own_symbols, _ = load_symbol_data(cls)
    except CryptolakeError as exc:
        raise ConfigError(f"{simulator.exchange}: the simulator's symbol data cannot be loaded: {exc}") from exc
    except Exception as exc:
        raise ConfigError(f"{simulator.exchange}: cryptofeed cannot parse the simulator's symbol data: "
                          f"{type(exc).__name__}: {exc}") from exc
    return cls
