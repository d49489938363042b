"""DuckDB: one view per table = committed Parquet files UNION ALL a snapshot of the live buffer."""
from __future__ import annotations

import json
import logging
import re
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import ForbiddenQueryError, QueryError
from .manifest import schema_fingerprint
from .pruning import TIME_CASTS
from .pushdown import rewrite, templates_from

__all__ = ["LakeView", "Source", "by_schema", "tables_in", "used_parameters"]

log = logging.getLogger(__name__)

_STRIP = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", re.S)
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Source:
    """What one table's view reads: committed files (absolute paths) and live rows; `schemas` and
    `rows` hold each file's manifest schema fingerprint ("" unknown) and row count, in the order of `files`."""

    files: tuple[str, ...]
    live: pa.Table
    schemas: tuple[str, ...] = ()
    rows: tuple[int, ...] = ()
    # the live rows as DuckDB is given them (keyed.py), made only when a query registers them
    # (readers of `live` alone never pay for it); None: `live` itself
    scan: Callable[[], pa.Table] | None = field(default=None, compare=False)

    @property
    def scanned(self) -> pa.Table:
        return self.live if self.scan is None else self.scan()


def used_parameters(sql: str) -> list[str]:
    """Names of the `$name` parameters a statement uses (ignoring strings and comments)."""
    return sorted(set(_PARAM.findall(_STRIP.sub(" ", sql))))


class _Session:
    """One thread's DuckDB cursor and the text of each temporary view it has defined."""

    __slots__ = ("cursor", "views", "live", "__weakref__")

    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self.cursor = cursor
        self.views: dict[str, str] = {}
        self.live: set[str] = set()  # names of live rows registered for the running query

    def register(self, name: str, rows: pa.Table) -> None:
        self.cursor.register(name, rows)
        self.live.add(name)

    def release(self) -> None:
        """Unregister the query's live rows: an idle cursor keeps no snapshot alive."""
        for name in self.live:
            try:
                self.cursor.unregister(name)
            except duckdb.Error:
                pass
        self.live.clear()


