"""The parts every settings section shares, and the `network:` and `monitoring:` sections.

`Section` is a frozen pydantic model that refuses unknown keys and true/false where a number is
meant; built directly (`NetworkSettings(retries=-5)`) it raises ConfigError naming the field, and
inside `Settings` it reports its errors with their full path. The field types below (`StrList`,
`Bytes`, `Proxy`) read the forms people write in YAML and environment variables.
"""
from __future__ import annotations

import ipaddress
import json
import math
import re
from contextvars import ContextVar
from typing import Annotated, Any, ClassVar, Optional
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, PlainValidator, ValidationError, \
    ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import NoDecode

from .alerts import AlertRules
from .config_errors import config_error, describe
from .health import RATE_WINDOW_S, WINDOW_S
from .proxy import ProxyURL, normalise_setting, redact, split_no_proxy

__all__ = ["AlertSettings", "Bytes", "MonitoringSettings", "NetworkSettings", "PrometheusSettings", "Proxy",
           "ReconnectSettings", "Section", "StrList", "inside_settings"]

inside_settings: ContextVar[bool] = ContextVar("cryptolake_inside_settings", default=False)
"""True while `Settings` validates: sections then leave their errors to it (it knows the full path)."""


def _is_number_type(annotation: Any) -> bool:
    text = describe(annotation)
    return "integer" in text or "number" in text


class Section(BaseModel):
    """A frozen settings section; unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    section: ClassVar[str] = ""  # its path in Settings, for errors when built on its own

    def __init__(self, **data: Any) -> None:
        if inside_settings.get():
            super().__init__(**data)
            return
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise config_error(type(self), exc, prefix=self.section) from None

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_not_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name and _is_number_type(cls.model_fields[info.field_name].annotation):
            raise PydanticCustomError("bool_not_number", "a number, not true/false")  # pydantic would take it as 1/0
        return value


# -- field types --------------------------------------------------------------------------------
def _list_of_strings(value: Any) -> Any:
    """'a,b' or '["a","b"]' (environment variables) -> a list; anything else is left to pydantic."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError:
                raise PydanticCustomError("list_json", "not a valid JSON list") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


StrList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_list_of_strings)]
"""A list of strings: a YAML/JSON list, or 'a,b,c'."""

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "k": 2**10, "kib": 2**10, "m": 2**20, "mib": 2**20, "g": 2**30, "gib": 2**30, "t": 2**40, "tib": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")


def _byte_size(value: Any) -> Any:
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _UNITS:
            raise PydanticCustomError("byte_size", "a size like 1048576, '512MiB' or '2GB'")
        size = float(match.group(1)) * _UNITS[unit]
        if not math.isfinite(size) or size != int(size):
            raise PydanticCustomError("byte_size", "a whole number of bytes")
        return int(size)
    return value


Bytes = Annotated[int, BeforeValidator(_byte_size)]
"""A size in bytes: an integer, or a number with a unit (KB/MB/GB/TB: powers of 1000; KiB/MiB/GiB/TiB
and K/M/G/T: powers of 1024)."""


def bytes_allowed(bound: str) -> str:
    return f"a size in bytes {bound}: an integer or a size like '512MiB', '2GB' (KiB/MiB/GiB/TiB: 1024s, KB/MB/GB/TB: 1000s)"


def _proxy(value: Any) -> ProxyURL | bool | None:
    return normalise_setting(value)  # ConfigError (a ValueError) names the problem, credentials masked


def _show_proxy(value: Any) -> Any:
    return value.redacted if isinstance(value, ProxyURL) else value


Proxy = Annotated[Any, PlainValidator(_proxy), PlainSerializer(_show_proxy)]
"""A proxy setting as proxy.py takes it: a URL, false/'direct', or null (the environment)."""

PROXY_ALLOWED = ("a proxy URL 'http://host:port' (HTTP CONNECT), 'socks5://host:port' or 'socks5h://host:port', "
                 "optionally with 'user:password@'; false or 'direct' for no proxy; null: the environment "
                 "(HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY)")
NO_PROXY_ALLOWED = ("a list of hosts that bypass the proxy ('host', '.domain', '*', an IP or CIDR, optionally ':port'), "
                    "as a list or 'a,b'; null: NO_PROXY from the environment")


def _no_proxy(value: Any) -> Any:
    value = _list_of_strings(value)
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise PydanticCustomError("no_proxy", "a list of host names")
    return split_no_proxy(value)


NoProxy = Annotated[Optional[tuple[str, ...]], NoDecode, BeforeValidator(_no_proxy)]


# -- network: ------------------------------------------------------------------------------------
class ReconnectSettings(Section):
    """Backoff between reconnection attempts, and the watchdog (reconnect.py's ReconnectPolicy)."""

    section: ClassVar[str] = "network.reconnect"

    initial_delay: float = Field(1.0, ge=0, description="Seconds before the first reconnection attempt of an outage.")
    factor: float = Field(2.0, ge=1, le=10, description="Each further attempt waits this many times longer.")
    max_delay: float = Field(60.0, ge=0, description="The longest wait between two attempts, in seconds (at least "
                                                     "`initial_delay`, after a feed's overrides).")
    jitter: float = Field(0.5, ge=0, le=1, description="Share of each wait drawn at random, so feeds behind one proxy "
                                                       "do not reconnect in lock step.")
    watchdog_s: Optional[float] = Field(120.0, gt=0, description="A websocket open but silent this long is re-made (a "
                                                                 "half-open socket); null turns the watchdog off.")

    def policy(self) -> Any:
        """The `ReconnectPolicy` these settings describe."""
        from .reconnect import ReconnectPolicy

        return ReconnectPolicy(**self.model_dump())


