"""`cryptolake collect`: run the configured feeds headless until SIGTERM/SIGINT, then flush and account.

What it prints on stdout, one JSON object per line (logs go to stderr):

    {"event": "started", "pid": ..., "root": ..., "feeds": [...], "recovered": {...}}
    {"event": "progress", "received": {...}, "committed": {...}, "collector": "running", ...}   every --status-every s
    {"event": "stopped", "reason": "SIGTERM", "received": {...}, "committed": {...}, "unflushed": 0, "exit": 0}

`received` counts, per table, the rows this run accepted (after validation and de-duplication,
journal recovery included): the rows the lake owes. Book tables count `book_updates` instead (an
update becomes several level rows, and flushes add checkpoint rows). `committed` counts the rows
this run added to the committed history. After a clean stop `received` equals `committed` for every
table but the books and `unflushed` is 0; otherwise the exit status is 1 (rows not flushed stay in
the journal for the next start).

The same report (plus `lake.health()`) is published
atomically to `ROOT/_collector/status.json`, which `cryptolake status` reads from another process.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, TextIO

from .cli_output import json_default
from .config import Settings
from .errors import CollectorError, ConfigError, StorageError
from .health import Monitoring
from .lake import Lake
from .tables import TABLES

__all__ = ["STATUS_FILE", "Collect", "read_published"]

log = logging.getLogger(__name__)

STATUS_FILE = Path("_collector") / "status.json"
_POLL_S = 0.2     # how often the main thread looks at the stop flag
_CHECK_S = 1.0    # how often it looks at the collector's state
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Collect:
    """One headless run: open the lake (writer), subscribe the configured feeds, start, wait for a
    signal, stop, flush, report."""

    def __init__(self, settings: Settings, *, out: TextIO, status_every: float = 60.0) -> None:
        self.settings, self.out, self.status_every = settings, out, status_every
        self.signal: str | None = None
        self.metrics_url: str | None = None
        self._previous: dict[int, Any] = {}

    # -- signals -------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signal is not None:  # a second signal: give up the final flush, the journal has the rows
            os.write(2, b"cryptolake: second signal: exiting now without the final flush; "
                        b"journaled rows are restored at the next start\n")
            os._exit(128 + signum)
        self.signal = signal.Signals(signum).name  # only a flag: the main loop polls it (no locks here)

    def _install(self) -> None:
        for sig in _STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> int:
        """Collect until a stop signal; the exit status (0: stopped cleanly with every row committed)."""
        if not self.settings.feeds:
            raise ConfigError("nothing to collect: the configuration has no feeds (a `feeds:` list in the file "
                              "given by --config, $CRYPTOLAKE_CONFIG or ./cryptolake.yaml)")
        self._install()  # before the lake opens: a signal during start-up still stops cleanly
        try:
            monitoring = Monitoring.from_config(self.settings.monitoring)
            port = monitoring.metrics_port
            # alerts reach the log (stderr, the journal under systemd): there is no notebook to show them in;
            # metrics are served below by us, so the bound address is known (port 0: any free)
            lake = Lake(settings=self.settings,
                        monitoring=dataclasses.replace(monitoring, show=False, metrics_port=None))
            try:
                if port is not None:
                    host, bound = lake.serve_metrics(port, host=monitoring.metrics_host)
                    self.metrics_url = f"http://{host}:{bound}/metrics"
                    log.info("Prometheus metrics at %s", self.metrics_url)
                return self._run(lake)
            finally:
                lake.close()
        finally:
            self._restore()

    def _run(self, lake: Lake) -> int:
        base = _committed(lake)
        feeds = [spec.name for spec in lake.subscribe_configured()]
        if self.signal is None:
            lake.start()  # returns once the feeds are built (or failed to be)
        failure = _failed(lake)
        if failure is None:
            self._emit({"event": "started", "pid": os.getpid(), "root": str(lake.root),
                        "metrics_url": self.metrics_url, "feeds": feeds, "recovered": dict(lake.recovered)})
            log.info("collecting into %s: %s", lake.root, "; ".join(feeds))
            failure = self._wait(lake, base)
        reason = self.signal or "failed"
        log.info("stopping (%s): flushing", reason)
        try:
            lake.stop()
        except StorageError as exc:
            failure = failure or f"the final flush failed: {exc}"
        except CollectorError as exc:  # the feeds' thread did not end in time: flush what arrived anyway
            failure = failure or str(exc)
            try:
                lake.flush()
            except StorageError as flush_exc:
                log.error("the final flush failed: %s", flush_exc)
        report = self._report(lake, base, "stopped")
        unflushed = report["unflushed"]
        if unflushed and not failure:
            failure = f"{unflushed} row(s) could not be flushed; they stay in the journal for the next start"
        elif not failure and not report["dropped"]:
            owed = {t: n for t, n in report["committed"].items() if t in _row_tables()}
            if owed != report["received"]:
                failure = f"rows received {report['received']} and committed {owed} differ; see the log"
        code = 1 if failure else 0
        self._emit({**report, "reason": reason, "exit": code, **({"error": failure} if failure else {})})
        self._publish(lake, report)
        if failure:
            raise CollectorError(failure)
        log.info("stopped cleanly: %s", _summary(report["committed"]))
        return code

    def _wait(self, lake: Lake, base: dict[str, int]) -> str | None:
        """Sleep until a signal; report progress; return why collection must end, if not a signal."""
        last_check = next_report = time.monotonic()
        while self.signal is None:
            time.sleep(_POLL_S)
            now = time.monotonic()
            if now - last_check >= _CHECK_S:
                last_check = now
                failure = _failed(lake)
                if failure is not None:
                    return failure
            if self.status_every and now >= next_report:
                next_report = now + self.status_every
                report = self._report(lake, base, "progress")
                self._emit(report)
                self._publish(lake, report)
        return None

    # -- reporting -----------------------------------------------------------------------------
    def _report(self, lake: Lake, base: dict[str, int], event: str) -> dict[str, Any]:
        status = lake.status()
        committed = _committed(lake)
        rows, updates = _received(lake)
        return {
            "event": event,
            "received": _nonzero(rows),
            "book_updates": _nonzero(updates),
            "committed": _nonzero({t: committed[t] - base.get(t, 0) for t in committed}),
            "unflushed": sum(v.get("buffer_rows", 0) for v in status["tables"].values()),
            "dropped": status["memory"].get("dropped_rows", 0),
            "collector": status["collector"]["state"],
            "reconnects": sum(f.get("reconnects", 0) or 0 for f in status.get("feeds", [])),
            "flush_error": status["flush"].get("last_error"),
        }

    def _emit(self, record: dict[str, Any]) -> None:
        try:
            self.out.write(json.dumps(record, default=json_default) + "\n")
            self.out.flush()
        except (OSError, ValueError) as exc:  # stdout closed (e.g. its reader went away): keep collecting
            log.warning("could not write to stdout: %s", exc)

    def _publish(self, lake: Lake, report: dict[str, Any]) -> None:
        """Write the collector's view for `cryptolake status` in other processes (atomically)."""
        try:
            health: dict[str, Any] = lake.health()
        except Exception as exc:  # the report must never stop collection
            log.warning("could not gather health: %r", exc)
            health = {"error": repr(exc)}
        body = {"pid": os.getpid(), "published_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "metrics_url": self.metrics_url, "report": report, "health": health}
        path = lake.root / STATUS_FILE
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            path.parent.mkdir(exist_ok=True)
            tmp.write_text(json.dumps(body, default=json_default), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("could not publish status to %s: %s", path, exc)


def read_published(root: Path) -> dict[str, Any] | None:
    """The collector's last published status (see `Collect._publish`), with `age_s`; None if none."""
    path = Path(root) / STATUS_FILE
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"error": f"unreadable {path}: {exc}"}
    try:
        published = dt.datetime.fromisoformat(body["published_at"])
        body["age_s"] = round((dt.datetime.now(dt.timezone.utc) - published).total_seconds(), 1)
    except (KeyError, TypeError, ValueError):
        pass
    return body


def _failed(lake: Lake) -> str | None:
    """Why the collector failed (a feed that could not start or gave up reconnecting), if it did."""
    collector = lake.status()["collector"]
    if collector["state"] != "failed":
        return None
    errors = collector.get("errors") or ["(no error recorded)"]
    return f"the collector failed: {errors[-1]}"


def _row_tables() -> tuple[str, ...]:
    """Tables where one received object is one row (books store levels and add checkpoints at flush)."""
    return tuple(t for t, spec in TABLES.items() if spec.make_flush_transform is None and spec.make_capture is None)


def _received(lake: Lake) -> tuple[dict[str, int], dict[str, int]]:
    """(rows accepted per row table, book updates accepted per book table): appended (journal
    recovery included) minus rejected minus duplicates."""
    for table in TABLES:
        lake.buffer(table).seal()  # validation and de-duplication happen at seal
    dropped: dict[str, int] = {}
    for (table, _exchange), n in lake.dedup.dropped.items():
        dropped[table] = dropped.get(table, 0) + n
    counts = {t: lake.buffer(t).appended - lake.rejects.counts.get(t, 0) - dropped.get(t, 0) for t in TABLES}
    rows = _row_tables()
    return {t: n for t, n in counts.items() if t in rows}, {t: n for t, n in counts.items() if t not in rows}


def _committed(lake: Lake) -> dict[str, int]:
    return {t: sum(e.rows for e in lake.committed_files(t)) for t in TABLES}


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {t: n for t, n in counts.items() if n}


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {t}" for t, n in counts.items()) or "no rows"
