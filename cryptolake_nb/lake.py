"""The Lake: one object that collects, stores and queries market data."""
from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Literal, Mapping, Sequence

import pandas as pd
import polars as pl
import pyarrow as pa

from .alerts import Alert, Alerts, Monitor
from .backpressure import MemoryGuard
from .buffer import LiveBuffer, Sealed
from .clock import Clock, SystemClock
from .config import LakeConfig, Settings, lake_settings
from .errors import CollectorError, ConfigError, LakeLockedError, NoActiveLakeError
from .dedup import Deduper, key_columns
from .flush import Flusher
from .journal import Durability, Journal
from .keyed import KeyedScan
from .gaps import GapLog
from .health import FeedEntry, HealthProbe, HealthStats, Monitoring
from .lock import WriterLock
from .compact import Compacted, Compactor
from .explain import QueryPlan, TableScan
from .manifest import FileEntry, Manifest
from .metrics import MetricsServer, render
from .orphans import sweep_orphans
from .retire import Retirer
from .verify import VerifyReport, verify
from .partitions import check_value
from .progress import ProgressBar
from .pruning import Prune, prune_from_tree
from .quarantine import RejectLog
from .querylog import QueryLog
from .sequence import SequenceDetector
from .status_view import HealthView, StatusView, gaps_summary
from .recovery import restore_from_journal
from .tables import TABLES
from .sink import ParquetSink
from .view import LakeView, Source, check_select, tables_in

if TYPE_CHECKING:
    from .collector import Collector
    from .feeds import FeedHealth, FeedSpec
    from .replay import ReplayResult

__all__ = ["Lake", "active_lake"]

log = logging.getLogger(__name__)

Output = Literal["pandas", "polars", "arrow"]
SourceKind = Literal["all", "live", "history"]  # which side of each view a query reads
_ACTIVE: "Lake | None" = None


def active_lake(lake: "Lake | None" = None) -> "Lake":
    """`lake` if given, else the lake `%load_ext cryptolake_nb` (or `Lake.activate`) opened."""
    if lake is not None:
        return lake
    if _ACTIVE is None or _ACTIVE.closed:
        raise NoActiveLakeError("no active lake: run %load_ext cryptolake_nb, Lake(...).activate(), or pass lake=")
    return _ACTIVE


def convert(table: pa.Table, to: Output) -> Any:
    """An Arrow result as pandas, polars or Arrow."""
    if to == "arrow":
        return table
    if to == "pandas":
        return table.to_pandas()
    if to == "polars":
        return pl.from_arrow(table)
    raise ConfigError(f"to must be 'pandas', 'polars' or 'arrow', got {to!r}")


def _to_seal(read: set[str] | None) -> set[str] | None:
    """The tables a statement reading `read` needs sealed (None: all; bookkeeping rows, gaps and
    quarantine, come from sealing every table)."""
    return None if read is None or read & {"gaps", "quarantine"} else read


