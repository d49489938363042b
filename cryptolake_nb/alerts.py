"""Alerts: conditions read off the health report, each raised once per episode.

Conditions (`AlertRules` holds the thresholds):

| kind | subject | fires when |
|---|---|---|
| `buffer_near_cap` | "" | the memory guard counts >= `buffer_fraction` of the bytes at which it acts |
| `flush_failing` | "" | the background flusher's last round failed (rows stay in memory, it retries) |
| `disk_nearly_full` | "" | free bytes of the lake's filesystem < `disk_free_bytes` |
| `feed_silent` | feed | no frame and no stored message for `silent_s` s (by the lake's clock) on a running feed |
| `feed_failed` | feed or "collector" | a feed used up its retries, or the collector thread failed |

An episode starts when a condition becomes true and ends when it is false again: one `firing`
alert at the start, one `resolved` at the end, whatever happens in between. Each firing alert is
shown once in the notebook (an HTML box in a Jupyter kernel, else `warnings.warn` with
`AlertWarning`), logged at WARNING (ERROR for critical ones) on "cryptolake_nb.alerts", and handed
to every hook: a callable taking an `Alert`, or a webhook URL that receives the alert as JSON
(POSTed from a thread of its own, so a slow endpoint never delays evaluation). Resolutions are
logged at INFO and handed to hooks too; they are not shown.

`Monitor` evaluates on a small daemon thread every `interval_s`; the conditions themselves use the
lake's injected clock, so tests drive them with a manual clock and `Lake.check_alerts()`.
"""
from __future__ import annotations

import collections
import html
import json
import logging
import queue
import threading
import urllib.error
import urllib.request
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal, Mapping

from .errors import ConfigError
from .progress import in_notebook
from .proxy import redact

__all__ = ["ALERT_KINDS", "Alert", "AlertRules", "AlertWarning", "Alerts", "Monitor", "WebhookHook", "findings"]

log = logging.getLogger(__name__)

ALERT_KINDS = ("buffer_near_cap", "flush_failing", "disk_nearly_full", "feed_silent", "feed_failed")
_SEVERITY = {"buffer_near_cap": "warning", "flush_failing": "critical", "disk_nearly_full": "warning",
             "feed_silent": "warning", "feed_failed": "critical"}
HISTORY = 100  # alerts kept in `Alerts.history`


class AlertWarning(UserWarning):
    """A lake alert (buffer near its cap, flush failing, disk nearly full, feed silent or failed)."""


@dataclass(frozen=True)
class AlertRules:
    """Alert thresholds. They will come from the `monitoring` section of the configuration."""

    buffer_fraction: float = 0.8           # of MemoryGuard.limit (the bytes at which it flushes everything)
    disk_free_bytes: int = 1024 * 2**20    # alert below 1 GiB free on the lake's filesystem
    silent_s: float = 60.0                 # a running feed with no message for this long

    def __post_init__(self) -> None:
        if not isinstance(self.buffer_fraction, (int, float)) or not 0 < self.buffer_fraction <= 1:
            raise ConfigError(f"buffer_fraction must be in (0, 1], got {self.buffer_fraction!r}")
        if not isinstance(self.disk_free_bytes, int) or isinstance(self.disk_free_bytes, bool) or self.disk_free_bytes < 0:
            raise ConfigError(f"disk_free_bytes must be a non-negative integer, got {self.disk_free_bytes!r}")
        if not isinstance(self.silent_s, (int, float)) or isinstance(self.silent_s, bool) or self.silent_s <= 0:
            raise ConfigError(f"silent_s must be a positive number of seconds, got {self.silent_s!r}")


@dataclass(frozen=True)
class Alert:
    """One transition of a condition: `state` "firing" at the start of an episode, "resolved" at its end."""

    kind: str
    subject: str
    state: Literal["firing", "resolved"]
    severity: Literal["warning", "critical"]
    message: str
    at_ns: int                      # the lake's clock
    episode: int                    # 1 for the first episode of (kind, subject), then 2, ...
    value: float | None = None
    threshold: float | None = None
    root: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def _repr_html_(self) -> str:
        color = "#b00020" if self.severity == "critical" else "#8a6d00"
        return (f'<div class="cryptolake-alert" style="border-left:4px solid {color};padding:4px 8px;'
                f'background:#fff8e1"><b>cryptolake alert</b> ({html.escape(self.kind)}): '
                f"{html.escape(self.message)}</div>")

    def __str__(self) -> str:
        return f"cryptolake alert ({self.kind}): {self.message}"


@dataclass(frozen=True)
class _Finding:
    message: str
    value: float | None = None
    threshold: float | None = None


