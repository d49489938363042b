"""The `feeds:` section: what a collector subscribes, each feed's connection overrides, and
cryptofeed's own options passed through to the exchange's Feed class.

A feed's `proxy`, `no_proxy`, `retries` and `reconnect` fields override `network:` for that feed
(unset or null: the network's); `reconnect` overrides field by field. `cryptofeed` holds keyword
arguments of the exchange's cryptofeed Feed class, checked against its signature (feeds.py).
Validation needs cryptofeed's exchange table, so it is imported only when a feed is configured.
"""
from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Any, ClassVar, Optional
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

from .config_sections import NO_PROXY_ALLOWED, PROXY_ALLOWED, NetworkSettings, NoProxy, Proxy, ReconnectSettings, \
    Section, StrList

__all__ = ["FeedSettings", "SimulatorSettings"]


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


class SimulatorSettings(Section):
    """A running loopback simulator to collect from instead of the exchange (tests, demos)."""

    section: ClassVar[str] = "feeds[].simulator"

    url: str = Field(description="The simulator's address, 'https://127.0.0.1:PORT' (loopback only).",
                     json_schema_extra={"allowed": "an https:// or wss:// URL on loopback, with a port"})
    ca_file: Path = Field(description="PEM file of the certificate authority that signed the simulator's "
                                      "certificate.", json_schema_extra={"allowed": "a path to a readable PEM file"})
    timeout: float = Field(10.0, gt=0, description="Seconds a symbol-list request to the simulator may take.")

    @field_validator("url")
    @classmethod
    def _loopback_url(cls, value: str) -> str:
        from .simulator.loopback import LOOPBACK_HOSTS

        parts = urlsplit(value)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("https", "wss") or parts.hostname not in LOOPBACK_HOSTS or not port:
            raise ValueError(f"must look like 'https://127.0.0.1:PORT' (https or wss, on loopback: "
                             f"{', '.join(LOOPBACK_HOSTS)}, with a port)")
        return value

    @field_validator("ca_file")
    @classmethod
    def _pem(cls, value: Path) -> Path:
        try:
            ssl.create_default_context(cadata=value.expanduser().read_bytes().decode("ascii", "replace"))
        except OSError as exc:
            raise ValueError(f"cannot be read: {exc.strerror or exc}") from None
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(f"is not a PEM certificate: {exc}") from None
        return value.expanduser()

    def endpoint(self, exchange: str) -> Any:
        """The `SimulatorEndpoint` a FeedSpec takes as its simulator."""
        from .simulator.remote import SimulatorEndpoint

        return SimulatorEndpoint(exchange, self.url, ca_file=self.ca_file, timeout=self.timeout)


