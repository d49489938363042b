"""`cryptolake`: the headless command line (collect, status, verify, compact, replay, sql, simulate).

Exit status: 0 success; 1 a runtime failure (the lake is locked by a writer, storage or feed
failure, a query failing in DuckDB, damaged files found by verify); 2 a usage or configuration
error (bad option, invalid configuration value, a statement other than one SELECT); 130 interrupted.
Errors are one line on stderr (`cryptolake: error: ...`), with the traceback only under --debug.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from .cli_output import FORMATS, print_frame, print_report
from .config import Settings, load_settings
from .errors import ConfigError, CryptolakeError, ForbiddenQueryError, LakeLockedError

__all__ = ["main", "run"]

log = logging.getLogger(__name__)

PROG = "cryptolake"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


# -- commands ----------------------------------------------------------------------------------
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
    return EXIT_OK


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    with _writer_lake(settings, "verify") as lake:
        report = lake.verify()
    print_report({"checked": report.checked, "damaged": len(report.bad),
                  "bad": [{"path": p, "reason": r} for p, r in report.bad],
                  "quarantined": report.quarantined}, args.format, sys.stdout)
    if not report.ok:
        _error(f"verify found {len(report.bad)} damaged file(s); moved out of the query path to "
               f"_quarantine/files/")
        return EXIT_FAILURE
    return EXIT_OK


def cmd_compact(args: argparse.Namespace, settings: Settings) -> int:
    with _writer_lake(settings, "compact") as lake:
        done = lake.compact(args.tables or None, progress=args.progress)
    merged = [{"table": c.table, "partition": "/".join(c.partition), "files_in": c.files_in, "rows": c.rows,
               "output": c.output} for c in done]
    print_report({"merged": merged, "partitions": len(merged)}, args.format, sys.stdout)
    return EXIT_OK


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
    return EXIT_OK


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    params = dict(_param(p) for p in args.param)
    with _reader(settings) as lake:
        frame = lake.sql(args.query, params or None)
    print_frame(frame, args.format, sys.stdout)
    return EXIT_OK


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
    return EXIT_OK


# -- helpers -----------------------------------------------------------------------------------
def _settings(args: argparse.Namespace) -> Settings:
    """The configuration: defaults < YAML (--config, $CRYPTOLAKE_CONFIG, ./cryptolake.yaml) <
    CRYPTOLAKE_* < --root (config.py validates it all at once)."""
    root = getattr(args, "root", None)
    return load_settings(getattr(args, "config", None), **({"lake": {"root": root}} if root is not None else {}))


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


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()


# -- parser ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: given before or after the command, the option lands once (before is the default)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="configuration file (YAML); default $CRYPTOLAKE_CONFIG, else ./cryptolake.yaml")
    common.add_argument("--root", metavar="DIR", default=argparse.SUPPRESS,
                        help="the lake directory (overrides $CRYPTOLAKE_ROOT and lake.root)")
    common.add_argument("--log-level", default=argparse.SUPPRESS, type=str.upper,
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="log level on stderr (default INFO for collect and simulate, else WARNING)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="tracebacks on errors and DEBUG logs")

    parser = argparse.ArgumentParser(prog=PROG, parents=[common],
                                     description="Headless tick store: collect market data into a lake, query it.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, func: Callable[..., int], help: str, *, fmt: str | None = None,
                progress: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(func=func)
        if fmt is not None:
            choices = FORMATS if name == "sql" else ("table", "json")
            p.add_argument("--format", "-f", choices=choices, default=fmt, help=f"output format (default {fmt})")
        if progress:
            p.add_argument("--progress", action="store_true", default=None, help="draw a progress bar on stderr")
        return p

    p = command("collect", cmd_collect, "run the configured feeds until SIGTERM/SIGINT, then flush and exit")
    p.add_argument("--status-every", type=_positive_seconds, default=60.0, metavar="SECONDS",
                   help="print a progress line (JSON) and publish status this often; 0: never (default 60)")
    command("status", cmd_status, "the lake's committed state and the running collector's last report",
            fmt="table")
    command("verify", cmd_verify, "check every committed file; move damaged ones out of the query path "
            "(exit 1 if any)", fmt="table")
    p = command("compact", cmd_compact, "merge small files per partition (lossless, checked)", fmt="table",
                progress=True)
    p.add_argument("tables", nargs="*", metavar="TABLE", help="tables to compact (default: all)")
    p = command("replay", cmd_replay, "replay recorded cryptofeed capture files into the lake", fmt="table",
                progress=True)
    p.add_argument("files", nargs="+", metavar="FILE", help="capture files of one exchange (NAME.0, NAME.ws.N.0, ...)")
    p = command("sql", cmd_sql, "run one SELECT over the lake's committed data (read-only: works while "
                "collect runs)", fmt="table")
    p.add_argument("query", help="one SELECT statement; $name binds --param name=value")
    p.add_argument("--param", "-p", action="append", default=[], metavar="NAME=VALUE",
                   help="bind $NAME (numbers, true/false/null as such, else text); repeatable")
    p = command("simulate", cmd_simulate, "run the loopback exchange simulator (for trying collect offline)")
    p.add_argument("--exchange", default="BINANCE", help="BINANCE (spot) or BINANCE_FUTURES (default BINANCE)")
    p.add_argument("--symbols", nargs="+", metavar="SYMBOL", help="listed symbols (default: the venue's own)")
    p.add_argument("--rate", type=float, default=50.0, help="market events per second (default 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free)")
    p.add_argument("--ca-file", required=True, metavar="PATH",
                   help="where to write the simulator's CA certificate (PEM) for the collector to trust")
    return parser


class _Formatter(logging.Formatter):
    """Log lines on stderr; a record's traceback only under --debug (else its last line, inline)."""

    def __init__(self, debug: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.debug = debug

    def format(self, record: logging.LogRecord) -> str:
        if self.debug or not (record.exc_info or record.exc_text or record.stack_info):
            return super().format(record)
        exc = record.exc_info[1] if record.exc_info else None
        plain = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None, "stack_info": None})
        text = super().format(plain)
        return f"{text} ({type(exc).__name__}: {exc})" if exc is not None and str(exc) not in text else text


