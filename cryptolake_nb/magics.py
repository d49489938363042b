"""%%lakesql and %lake: parse the line, delegate to the lake (and lakesql.py), return what to display."""
from __future__ import annotations

import argparse
import shlex
from typing import Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand

from .errors import CryptolakeError
from .lake import Lake
from .lakesql import MIN_EVERY_S, CellRequest, parse_duration, run_cell
from .status_view import StatusView
from .view import used_parameters

__all__ = ["LakeMagics", "split_options"]

USAGE = ("%%lakesql [-o VAR] [--polars|--arrow] [--live|--history] [--explain] [--time] [--plot] "
         "[--every 2s [--for 30s]]")


class _Parser(argparse.ArgumentParser):
    """argparse that raises one-line UsageErrors instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"%%lakesql: {message}; usage: {USAGE}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="%%lakesql", add_help=False, exit_on_error=False)
    p.add_argument("-o", "--out", metavar="VAR", help="also store the result in VAR")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--polars", action="store_true", help="return a polars DataFrame")
    fmt.add_argument("--arrow", action="store_true", help="return a pyarrow Table")
    side = p.add_mutually_exclusive_group()
    side.add_argument("--live", action="store_true", help="read only the live buffer of every table")
    side.add_argument("--history", action="store_true", help="read only committed files of every table")
    p.add_argument("--explain", action="store_true", help="show partitions/files/rows read and DuckDB's plan")
    p.add_argument("--time", action="store_true", help="print total, DuckDB, files and live rows")
    p.add_argument("--plot", action="store_true", help="show a line chart (candlesticks for OHLC columns)")
    p.add_argument("--every", metavar="DURATION", help="re-run and refresh the output in place")
    p.add_argument("--for", dest="for_", metavar="DURATION", help="with --every: stop after this long")
    return p


_OPTIONS_WITH_VALUE = {"-o", "--out", "--every", "--for"}


def split_options(line: str) -> tuple[list[str], str]:
    """Take leading `-x` options off a magic line; the rest is SQL, kept byte for byte."""
    opts: list[str] = []
    rest = line.lstrip()
    while rest.startswith("-"):
        token, _, tail = rest.partition(" ")
        opts.append(token)
        rest = tail.lstrip()
        if token in _OPTIONS_WITH_VALUE:
            value, _, tail = rest.partition(" ")
            if not value:
                raise UsageError(f"%%lakesql: {token} needs a value")
            opts.append(value)
            rest = tail.lstrip()
    return opts, rest


def parse_request(line: str, cell: str | None, namespace: dict[str, Any]) -> CellRequest:
    """The cell's SQL, options and `$name` values from the notebook; UsageError (one line) if wrong."""
    opts, sql = split_options(line)
    if cell is not None:
        sql = (sql + "\n" + cell).strip()
    try:
        args = _parser().parse_args(opts)
    except (argparse.ArgumentError, SystemExit) as exc:
        raise UsageError(f"%%lakesql: {exc}; usage: {USAGE}") from None
    if not sql:
        raise UsageError("%%lakesql: no SQL given")
    try:
        every = None if args.every is None else parse_duration(args.every)
        for_s = None if args.for_ is None else parse_duration(args.for_)
    except CryptolakeError as exc:
        raise UsageError(f"%%lakesql: {exc}") from None
    if for_s is not None and every is None:
        raise UsageError("%%lakesql: --for needs --every")
    if every is not None and every < MIN_EVERY_S:
        raise UsageError(f"%%lakesql: --every must be at least {MIN_EVERY_S * 1000:g}ms")
    if args.explain and (every is not None or args.plot):
        raise UsageError("%%lakesql: --explain does not run the query; it cannot be combined with --every or --plot")
    missing = [n for n in used_parameters(sql) if n not in namespace]
    if missing:
        raise UsageError(f"%%lakesql: no notebook variable for {', '.join('$' + n for n in missing)}")
    return CellRequest(
        sql=sql, params={n: namespace[n] for n in used_parameters(sql)},
        to="polars" if args.polars else "arrow" if args.arrow else "pandas",
        source="live" if args.live else "history" if args.history else "all",
        out=args.out, explain=args.explain, time=args.time, plot=args.plot, every_s=every, for_s=for_s,
    )


@magics_class
class LakeMagics(Magics):
    """`%%lakesql` runs SQL on the lake; `%lake start|stop|status|health|flush|...` drives the collector."""

    def __init__(self, shell: Any, lake: Lake) -> None:
        super().__init__(shell)
        self.lake = lake

    @no_var_expand
    @line_cell_magic
    def lakesql(self, line: str, cell: str | None = None) -> Any:
        """%%lakesql [-o VAR] [--polars|--arrow] [--live|--history] [--explain] [--time] [--plot]
        [--every 2s [--for 30s]]: one SELECT over the lake; `$name` binds a notebook variable."""
        request = parse_request(line, cell, self.shell.user_ns)
        try:
            return run_cell(self.lake, request, self.shell.user_ns)
        except CryptolakeError as exc:  # one line with DuckDB's message, not a traceback
            raise UsageError(f"{type(exc).__name__}: {exc}") from None

    @line_magic
    def lake(self, line: str) -> Any:
        """%lake start | stop | status | health | flush | compact | verify | metrics [PORT] | metrics stop"""
        words = shlex.split(line)
        command = words[0] if words else "status"
        try:
            if command == "start":
                self.lake.start()
                return None
            if command == "stop":
                self.lake.stop()
                return None
            if command == "flush":
                files = self.lake.flush()
                return f"{len(files)} file(s) committed"
            if command == "status":
                return StatusView(self.lake.status())
            if command == "health":
                return self.lake.health()
            if command == "metrics":
                return self._metrics(words[1:])
            if command == "compact":
                done = self.lake.compact()
                return f"{sum(c.files_in for c in done)} file(s) merged into {len(done)}"
            if command == "verify":
                report = self.lake.verify()
                return f"{report.checked} file(s) checked, {len(report.bad)} bad: {report.bad}"
        except CryptolakeError as exc:
            raise UsageError(f"{type(exc).__name__}: {exc}") from None
        raise UsageError(f"%lake: unknown command {command!r}; use start, stop, status, health, flush, compact, verify "
                         "or metrics")

    def _metrics(self, args: list[str]) -> str:
        """`%lake metrics [PORT]` serves /metrics on loopback; `%lake metrics stop` stops it."""
        if args == ["stop"]:
            self.lake.stop_metrics()
            return "metrics stopped"
        if len(args) > 1 or (args and not args[0].isdigit()):
            raise UsageError("%lake metrics: usage: %lake metrics [PORT] | %lake metrics stop")
        host, port = self.lake.serve_metrics(int(args[0]) if args else 0)
        return f"metrics at http://{host}:{port}/metrics"
