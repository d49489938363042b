"""Every error cryptolake_nb raises, in one tree.

    CryptolakeError
    ├── ConfigError (ValueError)          a configuration or argument value is invalid
    │   └── SymbolError                   a partition value cannot become a safe path
    ├── SchemaError (ValueError)          rows do not fit a table's Arrow schema
    ├── StorageError (OSError)            the lake could not write or read its files
    │   ├── ManifestError                 the manifest is missing, torn or inconsistent
    │   ├── LakeLockedError               another writer holds the lake
    │   └── JournalError                  the journal could not write, sync or lock its segments
    ├── QueryError                        a user query was refused or failed in DuckDB
    │   └── ForbiddenQueryError           a statement other than one SELECT, or file access
    ├── CollectorError (RuntimeError)     the collector thread could not start, stop or run
    │   └── ProxyError                    a proxy was unreachable or refused a connection
    ├── SimulatorError (RuntimeError)     the loopback exchange could not start or serve
    ├── ReplayError                       a capture could not be replayed
    └── NoActiveLakeError (RuntimeError)  a module helper was called before a lake was opened
"""
from __future__ import annotations

__all__ = [
    "CollectorError",
    "ConfigError",
    "CryptolakeError",
    "ForbiddenQueryError",
    "JournalError",
    "LakeLockedError",
    "ManifestError",
    "NoActiveLakeError",
    "ProxyError",
    "QueryError",
    "ReplayError",
    "SchemaError",
    "SimulatorError",
    "StorageError",
    "SymbolError",
]


class CryptolakeError(Exception):
    """Base class for every error cryptolake_nb raises."""


class ConfigError(CryptolakeError, ValueError):
    """A configuration or argument value is invalid."""


class SymbolError(ConfigError):
    """A partition value (exchange or symbol) cannot be stored as a safe path."""


class SchemaError(CryptolakeError, ValueError):
    """Rows do not fit a table's Arrow schema."""


class StorageError(CryptolakeError, OSError):
    """The lake could not write or read its files."""


class JournalError(StorageError):
    """The journal could not write, sync or lock its segments (it stays consistent)."""


class ManifestError(StorageError):
    """The manifest is missing, torn or inconsistent with the files."""


class LakeLockedError(StorageError):
    """Another writer (process or Lake object) already holds the lake; open it read-only."""


class QueryError(CryptolakeError):
    """A user query was refused or failed inside DuckDB."""


class ForbiddenQueryError(QueryError):
    """A query tried something other than one read-only SELECT over the lake."""


class CollectorError(CryptolakeError, RuntimeError):
    """The collector thread could not start, stop or keep running."""


class ProxyError(CollectorError):
    """A proxy was unreachable or refused a connection (its URL is shown without credentials)."""


class SimulatorError(CryptolakeError, RuntimeError):
    """The loopback exchange simulator could not start or serve."""


class ReplayError(CryptolakeError):
    """A recorded capture could not be replayed into the lake."""


class NoActiveLakeError(CryptolakeError, RuntimeError):
    """A module-level helper was called before any lake was opened."""
