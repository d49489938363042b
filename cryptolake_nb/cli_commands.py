"""The `cryptolake` commands: each takes the parsed arguments and the settings and returns an exit status.

Readers (`status`, `sql`) open the lake read-only, so they run beside a collector; maintenance
(`verify`, `compact`, `replay`) takes the writer lock and says so when a collector holds it.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from .cli_output import print_error, print_frame, print_report
from .config import Settings
from .errors import ConfigError, LakeLockedError

__all__ = ["cmd_collect", "cmd_compact", "cmd_replay", "cmd_simulate", "cmd_sql", "cmd_status", "cmd_verify"]


def cmd_collect(args: argparse.Namespace, settings: Settings) -> int:
    from .cli_collect import Collect

    return Collect(settings, out=sys.stdout, status_every=args.status_every).run()


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from .cli_collect import read_published

    with _reader(settings) as lake:
        lake.sources(tables=())  # follow the writer's latest commit
        report = {
            "root": str(lake.root),
            "writer": _writer(lake.root),
            "collector": read_published(lake.root),  # its own view: feeds, rates, lag, buffers, flushes
            "committed": _committed_view(lake.health()),
        }
    print_report(report, args.format, sys.stdout)
    return 0


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    with _writer_lake(settings, "verify") as lake:
        report = lake.verify()
    print_report({"checked": report.checked, "damaged": len(report.bad),
                  "bad": [{"path": p, "reason": r} for p, r in report.bad],
                  "quarantined": report.quarantined}, args.format, sys.stdout)
    if not report.ok:
        print_error(f"verify found {len(report.bad)} damaged file(s); moved out of the query path to "
               f"_quarantine/files/")
        return 1
    return 0


def cmd_compact(args: argparse.Namespace, settings: Settings) -> int:
    with _writer_lake(settings, "compact") as lake:
        done = lake.compact(args.tables or None, progress=args.progress)
    merged = [{"table": c.table, "partition": "/".join(c.partition), "files_in": c.files_in, "rows": c.rows,
               "output": c.output} for c in done]
    print_report({"merged": merged, "partitions": len(merged)}, args.format, sys.stdout)
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        raise ConfigError(f"capture file(s) not found: {', '.join(missing)}")
    with _writer_lake(settings, "replay") as lake:
        rows = lake.replay(args.files, progress=args.progress)
        result = lake.last_replay
        lake.flush()
    print_report({"exchange": result.exchange, "messages": result.messages, "seconds": round(result.duration, 3),
                  "rows": {t: n for t, n in rows.items() if n}, "substitutions": len(result.substitutions)},
                 args.format, sys.stdout)
    return 0


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    params = dict(_param(p) for p in args.param)
    with _reader(settings) as lake:
        frame = lake.sql(args.query, params or None)
    print_frame(frame, args.format, sys.stdout)
    return 0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from .simulator import ExchangeSimulator

    stop: list[str] = []

    def on_signal(signum: int, frame: Any) -> None:
        stop.append(signal.Signals(signum).name)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        sim = ExchangeSimulator(args.symbols or None, rate=args.rate, seed=args.seed, port=args.port,
                                exchange=args.exchange)
        with sim:
            ca = Path(args.ca_file)
            try:
                ca.write_bytes(sim.ca_pem)
            except OSError as exc:
                raise ConfigError(f"--ca-file {str(ca)!r} cannot be written: {exc.strerror or exc}") from None
            print(json.dumps({"event": "listening", "exchange": sim.exchange, "url": sim.rest_url,
                              "ws_url": sim.ws_url, "port": sim.port, "ca_file": str(ca.resolve()),
                              "symbols": list(sim.symbols), "rate": sim.rate}), flush=True)
            while not stop:
                time.sleep(0.2)
            print(json.dumps({"event": "stopped", "reason": stop[0], "trades_sent": sim.trades_sent,
                              "events": sim.events_generated}), flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _reader(settings: Settings) -> Any:
    """The lake read-only: no lock, follows a running collector's commits; no monitor, no metrics."""
    from .lake import Lake

    return Lake(settings=settings, read_only=True, monitoring=False)


def _writer_lake(settings: Settings, what: str) -> Any:
    """The lake for maintenance (verify, compact, replay): the writer lock; no monitor, no metrics."""
    from .lake import Lake

    try:
        return Lake(settings=settings, monitoring=False)
    except LakeLockedError as exc:
        raise LakeLockedError(f"{exc}. `cryptolake {what}` needs the lake to itself: stop the collector "
                              f"first (e.g. systemctl stop cryptolake)") from None


def _writer(root: Path) -> dict[str, Any]:
    """Who last took the writer lock, and whether that process still runs (from _writer.lock)."""
    try:
        text = (root / "_writer.lock").read_text(encoding="ascii", errors="replace").split()
        pid = int(text[1]) if len(text) >= 2 and text[0] == "pid" else None
    except (OSError, ValueError):
        pid = None
    if pid is None:
        return {"pid": None, "running": False}
    try:
        os.kill(pid, 0)
        running = True
    except ProcessLookupError:
        running = False
    except PermissionError:  # alive, another user's
        running = True
    return {"pid": pid, "running": running}


def _committed_view(health: dict[str, Any]) -> dict[str, Any]:
    """What a reader knows for sure: committed files, bytes and rows per table, gaps, disk (its own
    buffers, flushes and collector are empty: those are the collector's, in its published report)."""
    tables = {name: {k: v for k, v in t.items() if "buffer" not in k}
              for name, t in health.get("tables", {}).items()}
    return {"tables": tables, "gaps": health.get("gaps"), "disk": health.get("disk")}


def _param(text: str) -> tuple[str, Any]:
    """`name=value`; the value is a JSON number/true/false/null when it reads as one, else a string."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise ConfigError(f"--param must be name=value with an identifier name, got {text!r}")
    try:
        parsed = json.loads(value)
    except ValueError:
        return name, value
    return name, parsed if parsed is None or isinstance(parsed, (bool, int, float)) else value