class Lake:
    """A tick store rooted at a directory: live buffers, Parquet history, one DuckDB view per table.

    >>> lake = Lake("lake")                        # doctest: +SKIP
    >>> lake.subscribe("BINANCE", ["BTC-USDT"]); lake.start()
    >>> lake.sql("SELECT count(*) FROM trades")
    """

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        config: LakeConfig | None = None,
        settings: Settings | None = None,
        clock: Clock | None = None,
        read_only: bool = False,
        monitoring: Monitoring | bool | None = None,
        **overrides: Any,
    ) -> None:
        # defaults < cryptolake.yaml / $CRYPTOLAKE_CONFIG < CRYPTOLAKE_* < root and overrides (config.py)
        self.settings = lake_settings(root, config=config, settings=settings, **overrides)
        self.config = self.settings.lake
        if monitoring is None:
            monitoring = self.settings.monitoring  # Monitoring.from_config reads the section
        self.root = self.config.root.resolve()
        self.read_only = read_only
        if read_only:
            if not self.root.is_dir():
                raise ConfigError(f"no lake at {self.root} to open read-only")
            self._lock = None
        else:
            for other in list(_OPEN):
                if other.root == self.root and not other.closed and not other.read_only:
                    raise LakeLockedError(f"the lake at {self.root} is already open for writing in this process "
                                          f"({other!r}): use that object, or close() it first")
            self.root.mkdir(parents=True, exist_ok=True)
            self._lock = WriterLock(self.root)
        self._journal = None
        try:
            self._open(clock, Monitoring.of(monitoring))
        except BaseException:
            if self._journal is not None:
                self._journal.close()
            if self._lock is not None:
                self._lock.release()
            raise

    def _open(self, clock: Clock | None, monitoring: Monitoring) -> None:
        self._clock = clock or SystemClock()
        self.monitoring = monitoring  # health counters, alerts, metrics (health.py, alerts.py, metrics.py)
        self.health_stats = HealthStats(self._clock, window_s=monitoring.window_s,
                                        rate_window_s=monitoring.rate_window_s) if monitoring.enabled else None
        self._commit_lock = threading.RLock()
        self._manifest = Manifest(self.root, read_only=self.read_only)
        self.swept = {} if self.read_only else sweep_orphans(self.root, self._manifest, list(TABLES))
        self._journal = None if self.read_only or self.config.durability == "none" else Journal(
            self.root / "_journal", durability=Durability(self.config.durability))
        self.rejects = RejectLog(self.root, clock=self._clock, read_only=self.read_only)
        self.gaps = GapLog(self.root, silence_s=self.config.silence_s, clock=self._clock, read_only=self.read_only)
        self.sequences = SequenceDetector(self.gaps.record)  # trade-id holes -> `sequence_break` gaps
        self.feed_health: list[FeedHealth] = []
        self._flusher: Flusher | None = None
        self._view = LakeView(self.root, threads=self.config.duckdb_threads)
        self.dedup = Deduper({n: key_columns(spec) for n, spec in TABLES.items() if spec.dedup_key},
                             self._history_keys, window_s=self.config.dedup_window_s)
        self._buffers: dict[str, LiveBuffer] = {
            name: LiveBuffer(
                name, spec.schema, spec.convert, self._kept_aside, clock=self._clock,
                wake_rows=self.config.max_rows, on_wake=self._wake_flusher, on_sealed=self._on_sealed,
                journal=self._journal.append if self._journal is not None else None, dedup=self.dedup,
                fields=spec.fields,
            )
            for name, spec in TABLES.items()
        }
        self._keyed = {name: KeyedScan(spec.schema) for name, spec in TABLES.items()}  # what DuckDB scans
        sink = ParquetSink(
            self.root, compression_level=self.config.compression_level, row_group_size=self.config.row_group_size
        )
        transforms = {} if self.read_only else {
            n: spec.make_flush_transform(self.root, self.config) for n, spec in TABLES.items() if spec.make_flush_transform
        }
        self.captures = {n: spec.make_capture(self.config) for n, spec in TABLES.items() if spec.make_capture}
        self._flusher = Flusher(self._buffers, sink, self._manifest, self._commit_lock, self.config.policy,
                                clock=self._clock, transforms=transforms)
        self._retirer = Retirer(self.root, clock=self._clock)
        self._compactor = Compactor(self._manifest, sink, self._commit_lock, self._retirer, self._fingerprint,
                                    min_files=self.config.compact_min_files)
        if self.config.autocompact:
            self._flusher.after_flush = self._background_compact
        self.memory = MemoryGuard(self._buffers, self._journal, self.gaps, self.config.memory_cap_bytes,
                                  other=self.dedup.nbytes)
        self._flusher.guard = self.memory
        self.recovered: dict[str, int] = {}  # rows put back from the journal at open
        if self._journal is not None:
            self._flusher.release = self._journal.release
            self.recovered = self._recover()
        self._subscriptions: list[FeedSpec] = []
        self.queries = QueryLog(maxlen=100)  # recent queries: time, rows, files, live rows
        self._collector: Collector | None = None
        self._feeds: list[FeedEntry] = []
        self._health = HealthProbe(self.root, clock=self._clock, stats=self.health_stats, buffers=self._buffers,
                                   files=self._manifest.files, memory=self.memory, flusher=self._flusher, gaps=self.gaps,
                                   feeds=lambda: self._feeds, collector=self._collector_status, disk=monitoring.disk,
                                   silent_s=monitoring.rules.silent_s)
        writer = not self.read_only  # a reader beside a collector must not take its port or send its alerts
        self.alerts = Alerts(monitoring.rules, show=monitoring.show, root=str(self.root),
                             hooks=(monitoring.webhook,) if monitoring.webhook and writer else ())
        self._monitor = Monitor(self.check_alerts, monitoring.interval_s)
        self._metrics: MetricsServer | None = None
        self.closed = False
        if monitoring.metrics_port is not None and writer:
            try:  # before any thread starts: a taken port fails the open cleanly
                self.serve_metrics(monitoring.metrics_port, host=monitoring.metrics_host)
            except ConfigError:
                self.alerts.close()
                raise
        if self.config.autoflush and writer:
            self._flusher.start()
            self._start_monitor()
        _close_at_exit(self)

    # -- ingest ---------------------------------------------------------------------------
    def buffer(self, table: str) -> LiveBuffer:
        """The live buffer of `table` (what cryptofeed callbacks append to)."""
        if self.read_only:
            raise ConfigError(f"the lake at {self.root} is open read-only: it cannot ingest")
        try:
            return self._buffers[table]
        except KeyError:
            raise ConfigError(f"unknown table {table!r}; tables are {sorted(self._buffers)}") from None

    def callbacks(self, channels: Iterable[str] = ("trades",)) -> dict[str, Any]:
        """cryptofeed callbacks for `channels`, for use in any FeedHandler."""
        from .ingest import callback_for

        channels = list(channels)
        skipped = [ch for ch in channels if ch in TABLES and ch not in self.config.tables]
        if skipped:
            raise ConfigError(f"channel(s) {', '.join(skipped)} not stored by this lake: lake.tables is "
                              f"{', '.join(self.config.tables)}")
        return {ch: callback_for(self, ch) for ch in channels}

    def subscribe(self, exchange: str, symbols: Sequence[str], channels: Sequence[str] = ("trades",), *,
                  simulator: Any = None, proxy: Any = None, no_proxy: Any = None, retries: int | None = None,
                  reconnect: Any = None, options: Mapping[str, Any] | None = None) -> "FeedSpec":
        """Add a feed that `start()` will run; returns the validated spec.

        `proxy` ('http://host:port', 'socks5://user:pw@host:port', False for none, True for the
        HTTPS_PROXY/ALL_PROXY/NO_PROXY environment), `no_proxy`, `retries` (reconnection attempts per
        outage, -1 for no limit) and `reconnect` (a `ReconnectPolicy`: backoff, watchdog): see FeedSpec;
        left None, they are the settings' `network` section (by default: the environment's proxy, 10
        retries, ReconnectPolicy()). `options`: keyword arguments for cryptofeed's Feed class
        (`max_depth`, `candle_interval`, `config`, ...), passed through after a check.
        """
        if isinstance(symbols, str):
            symbols = [symbols]
        check_value("exchange", exchange)
        for symbol in symbols:
            check_value("symbol", symbol)  # refused now, not as rejected rows later
        spec = self.settings.feed_spec(exchange, symbols, channels, simulator=simulator, proxy=proxy,
                                       no_proxy=no_proxy, retries=retries, reconnect=reconnect, options=options)
        self.callbacks(spec.channels)  # refuses channels the lake cannot store
        self._subscriptions.append(spec)
        return spec

    def subscribe_configured(self) -> list["FeedSpec"]:
        """Subscribe every feed of the settings' `feeds` section (what `cryptolake collect` runs)."""
        return [self.subscribe(**feed.subscribe_kwargs(self.settings.network)) for feed in self.settings.feeds]

    def start(self) -> None:
        """Run the subscribed feeds on a background thread; cells keep running."""
        from .collector import Collector
        from .feeds import FeedHealth, build_feed

        if not self._subscriptions:
            raise ConfigError("nothing to collect: call lake.subscribe(exchange, symbols, channels) first")
        if self._collector is not None and self._collector.running:
            raise CollectorError("the collector is already running; lake.stop() first")
        specs = list(self._subscriptions)
        self.feed_health = [FeedHealth(s.exchange, on_gap=self.gaps.record, clock=self._clock)  # reconnects -> gaps
                            for s in specs]
        self._feeds = _feed_entries(specs, self.feed_health)
        health = list(self.feed_health)
        self._collector = Collector(lambda: [build_feed(s, self.callbacks(s.channels), health=h)
                                             for s, h in zip(specs, health)])
        self._collector.start()
        self._flusher.start()
        self._start_monitor()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop collecting (within `timeout` s) and flush what is buffered."""
        if self._collector is not None:
            self._collector.stop(timeout)  # kept: status() still shows its last errors
        self.flush()
        self.sequences.flush()  # holes still pending can no longer be filled

    def flush(self) -> list[FileEntry]:
        """Write every buffered row to Parquet now; return the files committed."""
        return self._flusher.flush()

    def replay(self, files: Sequence[str | Path], *, config: Any = None, progress: bool | None = None) -> dict[str, int]:
        """Feed a recorded cryptofeed capture through cryptofeed's parsers into the lake; return the
        rows stored per table (rejected rows are in `lake.rejected()`, duplicates in `lake.dedup.dropped`).
        `progress`: a bar over the capture's lines (default: only in a notebook)."""
        from .replay import replay_capture

        def counts() -> dict[str, int]:
            for b in self._buffers.values():
                b.seal()  # validation happens at seal: count rows stored, not objects received
            dropped = {t: sum(n for (table, _), n in self.dedup.dropped.items() if table == t) for t in self._buffers}
            return {t: b.appended - self.rejects.counts.get(t, 0) - dropped[t] for t, b in self._buffers.items()}

        before = counts()
        files = [files] if isinstance(files, (str, Path)) else list(files)
        desc = "replay " + Path(files[0]).name.split(".")[0] if files else "replay"
        with ProgressBar(desc, unit="line", enabled=progress) as bar:
            result: ReplayResult = replay_capture(files, self.callbacks(self.config.tables), config=config, progress=bar)
        self.last_replay = result
        after = counts()
        return {t: after[t] - before[t] for t in after}

    # -- query ----------------------------------------------------------------------------
    def sources(self, *, exchange: str | None = None, symbols: Sequence[str] | None = None,
                start_ns: int | None = None, end_ns: int | None = None,
                tables: Iterable[str] | None = None, source: SourceKind = "all",
                filters: Mapping[str, Prune] | None = None) -> dict[str, Source]:
        """One consistent snapshot of `tables` (all by default): committed files and live rows,
        each row in exactly one. `source` "history" leaves out live rows, "live" leaves out files;
        `filters` adds per-table file filters (pruning.Prune) to the keyword ones."""
        base = Prune.of(exchange, symbols, start_ns, end_ns)
        snap = self._snapshot(tables, source)  # first: sealing is what records gaps and rejects
        out = {"quarantine": Source((), self.rejects.table()), "gaps": Source((), self.gaps.table())}
        for name, (entries, sealed) in snap.items():
            keep = base & (filters or {}).get(name, Prune())
            out[name] = self._source(name, [e for e in entries if keep.keeps(e)], sealed)
        return out

    def _source(self, name: str, entries: Sequence[FileEntry], sealed: list[Sealed]) -> Source:
        prefix = str(self.root) + "/"  # joined as strings: pathlib cost ~1 us per file on every query
        live = pa.Table.from_batches([s.batch for s in sealed], schema=self._buffers[name].schema)
        return Source(tuple(prefix + e.path for e in entries), live, tuple(e.schema for e in entries),
                      tuple(e.rows for e in entries), partial(self._keyed[name].table, sealed) if sealed else None)

    @contextmanager
    def reading(self, **snapshot: Any) -> Iterator[dict[str, Source]]:
        """`sources(**snapshot)` for reading the files directly: none of them is deleted (by
        compaction) before the block ends."""
        ticket = self._retirer.begin_query()
        try:
            yield self.sources(**snapshot)
        finally:
            self._retirer.end_query(ticket)

    def _snapshot(self, tables: Iterable[str] | None,
                  source: SourceKind) -> dict[str, tuple[tuple[FileEntry, ...], list[Sealed]]]:
        """(committed files, sealed live batches) per table, taken under the commit lock: the exactly-once point."""
        if source not in ("all", "live", "history"):
            raise ConfigError(f"source must be 'all', 'live' or 'history', got {source!r}")
        if self.read_only:
            self._manifest.refresh()  # follow the writer's commits
        wanted = self._buffers if tables is None else {t: b for t, b in self._buffers.items() if t in set(tables)}
        with self._commit_lock:
            return {
                name: (() if source == "live" else self._manifest.files(name),
                       [] if source == "history" else buf.snapshot())
                for name, buf in wanted.items()
            }

    def query_arrow(self, query: str, params: Mapping[str, Any] | None = None, *, source: SourceKind = "all",
                    **prune: Any) -> pa.Table:
        """Like `sql` with an Arrow result; `prune` (exchange, symbols, start_ns, end_ns) skips
        committed files the manifest shows cannot match, before DuckDB opens any (so do simple
        exchange/symbol/ts conditions in the statement's own WHERE: see pruning.py)."""
        return self.query_timed(query, params, source=source, **prune)[0]

    def query_timed(self, query: str, params: Mapping[str, Any] | None = None, *, source: SourceKind = "all",
                    **prune: Any) -> tuple[pa.Table, dict[str, Any]]:
        """`query_arrow` and the query's record in `lake.queries` (ms, duckdb_ms, rows, files, live_rows)."""
        started = time.perf_counter()
        check_select(query)  # refused before anything is sealed or snapshotted
        ticket = self._retirer.begin_query()
        try:
            read = tables_in(query)
            names = _to_seal(read)
            filters = self._sql_filters(query, params, names, source)
            sources = self.sources(tables=names, source=source, filters=filters, **prune)  # seal only what is read
            return self._recorded(query, params, sources, read, source, started)
        finally:
            self._retirer.end_query(ticket)

    def query_each(self, queries: Sequence[str], params: Mapping[str, Any] | None = None, *,
                   source: SourceKind = "all", **prune: Any) -> list[pa.Table]:
        """Several SELECTs over one snapshot, each seeing the same live rows and committed files (e.g.
        the two sides of a join, read apart). `prune` must hold for every statement: their own WHERE
        clauses skip no files here (what one statement's WHERE rules out another may read)."""
        for query in queries:
            check_select(query)
        reads = [tables_in(q) for q in queries]
        ticket = self._retirer.begin_query()
        try:
            names = None if any(r is None for r in reads) else _to_seal(set().union(*reads))
            sources = self.sources(tables=names, source=source, **prune)
            return [self._recorded(q, params, sources, read, source, time.perf_counter())[0]
                    for q, read in zip(queries, reads)]
        finally:
            self._retirer.end_query(ticket)

    def _recorded(self, query: str, params: Mapping[str, Any] | None, sources: Mapping[str, Source],
                  read: set[str] | None, source: SourceKind, started: float) -> tuple[pa.Table, dict[str, Any]]:
        """Run `query` over `sources` and keep its record in `lake.queries` (ms since `started`)."""
        engine_started = time.perf_counter()
        info: dict[str, Any] = {}
        result = self._view.query(query, params, sources, info)
        duckdb_ms = (time.perf_counter() - engine_started) * 1e3
        entry = self.queries.record(query, (time.perf_counter() - started) * 1e3, result.num_rows, sources, read)
        entry.update(duckdb_ms=duckdb_ms, source=source, **info)
        return result, entry

    def _sql_filters(self, query: str, params: Mapping[str, Any] | None, names: set[str] | None,
                     source: SourceKind) -> dict[str, Prune]:
        """File filters implied by the statement's own WHERE clauses (parsed only when that can matter)."""
        if source == "live" or "where" not in query.lower():
            return {}
        candidates = [t for t in (self._buffers if names is None else names)
                      if t in self._buffers and self._manifest.files(t)]
        if not candidates:
            return {}
        return prune_from_tree(self._view.statement_tree(query), candidates, params, self._view.timestamp_ns)

    def sql(self, query: str, params: Mapping[str, Any] | None = None, to: Output = "pandas", *,
            source: SourceKind = "all") -> Any:
        """Run one SELECT over the lake's views (`trades`, ...); `$name` binds params[name];
        `source="live"` or `"history"` reads only the live buffer or only committed files."""
        return convert(self.query_arrow(query, params, source=source), to)

    def explain(self, query: str, params: Mapping[str, Any] | None = None, *, source: SourceKind = "all",
                **prune: Any) -> QueryPlan:
        """Without running `query`: per table it reads, the partitions, files and rows that pruning
        keeps of those available (and the live rows), with DuckDB's plan."""
        check_select(query)
        read = tables_in(query)
        names = _to_seal(read)
        filters = self._sql_filters(query, params, names, source)
        base = Prune.of(**prune)
        scans, sources = [], {"quarantine": Source((), self.rejects.table()), "gaps": Source((), self.gaps.table())}
        for name, (entries, sealed) in self._snapshot(names, source).items():
            keep = base & filters.get(name, Prune())
            kept = [e for e in entries if keep.keeps(e)]
            sources[name] = self._source(name, kept, sealed)
            if read is None or name in read:
                scans.append(TableScan.of(name, keep.describe(), kept, entries, sources[name].live.num_rows))
        ticket = self._retirer.begin_query()
        try:
            plan = self._view.explain(query, params, sources)
        finally:
            self._retirer.end_query(ticket)
        return QueryPlan(query, source, tuple(scans), plan)

    # -- quant helpers (docs/helpers.md): each is the module function with lake=self ----------
    def vwap(self, symbols: str | Sequence[str], *args: Any, **kwargs: Any) -> Any:
        """See `cryptolake_nb.vwap`."""
        from .analytics import vwap

        return vwap(symbols, *args, lake=self, **kwargs)

    def ohlc(self, symbols: str | Sequence[str], interval: Any = "1min", **kwargs: Any) -> Any:
        """See `cryptolake_nb.ohlc`."""
        from .analytics import ohlc

        return ohlc(symbols, interval, lake=self, **kwargs)

    def twap(self, symbols: str | Sequence[str], *args: Any, **kwargs: Any) -> Any:
        """See `cryptolake_nb.twap`."""
        from .analytics import twap

        return twap(symbols, *args, lake=self, **kwargs)

    def returns(self, symbols: str | Sequence[str], *args: Any, **kwargs: Any) -> Any:
        """See `cryptolake_nb.returns`."""
        from .analytics import returns

        return returns(symbols, *args, lake=self, **kwargs)

    def realized_volatility(self, symbols: str | Sequence[str], *args: Any, **kwargs: Any) -> Any:
        """See `cryptolake_nb.realized_volatility`."""
        from .analytics import realized_volatility

        return realized_volatility(symbols, *args, lake=self, **kwargs)

    def spread(self, symbols: str | Sequence[str], *args: Any, **kwargs: Any) -> Any:
        """See `cryptolake_nb.spread`."""
        from .quotes import spread

        return spread(symbols, *args, lake=self, **kwargs)

    def mid(self, symbols: str | Sequence[str], *args: Any, **kwargs: Any) -> Any:
        """See `cryptolake_nb.mid`."""
        from .quotes import mid

        return mid(symbols, *args, lake=self, **kwargs)

    def trade_imbalance(self, symbols: str | Sequence[str], *args: Any, **kwargs: Any) -> Any:
        """See `cryptolake_nb.trade_imbalance`."""
        from .flow import trade_imbalance

        return trade_imbalance(symbols, *args, lake=self, **kwargs)

    def volume_profile(self, symbols: str | Sequence[str], *args: Any, **kwargs: Any) -> Any:
        """See `cryptolake_nb.volume_profile`."""
        from .flow import volume_profile

        return volume_profile(symbols, *args, lake=self, **kwargs)

    def asof_join(self, left: Any, right: Any, *args: Any, **kwargs: Any) -> Any:
        """See `cryptolake_nb.asof_join`."""
        from .asof import asof_join

        return asof_join(left, right, *args, lake=self, **kwargs)

    def resample(self, data: Any, interval: Any, *args: Any, **kwargs: Any) -> Any:
        """See `cryptolake_nb.resample`."""
        from .resample import resample

        return resample(data, interval, *args, lake=self, **kwargs)

    def compact(self, tables: Sequence[str] | None = None, *, progress: bool | None = None) -> list[Compacted]:
        """Merge each partition's small files into large ones (lossless, checked); see compact.py.
        `progress`: a bar over the partitions to merge (default: only in a notebook)."""
        if self.read_only:
            raise ConfigError("a read-only lake cannot compact")
        with ProgressBar("compact", unit="partition", enabled=progress) as bar:
            done = self._compactor.compact(list(tables) if tables else None, progress=bar)
        self._retirer.purge()
        return done

    def _history_keys(self, table: str, exchange: str, symbol: str, cols: tuple[str, ...], since_ns: int) -> list[tuple]:
        """(ts, *key) of committed rows of one stream from `since_ns` on (no buffer, no commit lock)."""
        files = [str(self.root / e.path) for e in self._manifest.files(table)
                 if e.exchange == exchange and e.symbol == symbol and e.max_ts >= since_ns]
        return self._view.keys_since(files, TABLES[table].schema, cols, since_ns)

    def _recover(self) -> dict[str, int]:
        """Put journaled rows that no commit holds back into the buffers; account for lost tails."""
        return restore_from_journal(self._journal, self._manifest, self._buffers, self.gaps, self.root)

    def _background_compact(self, tables: list[str]) -> None:
        """After a background flush: merge small files where a partition has enough of them."""
        if any(self._compactor.candidates(t) for t in tables):
            self._compactor.compact(tables)
        self._retirer.purge()

    def verify(self) -> VerifyReport:
        """Check every committed file (size, checksum, footer, rows, pages); move bad ones out of the query path."""
        if self.read_only:
            raise ConfigError("a read-only lake cannot verify (it would move files)")
        return verify(self.root, self._manifest, self._commit_lock, list(self._buffers))

    def _fingerprint(self, table: str, entries: list[FileEntry]) -> tuple[int, int]:
        """(rows, order-independent hash of every column) of committed files, computed by DuckDB."""
        return self._view.fingerprint([str(self.root / e.path) for e in entries], TABLES[table].schema.names)

    def book_at(self, symbol: str, ts: Any, depth: int = 10, **kwargs: Any) -> Any:
        """See `cryptolake_nb.book_at`."""
        from .books import book_at

        return book_at(symbol, ts, depth, lake=self, **kwargs)

    def top_of_book(self, symbol: str, interval: Any = "1s", **kwargs: Any) -> Any:
        """See `cryptolake_nb.top_of_book`."""
        from .books import top_of_book

        return top_of_book(symbol, interval, lake=self, **kwargs)

    def depth(self, symbol: str, ts: Any, pct: float = 1.0, **kwargs: Any) -> Any:
        """See `cryptolake_nb.depth`."""
        from .books import depth

        return depth(symbol, ts, pct, lake=self, **kwargs)

    def compare_candles(self, symbol: str, **kwargs: Any) -> Any:
        """See `cryptolake_nb.compare_candles`."""
        from .candles import compare_candles

        return compare_candles(symbol, lake=self, **kwargs)

    def committed_files(self, table: str) -> tuple[FileEntry, ...]:
        """The committed files of `table` with what the manifest knows of each (for pruning)."""
        return self._manifest.files(table)

    def rejected(self) -> pd.DataFrame:
        """Rows kept aside by validation, with the reason and raw values."""
        return self.rejects.frame()

    # -- health, alerts, metrics (health.py, alerts.py, metrics.py) -------------------------
    def health(self) -> HealthView:
        """Per feed: state, messages/s, lag (receipt - exchange time: p50/p99/max over the last minute),
        reconnects, open gap; per table: rows and bytes buffered, files and bytes committed; memory,
        flush latency (last, p50/p99 of recent flushes), gaps (open/total), disk free, alerts firing.
        A dict (HTML in notebooks); computed from counters, it never seals, queries or writes."""
        return HealthView({**self._health.report(), "alerts": self.alerts.summary()})

    def check_alerts(self) -> list[Alert]:
        """Evaluate the alert conditions now (the monitor thread does it every `monitoring.interval_s`);
        returns the alerts that fired or resolved."""
        return self.alerts.evaluate(self._health.report())

    def serve_metrics(self, port: int = 0, *, host: str = "127.0.0.1") -> tuple[str, int]:
        """Serve Prometheus metrics at http://host:port/metrics (loopback by default; port 0: any free
        port) until `stop_metrics()` or `close()`; returns the bound (host, port)."""
        if self._metrics is not None:
            if port not in (0, self._metrics.address[1]) or host != self._metrics.host:  # type: ignore[index]
                raise ConfigError(f"metrics are already served at {self._metrics.url}; stop_metrics() first")
            return self._metrics.address  # type: ignore[return-value]
        server = MetricsServer(lambda: render(self._health.report(), self.alerts.summary()), host=host, port=port)
        address = server.start()
        self._metrics = server
        return address

    def stop_metrics(self) -> None:
        """Stop serving metrics (nothing if not serving)."""
        server, self._metrics = self._metrics, None
        if server is not None:
            server.stop()

    def _start_monitor(self) -> None:
        if self.monitoring.enabled and not self.read_only:
            self._monitor.start()

    def _collector_status(self) -> dict[str, Any]:
        if self._collector is None:
            return {"state": "stopped", "errors": []}
        return self._collector.status()

    # -- lifecycle ------------------------------------------------------------------------
    def status(self, recent_queries: int = 10) -> StatusView:
        """Collector state and errors, buffered rows, committed files, flush health, gaps, recent queries,
        and `health()` under "health" (a dict; HTML in notebooks)."""
        collector = self._collector_status()
        tables = {}
        for name, buf in self._buffers.items():
            files = self._manifest.files(name)
            tables[name] = {
                **{f"buffer_{k}": v for k, v in buf.stats().items()},
                "files": len(files), "rows_committed": sum(e.rows for e in files),
                "bytes_committed": sum(e.bytes for e in files), "rejected": self.rejects.counts.get(name, 0),
            }
        f = self._flusher
        return StatusView({
            "root": str(self.root), "collector": collector, "feeds": [h.status() for h in self.feed_health], "subscriptions": [repr(s) for s in self._subscriptions],
            "tables": tables,
            "rejected": {f"{t}/{ex}": n for (t, ex), n in sorted(self.rejects.by_source.items())},
            "memory": self.memory.stats(),
            "flush": {"flushes": f.flushes, "rows": f.rows_flushed, "last_flush_s": f.last_flush_s, "last_error": f.last_error},
            "gaps": gaps_summary(self.gaps.table()), "queries": self.queries.summary(recent_queries),
            "health": self.health(),
        })

    def activate(self) -> "Lake":
        """Make this the lake that module-level helpers (`cryptolake_nb.vwap`, ...) use."""
        global _ACTIVE
        _ACTIVE = self
        return self

    def close(self) -> None:
        """Stop collecting, flush, and release DuckDB; the lake on disk stays."""
        global _ACTIVE
        if self.closed:
            return
        try:
            if not self.read_only:
                self.stop()
        finally:
            self._monitor.stop()
            self.stop_metrics()
            self.alerts.close()
            self._flusher.stop()
            self._retirer.purge(force=True)
            self._view.close()
            if self._journal is not None:
                self._journal.close()
            if self._lock is not None:
                self._lock.release()
            self.closed = True
            if _ACTIVE is self:
                _ACTIVE = None

    def _on_sealed(self, table: str, batch: pa.RecordBatch) -> None:
        if self.health_stats is not None:
            self.health_stats.observe(table, batch)
        with self.gaps.batch():  # one append for all the gaps a sealed batch shows
            self.gaps.observe(table, batch)
            self.sequences.observe(table, batch)

    def _kept_aside(self, rejects: list) -> None:
        self.rejects.add(rejects)
        self.gaps.quarantined(rejects)

    def _wake_flusher(self) -> None:
        if self._flusher is not None:
            self._flusher.wake()

    def __enter__(self) -> "Lake":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Lake({str(self.root)!r})"


def _feed_entries(specs: Sequence["FeedSpec"], health: Sequence["FeedHealth"]) -> list[FeedEntry]:
    """One entry per running feed, labelled by exchange (a second feed of an exchange gets '#2')."""
    seen: dict[str, int] = {}
    out = []
    for spec, h in zip(specs, health):
        seen[spec.exchange] = seen.get(spec.exchange, 0) + 1
        name = spec.exchange if seen[spec.exchange] == 1 else f"{spec.exchange}#{seen[spec.exchange]}"
        out.append(FeedEntry(name, spec.exchange, spec.channels, h))
    return out


_OPEN: "weakref.WeakSet[Lake]" = weakref.WeakSet()


def _close_at_exit(lake: Lake) -> None:
    _OPEN.add(lake)


@atexit.register
def _close_all() -> None:
    for lake in list(_OPEN):
        try:
            lake.close()
        except Exception:
            log.exception("could not close %r at exit", lake)