class FeedSettings(Section):
    """One feed: an exchange, its symbols and channels, and how it connects."""

    section: ClassVar[str] = "feeds[]"

    exchange: Annotated[str, BeforeValidator(_upper)] = Field(
        description="cryptofeed's exchange id (BINANCE, COINBASE, KRAKEN_FUTURES, ...), any case.",
        json_schema_extra={"allowed": "an exchange cryptofeed knows (cryptofeed.exchanges.EXCHANGE_MAP)"})
    symbols: StrList = Field(min_length=1, description="cryptofeed's normalised symbols (BTC-USDT, ETH-USD-PERP, ...).",
                             json_schema_extra={"allowed": "a list of symbols (or 'A,B'), not empty"})
    channels: StrList = Field(("trades",), min_length=1,
                              description="cryptofeed channels to subscribe; each is stored in the table of the same "
                                          "name (see docs/tables.md), so it must be in `lake.tables`.",
                              json_schema_extra={"allowed": "a list of the exchange's public channels that the lake "
                                                            "stores (or 'a,b'), not empty"})
    book_depth: Optional[int] = Field(None, ge=1, description="Levels a side of the order book the feed maintains "
                                                              "(cryptofeed's `max_depth`); null: the exchange's full "
                                                              "book. The lake stores and serves `lake.book_depth`.")
    proxy: Proxy = Field(None, description="This feed's proxy; null: `network.proxy`.",
                         json_schema_extra={"allowed": PROXY_ALLOWED.split("; null:")[0] + "; null: network.proxy"})
    no_proxy: NoProxy = Field(None, description="This feed's bypass list; null: `network.no_proxy`.",
                              json_schema_extra={"allowed": NO_PROXY_ALLOWED.split("; null:")[0] + "; null: "
                                                                                                  "network.no_proxy"})
    retries: Optional[int] = Field(None, ge=-1, description="This feed's retry budget per outage; null: "
                                                            "`network.retries`.")
    reconnect: Optional[ReconnectSettings] = Field(None, description="Fields that replace `network.reconnect`'s for "
                                                                     "this feed (the others are the network's).")
    simulator: Optional[SimulatorSettings] = Field(None, description="Collect from a running loopback simulator "
                                                                     "speaking this exchange's protocol.")
    cryptofeed: dict[str, Any] = Field(default_factory=dict, repr=False,
                                       description="Keyword arguments for the exchange's cryptofeed Feed class, passed "
                                                   "through: `max_depth`, `candle_interval`, `candle_closed_only`, "
                                                   "`checksum_validation`, `depth_interval` (Binance), ...; `config` "
                                                   "is merged over the top-level `cryptofeed` mapping. What the lake "
                                                   "sets itself (symbols, channels, callbacks, retries, http_proxy, "
                                                   "timeout) is refused.",
                                       json_schema_extra={"allowed": "a mapping of the Feed class's keyword arguments"})

    @field_validator("exchange")
    @classmethod
    def _known_exchange(cls, value: str) -> str:
        from .feeds import exchange_id

        return exchange_id(value)

    @field_validator("symbols")
    @classmethod
    def _storable_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from .partitions import check_value

        for symbol in value:
            check_value("symbol", symbol)  # it becomes a path component: refused now, not as rejected rows later
        return tuple(dict.fromkeys(value))

    @field_validator("channels")
    @classmethod
    def _public_stored_channels(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        from .feeds import public_channels
        from .tables import TABLES

        exchange = info.data.get("exchange")
        if exchange is None:
            return value  # the exchange is wrong: that error is reported
        usable = [c for c in public_channels(exchange) if c in TABLES]
        for channel in value:
            if channel not in usable:
                raise ValueError(f"channel {channel!r} is not one {exchange} offers that the lake stores; "
                                 f"allowed: {', '.join(usable)}")
        return tuple(dict.fromkeys(value))

    @field_validator("simulator")
    @classmethod
    def _reachable_simulator(cls, value: Optional[SimulatorSettings], info: ValidationInfo) -> Any:
        exchange = info.data.get("exchange")
        if value is not None and exchange is not None:
            value.endpoint(exchange)  # checks the URL (loopback, port) and reads the certificate now
        return value

    @field_validator("cryptofeed")
    @classmethod
    def _feed_options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from .feeds import check_feed_options

        exchange = info.data.get("exchange")
        if exchange is None:
            return value
        if "max_depth" in value and info.data.get("book_depth") is not None:
            raise ValueError("max_depth is also set as book_depth: set one of them")
        return check_feed_options(exchange, value)

    def subscribe_kwargs(self, network: NetworkSettings) -> dict[str, Any]:
        """Keyword arguments for `Lake.subscribe` (None: the lake's network settings decide)."""
        options = dict(self.cryptofeed)
        if self.book_depth is not None:
            options["max_depth"] = self.book_depth
        reconnect = None
        if self.reconnect is not None:
            merged = {**network.reconnect.model_dump(), **self.reconnect.model_dump(include=self.reconnect.model_fields_set)}
            reconnect = ReconnectSettings(**merged).policy()
        return dict(exchange=self.exchange, symbols=list(self.symbols), channels=list(self.channels),
                    simulator=self.simulator.endpoint(self.exchange) if self.simulator is not None else None,
                    proxy=self.proxy, no_proxy=self.no_proxy, retries=self.retries, reconnect=reconnect,
                    options=options)