class LakeView:
    """An embedded DuckDB that can read only the lake root, runs one SELECT per call.

    The database is locked down once at start (no file access outside the root, no config
    changes, no extension loading). Queries run on a cursor of their own thread with that
    thread's temporary views, so concurrent queries on different threads never see each other's
    snapshots. A view is re-created only when its text changes (the committed files changed): the
    live rows are registered under a fixed name for each query and unregistered after it, so
    the same view reads each query's own snapshot (creating the view binds every file: a fixed cost
    per query that a small query could not absorb).
    """

    def __init__(self, root: Path, *, threads: int | None = None) -> None:
        self.root = Path(root).resolve()
        self._db = duckdb.connect(":memory:")
        # GLOBAL: queries run on cursors (one per thread), sessions of their own that would not see a plain SET
        # (queries ran in the machine's local time zone and re-read every Parquet footer)
        self._db.execute("SET GLOBAL TimeZone = 'UTC'")
        if threads:
            self._db.execute(f"SET GLOBAL threads = {int(threads)}")
        self._db.execute("SET GLOBAL parquet_metadata_cache = true")
        # strings leave DuckDB as Arrow large_string, the layout of pandas' own str columns (the
        # conversion to pandas then copies no string data)
        self._db.execute("SET GLOBAL arrow_large_buffer_size = true")
        self._db.execute("SET allowed_directories = $dirs", {"dirs": [str(self.root) + "/"]})
        self._db.execute("SET enable_external_access = false")
        self._db.execute("SET autoinstall_known_extensions = false")
        self._db.execute("SET autoload_known_extensions = false")
        self._db.execute("SET lock_configuration = true")
        self._lock = threading.Lock()
        self._closed = False
        self._local = threading.local()  # .session: this thread's _Session
        self._sessions: weakref.WeakSet[_Session] = weakref.WeakSet()
        self._file_columns: dict[str, frozenset[str]] = {}  # footers of files of another schema
        self._combine: dict[str, dict] | None = None  # pushdown.templates_from, made on first use
        self._trees = _Recent(256)  # statement -> json_serialize_sql text
        self._rewrites = _Recent(256)  # (statement, table) -> pushdown.Rewrite or None
        self._results = _Recent(256)  # ((statement, table), live schema, parameter types) -> (names, types)
        self._histories = _Recent(64)  # (files, their schemas, live schema) -> SELECT over the files

    def query(self, sql: str, params: Mapping[str, Any] | None, sources: Mapping[str, Source],
              info: dict[str, Any] | None = None) -> pa.Table:
        """Run one SELECT over views of `sources`; return its result as an Arrow table. `info`, if
        given, gets "pushdown": whether aggregates ran below the live/history union."""
        check_select(sql)
        bound = _bind(sql, params)
        used = _used(sql, sources)
        session = self._session()
        cur = session.cursor
        try:
            pushed = self._pushed_down(session, sql, bound, used)
            if info is not None:
                info["pushdown"] = pushed is not None
            if pushed is not None:
                rel, names, _ = pushed
                return _utc(rel.to_arrow_table().rename_columns(names))
            for name, source in used.items():
                self._define(session, name, source)
            rel = cur.sql(sql, params=bound) if bound else cur.sql(sql)
            return _utc(rel.to_arrow_table())
        except duckdb.InterruptException:
            raise KeyboardInterrupt from None  # Ctrl-C / kernel interrupt: not a query error
        except duckdb.PermissionException as exc:
            raise ForbiddenQueryError(_one_line(exc)) from None
        except duckdb.Error as exc:
            raise QueryError(_one_line(exc)) from None
        finally:
            session.release()

    def explain(self, sql: str, params: Mapping[str, Any] | None, sources: Mapping[str, Source]) -> str:
        """DuckDB's physical plan for `sql` over `sources`: of the statement `query` would run (with
        its aggregates below the live/history union when they would be)."""
        check_select(sql)
        cur = self._cursor()
        session = _Session(cur)  # a throwaway session on a fresh cursor
        bound = _bind(sql, params)
        used = _used(sql, sources)
        try:
            pushed = self._pushed_down(session, sql, bound, used)
            head = ""
            if pushed is not None:
                sql = pushed[2]
                head = "aggregates computed below the live/history union (pushdown.py), then combined:\n"
            else:
                for name, source in used.items():
                    self._define(session, name, source)
            rows = cur.sql("EXPLAIN " + sql, params=bound or None).fetchall()
            return head + "\n".join(r[1] for r in rows)
        except duckdb.Error as exc:
            raise QueryError(_one_line(exc)) from None
        finally:
            cur.close()

    def statement_tree(self, sql: str) -> dict[str, Any] | None:
        """DuckDB's own parse tree of `sql` (json_serialize_sql), or None when it cannot give one.
        A fresh copy each call (callers may edit it); the text is remembered per statement, as a
        notebook re-runs the same statements (`--every`, dashboards)."""
        text = self._trees.get(sql)
        if text is None:
            cur = self._cursor()
            try:
                text = cur.execute("SELECT json_serialize_sql($q)", {"q": sql}).fetchall()[0][0]
            except (duckdb.Error, IndexError):
                return None
            finally:
                cur.close()
            self._trees.put(sql, text)
        try:
            tree = json.loads(text)
        except ValueError:
            return None
        return None if not isinstance(tree, dict) or tree.get("error") else tree

    def timestamp_ns(self, value: Any, cast: str | None = None) -> int | None:
        """ns since the epoch of `value` as DuckDB compares it with a TIMESTAMPTZ column (UTC session);
        `cast` (one of pruning.TIME_CASTS) is applied first, as a typed literal would be. None if it fails."""
        if cast is not None and cast not in TIME_CASTS:
            return None
        expr = "$v" if cast is None else f"CAST($v AS {cast})"
        cur = self._cursor()
        try:
            row = cur.execute(f"SELECT epoch_ns(CAST({expr} AS TIMESTAMPTZ_NS))", {"v": value}).fetchall()
        except Exception:  # best effort: a value DuckDB cannot take as a time just prunes nothing
            return None
        finally:
            cur.close()
        return row[0][0] if row and isinstance(row[0][0], int) else None

    def keys_since(self, files: list[str], schema: pa.Schema, cols: tuple[str, ...], since_ns: int) -> list[tuple]:
        """(ts ns, *cols) of the rows of `files` from `since_ns` on; timestamps as int ns."""
        if not files:
            return []
        sel = ", ".join(f'epoch_ns("{c}")' if pa.types.is_timestamp(schema.field(c).type) else f'"{c}"' for c in cols)
        rows = self.query(f"SELECT epoch_ns(ts), {sel} FROM read_parquet([{_listed(files)}], union_by_name = true)"
                          f" WHERE epoch_ns(ts) >= {int(since_ns)}", None, {})
        return list(zip(*(c.to_pylist() for c in rows.columns)))

    def fingerprint(self, files: list[str], columns: list[str]) -> tuple[int, int]:
        """(rows, order-independent hash of every column) of `files`: equal for the same rows in any layout."""
        cols = ", ".join(f'"{c}"' for c in columns)
        row = self.query(f"SELECT count(*) AS n, CAST(sum(hash({cols})) AS HUGEINT) AS h"
                         f" FROM read_parquet([{_listed(files)}])", None, {}).to_pylist()[0]
        return row["n"], row["h"] or 0

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._closed:
                raise QueryError("the lake is closed")
            return self._db.cursor()

    def _session(self) -> _Session:
        """This thread's session (made on first use, closed with the view or when the thread ends)."""
        session = getattr(self._local, "session", None)
        if session is None:
            cur = self._cursor()
            session = _Session(cur)
            weakref.finalize(session, cur.close)
            with self._lock:
                self._sessions.add(session)
            self._local.session = session
        elif self._closed:
            raise QueryError("the lake is closed")
        return session

    def _view(self, session: _Session, name: str, body: str) -> None:
        """Temporary view `name` AS `body` on the session's cursor, created only if its text changed."""
        if session.views.get(name) != body:
            session.views.pop(name, None)
            session.cursor.execute(f'CREATE OR REPLACE TEMP VIEW "{name}" AS {body}')
            session.views[name] = body

    def _define(self, session: _Session, name: str, source: Source) -> None:
        history, live = self._parts(session, name, source)
        if history is None:
            body = f"SELECT * FROM {live}"
        elif source.live.num_rows:
            body = f"{history} UNION ALL SELECT {_columns(source)} FROM {live}"
        else:  # no live rows: no union (it would cost DuckDB's Parquet count(*) shortcut)
            body = history
        self._view(session, name, body)

    def _parts(self, session: _Session, name: str, source: Source) -> tuple[str | None, str]:
        """(SELECT over the committed files in the live schema, or None without files; the name the
        live rows are registered under)."""
        live = _live_name(name)
        session.register(live, source.scanned)
        return self._history_of(session.cursor, source), live

    def _history_of(self, cur: duckdb.DuckDBPyConnection, source: Source) -> str | None:
        key = (source.files, source.schemas, source.live.schema)
        history = self._histories.get(key, False)
        if history is False:  # the same files are read by every query until the next commit
            history = self._history(cur, source)
            self._histories.put(key, history)
        return history

    def _history(self, cur: duckdb.DuckDBPyConnection, source: Source) -> str | None:
        names = source.live.schema.names
        cols = _columns(source)
        selects = []
        same, other = by_schema(source)
        plain = [f for f in same if _as_written(f)]
        coded = [f for f in same if not _as_written(f)]
        if plain:  # exchange/symbol from the path, as constants per file: grouping on them costs ~nothing
            selects.append(f"SELECT {cols} FROM read_parquet([{_listed(plain)}], hive_partitioning = true,"
                           " hive_types_autocast = false)")
        if coded:  # the live schema: one scan without union_by_name (it binds and scans ~2x slower)
            selects.append(f"SELECT {cols} FROM read_parquet([{_listed(coded)}], hive_partitioning = false)")
        if other:  # another or an unknown schema: columns matched by name, a missing one reads as NULL
            present = self._columns_of(other)
            cur.register("__cl_types", source.live.schema.empty_table())  # `live` may be narrowed
            try:
                types = [str(d[1]) for d in cur.execute("SELECT * FROM __cl_types").description]
            finally:
                cur.unregister("__cl_types")
            fill = ", ".join(f'"{c}"' if c in present else f'CAST(NULL AS {t}) AS "{c}"' for c, t in zip(names, types))
            selects.append(f"SELECT {fill} FROM read_parquet([{_listed(other)}], hive_partitioning = false,"
                           " union_by_name = true)")
        return " UNION ALL ".join(selects) or None

    def _pushed_down(self, session: _Session, sql: str, bound: dict[str, Any],
                     used: Mapping[str, Source]) -> tuple[duckdb.DuckDBPyRelation, list[str], str] | None:
        """`sql` with its aggregates computed below the live/history union (pushdown.py), bound, not
        run: (the relation, the original's column names, the rewritten statement); None when the
        statement does not have that shape or the rewrite would change its result type."""
        if len(used) != 1:
            return None
        (name, source), = used.items()
        if not source.files or not source.live.num_rows:
            return None
        key = (sql, name)
        plan = self._rewrites.get(key, False)
        if plan is False:
            plan = rewrite(sql, self.statement_tree(sql), {name}, self._deserialize, self._templates())
            self._rewrites.put(key, plan)
        if plan is None:
            return None
        cur = session.cursor
        live = _live_name(name)
        self._view(session, f"__history_{name}", self._history_of(cur, source))
        history = f'"__history_{name}"'
        # the original's result names and types, bound over the live rows: the same for every query
        # of this statement over the same live schema with the same parameter types, so remembered
        signature = (key, source.live.schema, tuple(sorted((k, type(v).__name__) for k, v in bound.items())))
        want = self._results.get(signature)
        if not plan.counts_only or want is None:  # read by the rewrite, or bound for the names and types
            session.register(live, _narrowed(source.scanned, plan.columns))
        # only counted: the live rows' number is known, not scanned
        rewritten = plan.counted(history, source.live.num_rows) if plan.counts_only else plan.sql(history, live)
        try:
            rel = cur.sql(rewritten, params=bound or None)
            if want is None:
                bound_over_live = cur.sql(plan.over(live), params=bound or None)  # bound, not run
                want = (tuple(bound_over_live.columns), tuple(map(str, bound_over_live.types)))
                self._results.put(signature, want)
        except duckdb.Error:  # e.g. ORDER BY a column the rewritten outer query does not select
            log.debug("aggregate pushdown skipped: the rewrite does not bind", exc_info=True)
            return None
        if tuple(map(str, rel.types)) != want[1] or len(rel.columns) != len(want[0]):
            log.debug("aggregate pushdown skipped: result types %s != %s", rel.types, want[1])
            return None  # the caller defines the union view
        return rel, list(want[0]), rewritten

    def _deserialize(self, tree: dict[str, Any]) -> str | None:
        cur = self._cursor()
        try:
            return cur.execute("SELECT json_deserialize_sql($t)", {"t": json.dumps(tree)}).fetchall()[0][0]
        except (duckdb.Error, IndexError):
            return None
        finally:
            cur.close()

    def _templates(self) -> dict[str, dict]:
        if self._combine is None:
            self._combine = templates_from(self.statement_tree)
        return self._combine

    def _columns_of(self, files: list[str]) -> set[str]:
        """The column names found in any of `files` (footers read once per file: files never change)."""
        out: set[str] = set()
        for f in files:
            names = self._file_columns.get(f)
            if names is None:
                try:
                    names = self._file_columns[f] = frozenset(pq.read_schema(f).names)
                except (OSError, pa.ArrowException) as exc:
                    raise QueryError(f"cannot read the schema of {f}: {exc}") from None
            out |= names
        return out

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                for session in list(self._sessions):
                    session.cursor.close()
                self._db.close()


