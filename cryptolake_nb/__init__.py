"""cryptolake_nb: a tick store in the Jupyter kernel (cryptofeed -> Arrow -> Parquet -> DuckDB)."""
from __future__ import annotations

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())  # never Python's last-resort stderr in cells

from .alerts import Alert, AlertRules, AlertWarning
from .analytics import ohlc, realized_volatility, returns, twap, vwap
from .asof import asof_join
from .books import book_at, depth, top_of_book
from .candles import compare_candles
from .config import LakeConfig, Settings, load_settings
from .errors import (
    CollectorError,
    ConfigError,
    CryptolakeError,
    ForbiddenQueryError,
    JournalError,
    LakeLockedError,
    ManifestError,
    NoActiveLakeError,
    ProxyError,
    QueryError,
    ReplayError,
    SchemaError,
    SimulatorError,
    StorageError,
    SymbolError,
)
from .flow import trade_imbalance, volume_profile
from .health import Monitoring
from .ingest import TradeLake
from .lake import Lake, active_lake
from .live_chart import LiveChart
from .plots import plot_book, plot_line, plot_ohlc
from .quotes import mid, spread
from .resample import resample

__all__ = [
    "Alert",
    "AlertRules",
    "AlertWarning",
    "CollectorError",
    "ConfigError",
    "CryptolakeError",
    "ForbiddenQueryError",
    "JournalError",
    "Lake",
    "LakeConfig",
    "LakeLockedError",
    "LiveChart",
    "ManifestError",
    "Monitoring",
    "NoActiveLakeError",
    "ProxyError",
    "QueryError",
    "ReplayError",
    "SchemaError",
    "Settings",
    "SimulatorError",
    "StorageError",
    "SymbolError",
    "TradeLake",
    "active_lake",
    "asof_join",
    "book_at",
    "compare_candles",
    "depth",
    "load_ipython_extension",
    "load_settings",
    "mid",
    "ohlc",
    "plot_book",
    "plot_line",
    "plot_ohlc",
    "realized_volatility",
    "resample",
    "returns",
    "spread",
    "top_of_book",
    "trade_imbalance",
    "twap",
    "unload_ipython_extension",
    "volume_profile",
    "vwap",
]


def load_ipython_extension(ipython) -> None:  # noqa: ANN001
    """`%load_ext cryptolake_nb`: open the active lake and register the magics."""
    from .extension import load

    load(ipython)


def unload_ipython_extension(ipython) -> None:  # noqa: ANN001
    """`%unload_ext cryptolake_nb`: stop the collector, close the lake, drop the magics."""
    from .extension import unload

    unload(ipython)
