"""%%lakesql and %lake: parse the line, delegate to the lake, return what to display."""
from __future__ import annotations

import argparse
import json
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand

from .errors import CryptolakeError
from .lake import Lake
from .status_view import StatusView
from .view import used_parameters

__all__ = ["LakeMagics", "split_options"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="%%lakesql", add_help=False, exit_on_error=False)
    p.add_argument("-o", "--out", metavar="VAR", help="also store the result in VAR")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--polars", action="store_true", help="return a polars DataFrame")
    fmt.add_argument("--arrow", action="store_true", help="return a pyarrow Table")
    return p


_OPTIONS_WITH_VALUE = {"-o", "--out"}


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
                raise UsageError(f"{token} needs a variable name")
            opts.append(value)
            rest = tail.lstrip()
    return opts, rest


@magics_class
class LakeMagics(Magics):
    """`%%lakesql` runs SQL on the lake; `%lake start|stop|status|flush` drives the collector."""

    def __init__(self, shell: Any, lake: Lake) -> None:
        super().__init__(shell)
        self.lake = lake

    @no_var_expand
    @line_cell_magic
    def lakesql(self, line: str, cell: str | None = None) -> Any:
        """%%lakesql [-o VAR] [--polars|--arrow]: one SELECT over the lake; `$name` binds a notebook variable."""
        opts, sql = split_options(line)
        if cell is not None:
            sql = (sql + "\n" + cell).strip()
        try:
            args = _parser().parse_args(opts)
        except (argparse.ArgumentError, SystemExit) as exc:
            raise UsageError(f"%%lakesql: {exc}") from None
        if not sql:
            raise UsageError("%%lakesql: no SQL given")
        ns = self.shell.user_ns
        missing = [n for n in used_parameters(sql) if n not in ns]
        if missing:
            raise UsageError(f"%%lakesql: no notebook variable for {', '.join('$' + n for n in missing)}")
        params = {n: ns[n] for n in used_parameters(sql)}
        to = "polars" if args.polars else "arrow" if args.arrow else "pandas"
        try:
            result = self.lake.sql(sql, params, to=to)
        except CryptolakeError as exc:
            raise UsageError(f"{type(exc).__name__}: {exc}") from None
        if args.out:
            ns[args.out] = result
        return result

    @line_magic
    def lake(self, line: str) -> Any:
        """%lake start | stop | status | flush | compact | verify"""
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
            if command == "compact":
                done = self.lake.compact()
                return f"{sum(c.files_in for c in done)} file(s) merged into {len(done)}"
            if command == "verify":
                report = self.lake.verify()
                return f"{report.checked} file(s) checked, {len(report.bad)} bad: {report.bad}"
        except CryptolakeError as exc:
            raise UsageError(f"{type(exc).__name__}: {exc}") from None
        raise UsageError(f"%lake: unknown command {command!r}; use start, stop, status, flush, compact or verify")