def _narrowed(live: pa.Table, columns: frozenset[str] | None) -> pa.Table:
    """The live rows with only `columns` (all when None): DuckDB's Arrow scan converts every column it
    is given (count(*) over all of them cost a conversion of each)."""
    if columns is None:
        return live
    return live.select([c for c in live.schema.names if c.lower() in columns] or [_cheapest(live.schema)])


def _cheapest(schema: pa.Schema) -> str:
    """A column that costs least to scan (fixed width), for a statement that reads none (count(*))."""
    return next((f.name for f in schema if pa.types.is_primitive(f.type) or pa.types.is_timestamp(f.type)), schema.names[0])


def _live_name(table: str) -> str:
    return f"__live_{table}"


def _columns(source: Source) -> str:
    return ", ".join(f'"{c}"' for c in source.live.schema.names)


def by_schema(source: Source) -> tuple[list[str], list[str]]:
    """The source's files split into those recorded with the live rows' schema and all others."""
    if len(source.schemas) != len(source.files):
        return [], list(source.files)
    want = schema_fingerprint(source.live.schema)
    same = [f for f, s in zip(source.files, source.schemas) if s == want]
    return same, [f for f, s in zip(source.files, source.schemas) if s != want]


def _as_written(path: str) -> bool:
    """Whether a file's exchange=/symbol=/date= directories hold the values unencoded (partitions.encode
    left them as they are), so DuckDB's hive partitioning reads back exactly the stored values."""
    return "%" not in "/".join(path.rsplit("/", 4)[1:4])


