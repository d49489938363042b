"""jupysql interop: `%sql` / `%%sql` see the lake's views with no extra step.

Why not hand jupysql a DuckDB connection (jupysql 0.11.1 with DuckDB 2.0, seen on this machine):
- jupysql recognises a native DuckDB connection by `conn.df` and `conn.pl`; DuckDB 2.0 dropped
  `DuckDBPyConnection.pl`, so it treats one as a generic DB-API connection: no "duckdb" dialect,
  each query re-rendered by sqlglot's generic dialect (`ts::DATE` -> `CAST(ts AS DATE)`,
  `EXCLUDE` -> `EXCEPT`), frames built from Python tuples.
- it runs every statement on `conn.cursor()`, a new connection context: the lake's per-query TEMP
  views and registered Arrow snapshots are invisible there.
- before each statement it runs `SET python_scan_all_frames=true` (errors swallowed), which the
  lake's locked configuration refuses anyway.

So jupysql gets a `LakeConnection`: a small DB-API connection whose cursor runs each statement
through `Lake.query_arrow`, i.e. the lockdown (one SELECT, no file access outside the lake), the
exactly-once snapshot of live + history, pruning and the query log of `%%lakesql`. It has `df` and
`pl`, so jupysql takes its DuckDB path (no transpiling, frames straight from Arrow). `$name` binds
a notebook variable, as in `%%lakesql`.

`JupysqlBridge` registers that connection (alias "cryptolake") with jupysql's connection manager as
soon as both extensions are loaded, in either order: at `%load_ext cryptolake_nb`, or in the first
cell after `%load_ext sql` (an IPython `pre_run_cell` hook). A connection the user opened earlier
stays current; `%sql cryptolake` switches to the lake.
"""
from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, Mapping

from .errors import CryptolakeError, QueryError
from .lake import convert
from .view import used_parameters

if TYPE_CHECKING:
    import pyarrow as pa

    from .lake import Lake

__all__ = ["ALIAS", "JupysqlBridge", "LakeConnection", "LakeCursor"]

log = logging.getLogger(__name__)

ALIAS = "cryptolake"


class LakeCursor:
    """A DB-API 2.0 cursor over one lake: `execute` runs one SELECT through `Lake.query_arrow`."""

    arraysize = 1
    rowcount = -1  # DB-API: unknown for a SELECT (jupysql prints "N rows affected" when > 0)

    def __init__(self, lake: "Lake", namespace: Mapping[str, Any] | None = None, *,
                 usage_errors: bool = False) -> None:
        self._lake = lake
        self._namespace = namespace
        self._usage_errors = usage_errors
        self._table: pa.Table | None = None
        self._pos = 0
        self.description: list[tuple] | None = None

    def execute(self, operation: str, parameters: Mapping[str, Any] | None = None) -> "LakeCursor":
        """Run `operation` (one SELECT); `$name` takes `parameters[name]`, else the notebook's `name`."""
        params = dict(parameters or {})
        for name in used_parameters(operation):
            if name not in params and self._namespace is not None and name in self._namespace:
                params[name] = self._namespace[name]
        try:
            self._table = self._lake.query_arrow(operation, params)
        except CryptolakeError as exc:
            if not self._usage_errors:
                raise
            from IPython.core.error import UsageError

            raise UsageError(f"{type(exc).__name__}: {exc}") from None  # one line in a cell, as %%lakesql
        self._pos = 0
        self.description = [(f.name, str(f.type), None, None, None, None, None) for f in self._table.schema]
        return self

    def fetchmany(self, size: int | None = None) -> list[tuple]:
        table = self._result()
        n = self.arraysize if size is None else max(int(size), 0)
        part = table.slice(self._pos, n)
        self._pos += part.num_rows
        return list(zip(*(c.to_pylist() for c in part.columns))) if part.num_rows else []

    def fetchall(self) -> list[tuple]:
        return self.fetchmany(self._result().num_rows - self._pos)

    def fetchone(self) -> tuple | None:
        rows = self.fetchmany(1)
        return rows[0] if rows else None

    def df(self) -> Any:
        """The whole result as pandas (what jupysql's `.DataFrame()` asks a DuckDB cursor for)."""
        return convert(self._result(), "pandas")

    def pl(self) -> Any:
        """The whole result as polars (jupysql's `.PolarsDataFrame()`)."""
        return convert(self._result(), "polars")

    def fetch_arrow_table(self) -> "pa.Table":
        return self._result()

    def close(self) -> None:
        self._table = None

    def _result(self) -> "pa.Table":
        if self._table is None:
            raise QueryError("no results to fetch: execute a SELECT first")
        return self._table