class NetworkSettings(Section):
    """How feeds connect: proxy, timeouts, retries and reconnection (the defaults of every feed)."""

    section: ClassVar[str] = "network"

    proxy: Proxy = Field(None, description="The proxy of every feed's websockets and REST requests, unless the feed "
                                           "sets its own.", json_schema_extra={"allowed": PROXY_ALLOWED})
    no_proxy: NoProxy = Field(None, description="Hosts reached directly, bypassing the proxy.",
                              json_schema_extra={"allowed": NO_PROXY_ALLOWED})
    connect_timeout_s: float = Field(10.0, gt=0, description="Seconds a websocket may take to open (TCP, proxy tunnel, "
                                                             "TLS and the HTTP upgrade).")
    rest_timeout_s: float = Field(30.0, gt=0, description="Seconds a REST request may take (the symbol list when a "
                                                          "feed is built, book snapshots, polled channels).")
    retries: int = Field(10, ge=-1, description="Reconnection attempts per outage before a feed is declared failed "
                                                "(a `feed_failed` gap); -1 retries forever.")
    reconnect: ReconnectSettings = Field(default_factory=ReconnectSettings, description="Backoff and watchdog.")


# -- monitoring: ---------------------------------------------------------------------------------
_HOST = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


def _host(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return str(ipaddress.ip_address(value.strip("[]")))
        except ValueError:
            if not _HOST.fullmatch(value):
                raise PydanticCustomError("host", "an IP address or a host name") from None
    return value


class PrometheusSettings(Section):
    """The Prometheus text endpoint (for headless collectors), served when the lake opens."""

    section: ClassVar[str] = "monitoring.prometheus"

    enabled: bool = Field(False, description="Serve metrics at http://host:port/metrics while the lake is open.")
    host: Annotated[str, BeforeValidator(_host)] = Field(
        "127.0.0.1", description="Address to listen on: loopback by default; 0.0.0.0 exposes the metrics to the network.",
        json_schema_extra={"allowed": "an IP address or a host name"})
    port: int = Field(9464, ge=0, le=65535, description="TCP port; 0 picks a free one (`lake.serve_metrics()` "
                                                        "returns it).")


def _webhook(value: Any) -> Any:
    if value is None:
        return None
    parts = urlsplit(value.strip()) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise PydanticCustomError("url", "an http:// or https:// URL")
    return value.strip()


_RULES = AlertRules()


class AlertSettings(Section):
    """When an alert fires (once per episode, in the notebook, the log and the hooks)."""

    section: ClassVar[str] = "monitoring.alerts"

    buffer_fraction: float = Field(_RULES.buffer_fraction, gt=0, le=1,
                                   description="Alert when the live buffers hold this share of the memory cap "
                                               "(`lake.memory_cap_bytes`).")
    disk_free_bytes: Bytes = Field(_RULES.disk_free_bytes, ge=0,
                                   description="Alert when the lake's filesystem has less free space than this.",
                                   json_schema_extra={"allowed": bytes_allowed(">= 0")})
    silent_s: float = Field(_RULES.silent_s, gt=0,
                            description="Alert when a running feed has delivered nothing for this long.")
    webhook_url: Annotated[Optional[str], BeforeValidator(_webhook)] = Field(
        None, description="Each alert is POSTed here as JSON (credentials in the URL are masked in logs); null: none.",
        json_schema_extra={"allowed": "an http:// or https:// URL, or null"})

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, redact(value) if name == "webhook_url" and value is not None else value

    def rules(self) -> AlertRules:
        """The thresholds as alerts.py takes them."""
        return AlertRules(buffer_fraction=self.buffer_fraction, disk_free_bytes=self.disk_free_bytes,
                          silent_s=self.silent_s)


class MonitoringSettings(Section):
    """Health counters, alerts and metrics (`Lake(..., monitoring=)` overrides the whole section)."""

    section: ClassVar[str] = "monitoring"

    enabled: bool = Field(True, description="Count messages, lag and silence at seal time and evaluate alerts on "
                                            "a monitor thread; false: health reports only buffers, files and disk.")
    interval_s: float = Field(1.0, gt=0, description="Seconds between two alert evaluations.")
    show: bool = Field(True, description="Show firing alerts in the notebook (once per episode).")
    window_s: float = Field(WINDOW_S, gt=0, description="Lag percentiles cover the batches of this many seconds.")
    rate_window_s: float = Field(RATE_WINDOW_S, gt=0, description="Messages per second are averaged over this many "
                                                                  "seconds.")
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings, description="The metrics endpoint.")
    alerts: AlertSettings = Field(default_factory=AlertSettings, description="Alert thresholds and the webhook.")
