"""`cryptolake`: the headless command line (collect, status, verify, compact, replay, sql, simulate).

Exit status: 0 success; 1 a runtime failure (the lake is locked by a writer, storage or feed
failure, a query failing in DuckDB, damaged files found by verify); 2 a usage or configuration
error (bad option, invalid configuration value, a statement other than one SELECT); 130 interrupted.
Errors are one line on stderr (`cryptolake: error: ...`), with the traceback only under --debug.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import Callable

from .cli_commands import cmd_collect, cmd_compact, cmd_replay, cmd_simulate, cmd_sql, cmd_status, cmd_verify
from .cli_output import FORMATS, PROG, print_error
from .config import Settings, load_settings
from .errors import ConfigError, CryptolakeError, ForbiddenQueryError

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main", "run"]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _settings(args: argparse.Namespace) -> Settings:
    """The configuration: defaults < YAML (--config, $CRYPTOLAKE_CONFIG, ./cryptolake.yaml) <
    CRYPTOLAKE_* < --root (config.py validates it all at once)."""
    root = getattr(args, "root", None)
    return load_settings(getattr(args, "config", None), **({"lake": {"root": root}} if root is not None else {}))


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


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
        print_error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: still one line unless --debug
        return _fail(exc, EXIT_FAILURE, debug, prefix="internal error: ")


def _fail(exc: BaseException, code: int, debug: bool, prefix: str = "") -> int:
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    kind = type(exc).__name__
    print_error(f"{prefix}{kind}: {exc}" if prefix or not isinstance(exc, CryptolakeError) else str(exc))
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