class LakeConnection:
    """A DB-API 2.0 connection for jupysql (and any DB-API client) over a lake; read-only.

    `namespace` supplies `$name` values not passed to `execute`; `usage_errors` turns a failed query
    into IPython's one-line UsageError (what a cell should show) instead of the CryptolakeError.
    """

    def __init__(self, lake: "Lake", namespace: Mapping[str, Any] | None = None, *,
                 usage_errors: bool = False) -> None:
        self.lake = lake
        self._namespace = namespace
        self._usage_errors = usage_errors
        self._last: LakeCursor | None = None

    def cursor(self) -> LakeCursor:
        return LakeCursor(self.lake, self._namespace, usage_errors=self._usage_errors)

    def execute(self, operation: str, parameters: Mapping[str, Any] | None = None) -> LakeCursor:
        self._last = self.cursor().execute(operation, parameters)
        return self._last

    def df(self) -> Any:
        """The last `execute` result as pandas, as on a DuckDB connection."""
        return self._last_cursor().df()

    def pl(self) -> Any:
        return self._last_cursor().pl()

    def commit(self) -> None:
        """Nothing to commit: only SELECTs run."""

    def rollback(self) -> None:
        """Nothing to roll back: only SELECTs run."""

    def close(self) -> None:
        """The lake belongs to the extension (`%unload_ext cryptolake_nb` closes it), not to jupysql."""

    def _last_cursor(self) -> LakeCursor:
        if self._last is None:
            raise QueryError("no results to fetch: execute a SELECT first")
        return self._last

    def __repr__(self) -> str:
        return f"LakeConnection({self.lake!r})"


class JupysqlBridge:
    """Keeps a `LakeConnection` registered with jupysql while both extensions are loaded."""

    def __init__(self, shell: Any, lake: "Lake") -> None:
        self.shell = shell
        self.lake = lake
        self.registered: Any = None  # jupysql's wrapper around our connection, once registered

    def install(self) -> "JupysqlBridge":
        self.shell.events.register("pre_run_cell", self.pre_run_cell)
        self.sync()
        return self

    def pre_run_cell(self, info: Any = None) -> None:
        self.sync()

    def sync(self) -> None:
        """Register the lake with jupysql if jupysql is loaded and it is not registered yet."""
        if self.registered is not None or not _jupysql_loaded(self.shell):
            return
        try:
            from sql.connection import ConnectionManager

            previous = ConnectionManager.current
            conn = LakeConnection(self.lake, self.shell.user_ns, usage_errors=True)
            self.registered = ConnectionManager.set(conn, displaycon=False, alias=ALIAS)
            if previous is not None:
                ConnectionManager.current = previous  # the user's own connection stays current
        except Exception:  # a jupysql we do not know must never break the user's cell
            log.exception("could not register the lake with jupysql")
            self.registered = False

    def uninstall(self) -> None:
        """Drop the hook and the lake's jupysql connection (another connection becomes current)."""
        try:
            self.shell.events.unregister("pre_run_cell", self.pre_run_cell)
        except ValueError:
            pass
        if not self.registered or "sql.connection" not in sys.modules:
            return
        from sql.connection import ConnectionManager

        if ConnectionManager.connections.get(ALIAS) is self.registered:
            ConnectionManager.connections.pop(ALIAS)
        if ConnectionManager.current is self.registered:
            ConnectionManager.current = next(iter(ConnectionManager.connections.values()), None)
        self.registered = None

    @staticmethod
    def uninstall_all(shell: Any) -> None:
        """Uninstall every bridge whose hook is registered on `shell` (used by `%unload_ext`)."""
        for callback in list(shell.events.callbacks.get("pre_run_cell", [])):
            bridge = getattr(callback, "__self__", None)
            if isinstance(bridge, JupysqlBridge):
                bridge.uninstall()


def _jupysql_loaded(shell: Any) -> bool:
    """True once `%load_ext sql` registered jupysql's `%sql` on this shell."""
    if "sql.connection" not in sys.modules:
        return False
    magic = shell.magics_manager.magics.get("line", {}).get("sql")
    owner = getattr(magic, "__self__", None)
    return owner is not None and type(owner).__module__.startswith("sql.")