def findings(report: Mapping[str, Any], rules: AlertRules) -> dict[tuple[str, str], _Finding]:
    """The conditions true in a health report (`HealthProbe.report`), keyed by (kind, subject)."""
    out: dict[tuple[str, str], _Finding] = {}
    mem = report.get("memory") or {}
    limit = mem.get("limit_bytes")
    if limit and mem.get("used_bytes", 0) >= rules.buffer_fraction * limit:
        used = mem["used_bytes"]
        out[("buffer_near_cap", "")] = _Finding(
            f"live buffers hold {used / 2**20:.1f} MiB, {used / limit:.0%} of the {limit / 2**20:.1f} MiB at which "
            f"the memory guard flushes everything (cap {mem.get('cap_bytes', 0) / 2**20:.0f} MiB); "
            f"spilled rows {mem.get('spilled_rows', 0)}, dropped rows {mem.get('dropped_rows', 0)}",
            used / limit, rules.buffer_fraction)
    flush = report.get("flush") or {}
    if flush.get("last_error"):
        out[("flush_failing", "")] = _Finding(
            f"flushing to Parquet fails, rows stay in memory and it retries: {flush['last_error']}",
            flush.get("failures"), None)
    disk = report.get("disk") or {}
    free = disk.get("free_bytes")
    if free is not None and free < rules.disk_free_bytes:
        out[("disk_nearly_full", "")] = _Finding(
            f"{free / 2**20:.1f} MiB free on the filesystem of {disk.get('path')} "
            f"(alert below {rules.disk_free_bytes / 2**20:.0f} MiB)", free, rules.disk_free_bytes)
    failed = False
    for feed in report.get("feeds") or []:
        name, state = feed["feed"], feed["state"]
        if state == "failed":
            failed = True
            out[("feed_failed", name)] = _Finding(f"feed {name} gave up reconnecting: {feed.get('last_error')}")
        elif state != "stopped" and feed.get("idle_s") is not None and feed["idle_s"] >= rules.silent_s:
            out[("feed_silent", name)] = _Finding(
                f"feed {name} ({state}): no message for {feed['idle_s']:.0f} s (alert after {rules.silent_s:g} s)",
                feed["idle_s"], rules.silent_s)
    collector = report.get("collector") or {}
    if collector.get("state") == "failed" and not failed:
        errors = collector.get("errors") or ["no error recorded"]
        out[("feed_failed", "collector")] = _Finding(f"the collector failed: {errors[-1]}")
    return out


Hook = Callable[[Alert], Any]


class Alerts:
    """Episode bookkeeping and delivery (see the module docstring).

    `show`: True shows firing alerts in the notebook (HTML in a Jupyter kernel, else AlertWarning);
    False only logs them and calls the hooks.
    """

    def __init__(self, rules: AlertRules | None = None, *, show: bool = True, root: str = "",
                 hooks: tuple[Hook | str, ...] = ()) -> None:
        self.rules = rules or AlertRules()
        self.show = show
        self.root = root
        self._active: dict[tuple[str, str], Alert] = {}
        self._episodes: collections.Counter[tuple[str, str]] = collections.Counter()
        self.fired: collections.Counter[str] = collections.Counter()  # firing alerts per kind, all time
        self.history: collections.deque[Alert] = collections.deque(maxlen=HISTORY)
        self._hooks: list[Hook] = []
        self._lock = threading.Lock()
        self._order = threading.RLock()  # one evaluation (and its deliveries) at a time: hooks see transitions in order
        for hook in hooks:
            self.add_hook(hook)

    # -- hooks -----------------------------------------------------------------------------------
    def add_hook(self, hook: Hook | str, *, timeout: float = 5.0) -> Hook:
        """Call `hook(alert)` on every firing and resolved alert; a str is a webhook URL (JSON POST).
        Returns what was added (the `WebhookHook` for a URL), for `remove_hook`."""
        if isinstance(hook, str):
            hook = WebhookHook(hook, timeout=timeout)
        elif not callable(hook):
            raise ConfigError(f"an alert hook must be a callable or a webhook URL, got {hook!r}")
        with self._lock:
            self._hooks.append(hook)
        return hook

    def remove_hook(self, hook: Hook) -> None:
        with self._lock:
            self._hooks.remove(hook)
        if isinstance(hook, WebhookHook):
            hook.close()

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, report: Mapping[str, Any]) -> list[Alert]:
        """Compare the conditions true in `report` with the open episodes; deliver and return the transitions."""
        with self._order:
            return self._evaluate(report)

    def _evaluate(self, report: Mapping[str, Any]) -> list[Alert]:
        found = findings(report, self.rules)
        at = int(report.get("at_ns") or 0)
        out: list[Alert] = []
        with self._lock:
            for key, f in found.items():
                if key not in self._active:
                    self._episodes[key] += 1
                    alert = Alert(key[0], key[1], "firing", _SEVERITY[key[0]], f.message, at, self._episodes[key],
                                  f.value, f.threshold, self.root)
                    self._active[key] = alert
                    self.fired[key[0]] += 1
                    out.append(alert)
            for key in [k for k in self._active if k not in found]:
                began = self._active.pop(key)
                out.append(Alert(key[0], key[1], "resolved", began.severity,
                                 f"cleared after {(at - began.at_ns) / 1e9:.1f} s: {began.message}", at,
                                 began.episode, None, began.threshold, self.root))
            self.history.extend(out)
            hooks = list(self._hooks)
        for alert in out:
            self._deliver(alert, hooks)
        return out

    @property
    def firing(self) -> list[Alert]:
        """The alerts whose episode is still open."""
        with self._lock:
            return list(self._active.values())

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {"firing": [a.to_json() for a in self._active.values()], "fired": dict(self.fired),
                    "hooks": len(self._hooks)}

    def close(self) -> None:
        """Stop the webhook threads (after sending what is queued, within their timeout)."""
        with self._lock:
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            if isinstance(hook, WebhookHook):
                hook.close()

    # -- delivery --------------------------------------------------------------------------------
    def _deliver(self, alert: Alert, hooks: list[Hook]) -> None:
        if alert.state == "firing":
            log.log(logging.ERROR if alert.severity == "critical" else logging.WARNING, "%s", alert)
            if self.show:
                _show(alert)
        else:
            log.info("cryptolake alert resolved (%s%s): %s", alert.kind, f" {alert.subject}" if alert.subject else "",
                     alert.message)
        for hook in hooks:
            try:
                hook(alert)
            except Exception:  # a user's hook must not stop the others, nor the monitor
                log.exception("alert hook %r failed", hook)