def _listed(files: list[str] | tuple[str, ...]) -> str:
    """Paths as a DuckDB list literal body (our own paths; quotes doubled all the same)."""
    return ", ".join("'" + f.replace("'", "''") + "'" for f in files)


class _Recent:
    """A small thread-safe LRU map (the last `size` statements a lake ran)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


@lru_cache(maxsize=256)
def _table_names(sql: str) -> frozenset[str] | None:
    try:  # the parser cannot take $params here: any value will do for finding table names
        return frozenset(duckdb.get_table_names(_PARAM.sub("NULL", sql)))
    except duckdb.Error:
        return None


def tables_in(sql: str) -> set[str] | None:
    """The table names a statement reads, or None when it cannot be parsed (then: all of them)."""
    names = _table_names(sql)
    return None if names is None else set(names)


def _used(sql: str, sources: Mapping[str, Source]) -> Mapping[str, Source]:
    """Only the sources a statement names: defining a view per table costs ~1 ms each."""
    names = tables_in(sql)
    return sources if names is None else {n: s for n, s in sources.items() if n in names}


def _utc(table: pa.Table) -> pa.Table:
    """DuckDB labels UTC 'Etc/UTC'; give results the schema's 'UTC' (a metadata-only cast)."""
    fields = [
        f.with_type(pa.timestamp(f.type.unit, tz="UTC"))
        if pa.types.is_timestamp(f.type) and f.type.tz in ("Etc/UTC", "UTC") else f
        for f in table.schema
    ]
    target = pa.schema(fields, metadata=table.schema.metadata)
    return table if target.equals(table.schema) else table.cast(target)


def check_select(sql: str) -> None:
    """Refuse anything but exactly one SELECT statement."""
    if _selects(sql):
        return


@lru_cache(maxsize=256)
def _selects(sql: str) -> bool:
    """check_select's work; True is remembered per statement (refusals raise, so are never cached)."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(_one_line(exc)) from None
    if len(statements) != 1:
        raise ForbiddenQueryError(f"one SELECT statement per query, got {len(statements)} statements")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise ForbiddenQueryError(f"only SELECT queries may run on the lake, got {kind.name}")
    return True


def _bind(sql: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    names = used_parameters(sql)
    missing = [n for n in names if params is None or n not in params]
    if missing:
        raise QueryError(f"no value for parameter(s) {', '.join('$' + n for n in missing)}")
    return {n: params[n] for n in names} if params else {}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