def _configure_logging(level: str, debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(debug))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)  # other libraries: warnings only
    logging.getLogger("cryptolake_nb").setLevel(logging.DEBUG if debug else getattr(logging, level))


def main(argv: list[str] | None = None, *, setup_logging: bool = True) -> int:
    """Run one command; return the exit status (argparse exits 2 itself on usage errors).
    `setup_logging=False` leaves the logging tree alone (when called inside another program)."""
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    default_level = "INFO" if args.command in ("collect", "simulate") else "WARNING"
    if setup_logging:
        _configure_logging(getattr(args, "log_level", default_level), debug)
    try:
        return args.func(args, _settings(args))
    except (ConfigError, ForbiddenQueryError) as exc:
        return _fail(exc, EXIT_USAGE, debug)
    except (CryptolakeError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            return _stdout_gone()
        return _fail(exc, EXIT_FAILURE, debug)
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: still one line unless --debug
        return _fail(exc, EXIT_FAILURE, debug, prefix="internal error: ")


def _fail(exc: BaseException, code: int, debug: bool, prefix: str = "") -> int:
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    kind = type(exc).__name__
    _error(f"{prefix}{kind}: {exc}" if prefix or not isinstance(exc, CryptolakeError) else str(exc))
    return code


def _stdout_gone() -> int:
    """The reader of stdout went away (e.g. `| head`): not an error; silence the final flush."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
    return EXIT_OK


def run() -> None:
    """The `cryptolake` console script."""
    sys.exit(main())


if __name__ == "__main__":
    run()
