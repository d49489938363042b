"""Prometheus text exposition (format 0.0.4) of the health report, served on loopback by default.

`render(report, alerts)` turns a `HealthProbe.report()` dict into metric families; `MetricsServer`
serves `GET /metrics` from a daemon thread (one report per scrape, nothing computed in between).
Names follow Prometheus conventions: a `cryptolake_` prefix, base units (`_seconds`, `_bytes`),
`_total` on counters; labels `feed`, `channel`, `table`, `cause`, `state`, `alert`.
"""
from __future__ import annotations

import ipaddress
import logging
import math
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Mapping

from .errors import ConfigError

__all__ = ["CONTENT_TYPE", "MetricsServer", "render"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FEED_STATES = ("starting", "connecting", "connected", "reconnecting", "failed", "stopped")


class _Family:
    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name, self.kind, self.help = name, kind, help_text
        self.samples: list[tuple[str, Mapping[str, str], float]] = []

    def add(self, value: Any, labels: Mapping[str, Any] | None = None, suffix: str = "") -> None:
        if value is None:
            return
        self.samples.append((self.name + suffix, {k: str(v) for k, v in (labels or {}).items()}, float(value)))

    def text(self) -> str:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        for name, labels, value in self.samples:
            lines.append(f"{name}{_labels(labels)} {_value(value)}")
        return "\n".join(lines)


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


class _Registry:
    def __init__(self) -> None:
        self.families: dict[str, _Family] = {}

    def __call__(self, name: str, kind: str, help_text: str) -> _Family:
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = _Family(name, kind, help_text)
        return family

    def text(self) -> str:
        return "\n".join(f.text() for f in self.families.values() if f.samples) + "\n"


def render(report: Mapping[str, Any], alerts: Mapping[str, Any] | None = None) -> str:
    """The exposition text of one health report (and the alerts' `summary()`)."""
    m = _Registry()
    up = m("cryptolake_up", "gauge", "1 while the lake serves metrics.")
    up.add(1)
    collector = report.get("collector") or {}
    cstate = m("cryptolake_collector_state", "gauge", "1 for the collector's current state.")
    for state in ("stopped", "starting", "running", "failed"):
        cstate.add(1 if collector.get("state") == state else 0, {"state": state})
    _feeds(m, report.get("feeds") or [])
    _tables(m, report.get("tables") or {})
    _memory(m, report.get("memory") or {})
    _flush(m, report.get("flush") or {})
    gaps = report.get("gaps") or {}
    total = m("cryptolake_gaps_total", "counter", "Holes recorded in the gaps table, by cause.")
    for cause, n in (gaps.get("by_cause") or {}).items():
        total.add(n, {"cause": cause})
    m("cryptolake_gaps_open", "gauge", "Feeds in a hole now (reconnecting, failed or silent).").add(gaps.get("open"))
    disk = report.get("disk") or {}
    m("cryptolake_disk_free_bytes", "gauge", "Free bytes of the lake root's filesystem.").add(disk.get("free_bytes"))
    m("cryptolake_disk_total_bytes", "gauge", "Size of the lake root's filesystem.").add(disk.get("total_bytes"))
    if alerts is not None:
        firing = m("cryptolake_alerts_firing", "gauge", "Alert episodes open now, by kind.")
        fired = m("cryptolake_alerts_total", "counter", "Alert episodes started, by kind.")
        from .alerts import ALERT_KINDS

        open_kinds = [a["kind"] for a in alerts.get("firing", [])]
        for kind in ALERT_KINDS:
            firing.add(open_kinds.count(kind), {"alert": kind})
            fired.add((alerts.get("fired") or {}).get(kind, 0), {"alert": kind})
    return m.text()


def _feeds(m: _Registry, feeds: Iterable[Mapping[str, Any]]) -> None:
    state = m("cryptolake_feed_state", "gauge", "1 for the feed's current state (its most troubled connection's).")
    counters = [
        ("frames", "cryptolake_feed_frames_total", "Websocket frames received."),
        ("connections", "cryptolake_feed_connections_total", "Websocket connections made."),
        ("reconnects", "cryptolake_feed_reconnects_total", "Reconnections after the first connection."),
        ("failures", "cryptolake_feed_failures_total", "Connections lost and connection attempts failed."),
        ("watchdog_trips", "cryptolake_feed_watchdog_trips_total", "Silent open sockets the watchdog closed."),
        ("malformed", "cryptolake_feed_malformed_frames_total", "Frames the exchange's parser could not read."),
    ]
    families = [(key, m(name, "counter", text)) for key, name, text in counters]
    idle = m("cryptolake_feed_idle_seconds", "gauge", "Seconds since the feed last delivered a frame or a message.")
    messages = m("cryptolake_messages_total", "counter", "Messages stored (one per cryptofeed callback), by feed and channel.")
    rate = m("cryptolake_messages_per_second", "gauge", "Messages stored per second over the recent window.")
    lag = m("cryptolake_lag_seconds", "gauge", "Receipt time minus exchange time over the recent window, by quantile.")
    age = m("cryptolake_last_message_age_seconds", "gauge", "Seconds since the last sealed batch with a message.")
    for f in feeds:
        feed = {"feed": f["feed"]}
        for s in FEED_STATES:
            state.add(1 if f.get("state") == s else 0, {**feed, "state": s})
        for key, family in families:
            family.add(f.get(key), feed)
        idle.add(f.get("idle_s"), feed)
        for channel, c in (f.get("channels") or {}).items():
            labels = {**feed, "channel": channel}
            messages.add(c.get("messages"), labels)
            rate.add(c.get("messages_per_s"), labels)
            for q, key in (("0.5", "lag_p50_s"), ("0.99", "lag_p99_s"), ("1", "lag_max_s")):
                lag.add(c.get(key), {**labels, "quantile": q})
            age.add(c.get("last_message_age_s"), labels)


def _tables(m: _Registry, tables: Mapping[str, Mapping[str, Any]]) -> None:
    rows = m("cryptolake_rows_buffered", "gauge", "Rows in the live buffer, by table.")
    nbytes = m("cryptolake_buffer_bytes", "gauge", "Bytes held by the live buffer (estimated for unsealed rows), by table.")
    files = m("cryptolake_files", "gauge", "Committed Parquet files, by table.")
    fbytes = m("cryptolake_file_bytes", "gauge", "Bytes of committed Parquet files, by table.")
    frows = m("cryptolake_rows_committed", "gauge", "Rows in committed Parquet files, by table.")
    for name, t in tables.items():
        label = {"table": name}
        rows.add(t.get("rows_buffered"), label)
        nbytes.add(t.get("bytes_buffered"), label)
        files.add(t.get("files"), label)
        fbytes.add(t.get("bytes"), label)
        frows.add(t.get("rows"), label)


def _memory(m: _Registry, mem: Mapping[str, Any]) -> None:
    m("cryptolake_memory_used_bytes", "gauge", "Bytes the memory guard counts (buffers and dedup keys).").add(mem.get("used_bytes"))
    m("cryptolake_memory_limit_bytes", "gauge", "Bytes at which the memory guard flushes everything.").add(mem.get("limit_bytes"))
    m("cryptolake_memory_cap_bytes", "gauge", "The configured memory cap.").add(mem.get("cap_bytes"))
    m("cryptolake_spilled_rows", "gauge", "Rows spilled to the journal while storage fails.").add(mem.get("spilled_rows"))
    m("cryptolake_dropped_rows_total", "counter", "Rows dropped at the memory cap (each a gap).").add(mem.get("dropped_rows"))


def _flush(m: _Registry, flush: Mapping[str, Any]) -> None:
    m("cryptolake_flushes_total", "counter", "Groups of rows committed to Parquet.").add(flush.get("flushes"))
    m("cryptolake_rows_flushed_total", "counter", "Rows committed to Parquet.").add(flush.get("rows"))
    m("cryptolake_flush_failures_total", "counter", "Background flush rounds that failed.").add(flush.get("failures"))
    m("cryptolake_flush_failing", "gauge", "1 while the background flusher's last round failed.").add(
        1 if flush.get("last_error") else 0)
    m("cryptolake_flush_last_seconds", "gauge", "Duration of the last flush.").add(flush.get("last_s"))
    q = m("cryptolake_flush_seconds", "gauge", "Flush durations over the recent flushes, by quantile.")
    for quantile, key in (("0.5", "p50_s"), ("0.99", "p99_s"), ("1", "max_s")):
        q.add(flush.get(key), {"quantile": quantile})


class MetricsServer:
    """`GET /metrics` on `host:port` (port 0: any free port) from a daemon thread."""

    def __init__(self, collect: Callable[[], str], *, host: str = "127.0.0.1", port: int = 0) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ConfigError(f"port must be an integer in 0..65535, got {port!r}")
        if not isinstance(host, str) or not host:
            raise ConfigError(f"host must be a non-empty string, got {host!r}")
        self._collect = collect
        self.host, self.port = host, port
        self.scrapes = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) bound, while serving."""
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str | None:
        if self.address is None:
            return None
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    def start(self) -> tuple[str, int]:
        if self._server is not None:
            return self.address  # type: ignore[return-value]
        if not _is_loopback(self.host):
            log.warning("serving metrics on %s, which is not a loopback address: anyone who can reach it can read them",
                        self.host)
        handler = type("_Handler", (_Handler,), {"owner": self})
        server_class = _Server6 if ":" in self.host else ThreadingHTTPServer
        try:
            self._server = server_class((self.host, self.port), handler)
        except OSError as exc:
            raise ConfigError(f"could not serve metrics on {self.host}:{self.port}: {exc}") from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="cryptolake-metrics", daemon=True)
        self._thread.start()
        log.info("metrics at %s", self.url)
        return self.address  # type: ignore[return-value]

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(5.0)
        self._server = self._thread = None

    def _body(self) -> bytes:
        self.scrapes += 1
        return self._collect().encode("utf-8")


class _Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    owner: MetricsServer
    server_version = "cryptolake_nb"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.split("?", 1)[0] not in ("/metrics", "/metrics/"):
            self._send(404, b"not found: try /metrics\n", "text/plain; charset=utf-8")
            return
        try:
            body = self.owner._body()
        except Exception:
            log.exception("could not collect metrics")
            self._send(500, b"could not collect metrics (see the lake's log)\n", "text/plain; charset=utf-8")
            return
        self._send(200, body, CONTENT_TYPE)

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        log.debug("metrics %s: " + format, self.client_address[0], *args)  # never stderr


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