def _show(alert: Alert) -> None:
    """Once per firing alert: an HTML box in a Jupyter kernel, else an AlertWarning."""
    if in_notebook():
        try:
            from IPython.display import display

            display(alert)
            return
        except Exception:  # a kernel shutting down: fall back to the warning
            log.debug("could not display an alert", exc_info=True)
    # a fresh registry each time: the same text in a later episode is shown again
    warnings.warn_explicit(AlertWarning(str(alert)), AlertWarning, "cryptolake_nb/alerts.py", 0,
                           module="cryptolake_nb.alerts", registry=None)


class WebhookHook:
    """POSTs each alert as JSON to `url` from its own thread; failures are logged, never raised.

    At most `maxsize` alerts wait; beyond that the oldest waiting one is dropped (and logged).
    """

    def __init__(self, url: str, *, timeout: float = 5.0, maxsize: int = 100) -> None:
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            raise ConfigError(f"a webhook URL must start with http:// or https://, got {redact(str(url))!r}")
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigError(f"webhook timeout must be a positive number of seconds, got {timeout!r}")
        self.url = url
        self.timeout = float(timeout)
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize)
        self._thread = threading.Thread(target=self._run, name="cryptolake-webhook", daemon=True)
        self._thread.start()

    def __call__(self, alert: Alert) -> None:
        while True:
            try:
                self._queue.put_nowait(alert)
                return
            except queue.Full:
                try:
                    dropped = self._queue.get_nowait()
                    self._queue.task_done()
                    log.warning("webhook %s is behind: dropped alert %s", redact(self.url), dropped)
                except queue.Empty:
                    pass

    def join(self) -> None:
        """Wait until every queued alert was sent or failed."""
        self._queue.join()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(self.timeout + 1.0)

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            try:
                if alert is None:
                    return
                self._post(alert)
            finally:
                self._queue.task_done()

    def _post(self, alert: Alert) -> None:
        body = json.dumps(alert.to_json()).encode()
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "cryptolake_nb"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
            self.sent += 1
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self.failed += 1
            log.warning("could not POST alert %s to webhook %s: %s", alert.kind, redact(self.url), redact(str(exc)))

    def __repr__(self) -> str:
        return f"WebhookHook({redact(self.url)!r})"


@dataclass
class Monitor:
    """Calls `check()` every `interval_s` on a daemon thread until `stop()`; errors are logged."""

    check: Callable[[], object]
    interval_s: float = 1.0
    rounds: int = 0  # checks run so far
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.interval_s, (int, float)) or isinstance(self.interval_s, bool) or self.interval_s <= 0:
            raise ConfigError(f"interval_s must be a positive number of seconds, got {self.interval_s!r}")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cryptolake-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.rounds += 1
            try:
                self.check()
            except Exception:  # the monitor must outlive a bad round
                log.exception("health check failed")
