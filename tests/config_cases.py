"""Every setting's dotted path, and for each an invalid value with the words its error must contain."""
from __future__ import annotations

import typing

from pydantic import BaseModel

__all__ = ["BAD", "FEED", "leaf_paths", "nested"]

FEED = {"exchange": "BINANCE", "symbols": ["BTC-USDT"]}
"""The valid feed that feeds[0] cases start from."""


def _model(tp: typing.Any) -> type[BaseModel] | None:
    for candidate in (tp, *typing.get_args(tp)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def leaf_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """'lake.max_rows', 'feeds[0].reconnect.jitter', ...: every field that is not itself a section."""
    out = []
    for name, field in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        if typing.get_origin(field.annotation) in (tuple, list) and _model(typing.get_args(field.annotation)[0]):
            out += leaf_paths(typing.get_args(field.annotation)[0], f"{path}[0]")
        elif _model(field.annotation) is not None:
            out += leaf_paths(_model(field.annotation), path)
        else:
            out.append(path)
    return out


def nested(path: str, value: typing.Any, ca_file: str) -> dict[str, typing.Any]:
    """{'lake': {'max_rows': value}} for 'lake.max_rows'; a feeds[0] path sets it on FEED (with a valid
    simulator around a simulator field)."""
    parts = path.split(".")
    if parts[0] == "feeds[0]":
        feed: dict[str, typing.Any] = dict(FEED)
        if parts[1] == "simulator":
            feed["simulator"] = {"url": "https://127.0.0.1:8443", "ca_file": ca_file, parts[2]: value}
        elif len(parts) == 3:
            feed[parts[1]] = {parts[2]: value}
        else:
            feed[parts[1]] = value
        return {"feeds": [feed]}
    out: dict[str, typing.Any] = {}
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


_RECONNECT = {
    "initial_delay": (-1, "a number >= 0"),
    "factor": (11, "a number from 1 to 10"),
    "max_delay": ("soon", "a number >= 0"),
    "jitter": (1.5, "a number from 0 to 1"),
    "watchdog_s": (0, "a number > 0 or null"),
}

BAD: dict[str, tuple[typing.Any, str]] = {
    "lake.root": ("  ", "must be a directory path, not empty"),
    "lake.tables": (["trades", "tardes"], "unknown table(s) 'tardes'; allowed: trades, ticker"),
    "lake.max_rows": (0, "must be an integer >= 1"),
    "lake.max_bytes": ("lots", "must be a size in bytes >= 1"),
    "lake.memory_cap_bytes": (-5, "must be a size in bytes >= 1"),
    "lake.flush_interval": (0, "must be a number > 0"),
    "lake.compression_level": (23, "must be an integer from 1 to 22"),
    "lake.row_group_size": (10, "must be an integer >= 1000"),
    "lake.autoflush": ("maybe", "must be true or false"),
    "lake.durability": ("fast", "must be one of 'none', 'batch', 'strict'"),
    "lake.duckdb_threads": (0, "must be an integer >= 1 or null"),
    "lake.dedup_window_s": (-1, "must be a number >= 0"),
    "lake.silence_s": ("soon", "must be a number > 0"),
    "lake.autocompact": (2, "must be true or false"),
    "lake.compact_min_files": (1, "must be an integer >= 2"),
    "lake.book_depth": (True, "must be an integer >= 1"),  # not 1: true/false is no number
    "lake.book_snapshot_interval": (float("nan"), "must be a number > 0"),
    "network.proxy": ("ftp://127.0.0.1:21", "has scheme 'ftp'; allowed: http, socks5, socks5h"),
    "network.no_proxy": (5, "a list of hosts that bypass the proxy"),
    "network.connect_timeout_s": (0, "must be a number > 0"),
    "network.rest_timeout_s": (-3, "must be a number > 0"),
    "network.retries": (-2, "must be an integer >= -1"),
    **{f"network.reconnect.{k}": v for k, v in _RECONNECT.items()},
    "feeds[0].exchange": ("NOPE", "unknown exchange 'NOPE'; allowed: ASCENDEX"),
    "feeds[0].symbols": ([], "a list of symbols (or 'A,B'), not empty"),
    "feeds[0].channels": (["trades", "balances"], "channel 'balances' is not one BINANCE offers that the lake stores"),
    "feeds[0].book_depth": (0, "must be an integer >= 1 or null"),
    "feeds[0].proxy": ("127.0.0.1:3128", "has no scheme; write e.g. 'http://127.0.0.1:3128'"),
    "feeds[0].no_proxy": (3.5, "a list of hosts that bypass the proxy"),
    "feeds[0].retries": (-7, "must be an integer >= -1 or null"),
    **{f"feeds[0].reconnect.{k}": v for k, v in _RECONNECT.items()},
    "feeds[0].simulator.url": ("https://10.0.0.1:8443", "must look like 'https://127.0.0.1:PORT'"),
    "feeds[0].simulator.ca_file": ("/nonexistent/ca.pem", "cannot be read"),
    "feeds[0].simulator.timeout": (0, "must be a number > 0"),
    "feeds[0].cryptofeed": ({"http_proxy": "http://127.0.0.1:1"}, "'http_proxy' is set by the lake; use proxy"),
    "monitoring.enabled": ("sometimes", "must be true or false"),
    "monitoring.interval_s": (0, "must be a number > 0"),
    "monitoring.show": ("yes please", "must be true or false"),
    "monitoring.window_s": (-1, "must be a number > 0"),
    "monitoring.rate_window_s": (0, "must be a number > 0"),
    "monitoring.prometheus.enabled": ([], "must be true or false"),
    "monitoring.prometheus.host": ("not a host!", "must be an IP address or a host name"),
    "monitoring.prometheus.port": (70000, "must be an integer from 0 to 65535"),
    "monitoring.alerts.buffer_fraction": (0, "must be a number > 0 and <= 1"),
    "monitoring.alerts.disk_free_bytes": ("-1GB", "must be a size in bytes >= 0"),
    "monitoring.alerts.silent_s": (0, "must be a number > 0"),
    "monitoring.alerts.webhook_url": ("ftp://127.0.0.1/x", "must be an http:// or https:// URL, or null"),
    "cryptofeed": ({"uvloop": True}, "cryptofeed.uvloop cannot be set"),
}
