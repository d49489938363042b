"""The configuration: one pydantic-settings model, `Settings`, and its `lake:` section, `LakeConfig`.

    defaults  <  YAML file  <  CRYPTOLAKE_* environment  <  arguments

`load_settings(path=None, **sections)` reads them in that order (config_sources.py says which file
and how variables are spelled) and validates everything at once: an invalid or unknown value
raises one ConfigError naming each field by its dotted path, the value, where it came from and
what is allowed. `Lake(root, **lake_fields)` and `%load_ext cryptolake_nb` load the same way;
docs/configuration.md is generated from these models (config_doc.py).
"""
from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from .config_errors import config_error, problems
from .config_feeds import FeedSettings
from .config_sections import Bytes, MonitoringSettings, NetworkSettings, ReconnectSettings, Section, StrList, \
    bytes_allowed, inside_settings
from .config_sources import CONFIG_ENV, CONFIG_FILE, ENV_PREFIX, ROOT_ENV, EnvSource, LoadRequest, YamlSource
from .errors import ConfigError
from .flush import FlushPolicy
from .tables import ORDER, TABLES

__all__ = ["CONFIG_ENV", "CONFIG_FILE", "DEFAULT_ROOT", "ENV_PREFIX", "ROOT_ENV", "LakeConfig", "Settings",
           "lake_settings", "load_settings"]

DEFAULT_ROOT = "lake"

_REQUEST: ContextVar[LoadRequest | None] = ContextVar("cryptolake_load_request", default=None)


class LakeConfig(Section):
    """Where the lake lives, what it stores, how its buffers flush and its files are written.

    A buffer flushes when it holds `max_rows` rows or about `max_bytes` bytes, or its oldest row
    is `flush_interval` seconds old.
    """

    section: ClassVar[str] = "lake"

    root: Path = Field(Path(DEFAULT_ROOT), description="The lake's directory, created if missing. Also "
                                                       "CRYPTOLAKE_ROOT.",
                       json_schema_extra={"allowed": "a directory path; relative: to the working directory (in a "
                                                     "file: to the file's directory); ~ is expanded"})
    tables: StrList = Field(ORDER, min_length=1, description="The tables this lake stores; a feed channel or a "
                                                             "replayed message of another table is not stored.",
                            json_schema_extra={"allowed": "a list of " + ", ".join(ORDER) + " (or 'a,b'), not empty"})
    max_rows: int = Field(500_000, ge=1, description="A table's buffer flushes at this many rows.")
    max_bytes: Bytes = Field(256 * 2**20, ge=1, description="A table's buffer flushes at about this many bytes.",
                             json_schema_extra={"allowed": bytes_allowed(">= 1")})
    memory_cap_bytes: Bytes = Field(1024 * 2**20, ge=1, description="All live buffers together: past it every buffer "
                                                                    "flushes early, then batches spill to the journal.",
                                    json_schema_extra={"allowed": bytes_allowed(">= 1")})
    flush_interval: float = Field(10.0, gt=0, description="Seconds the oldest buffered row may wait for its flush.")
    compression_level: int = Field(3, ge=1, le=22, description="ZSTD level of the Parquet files.")
    row_group_size: int = Field(1_000_000, ge=1_000, description="Rows per Parquet row group, at most.")
    autoflush: bool = Field(True, description="Flush on a background thread by the rules above; false: only "
                                              "`lake.flush()` and `lake.stop()` write files.")
    durability: Literal["none", "batch", "strict"] = Field(
        "batch", description="The journal of unflushed rows: batch survives kill -9, strict (fsync) survives power "
                             "loss, none keeps no journal.")
    duckdb_threads: Optional[int] = Field(None, ge=1, description="DuckDB's worker threads; null: DuckDB's default "
                                                                  "(the CPU count).")
    dedup_window_s: float = Field(600.0, ge=0, description="Natural keys are remembered this long (exchange time) to "
                                                           "drop repeated rows, across reconnects and restarts.")
    silence_s: float = Field(60.0, gt=0, description="A stream with no message for this long gets a `silence` row "
                                                     "in `gaps`.")
    autocompact: bool = Field(True, description="Merge a partition's small files in the background after flushes.")
    compact_min_files: int = Field(8, ge=2, description="A partition with this many small files is worth merging.")
    book_depth: int = Field(50, ge=1, description="Order-book levels a side kept exact in storage and served by "
                                                  "`book_at`, `top_of_book`, `depth`.")
    book_snapshot_interval: float = Field(60.0, gt=0, description="Seconds of data time between the full books "
                                                                  "(checkpoints) written into the book tables.")

    @field_validator("root", mode="before")
    @classmethod
    def _root(cls, value: Any) -> Any:
        if isinstance(value, (str, os.PathLike)):
            text = os.fspath(value)
            if not str(text).strip():
                raise ValueError("must be a directory path, not empty")
            return Path(text).expanduser()
        return value

    @field_validator("tables")
    @classmethod
    def _registered(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [t for t in value if t not in TABLES]
        if unknown:
            raise ValueError(f"unknown table(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(ORDER)}")
        return tuple(dict.fromkeys(value))

    @property
    def policy(self) -> FlushPolicy:
        return FlushPolicy(self.max_rows, self.max_bytes, self.flush_interval)

    @classmethod
    def load(cls, root: str | os.PathLike | None = None, **overrides: Any) -> "LakeConfig":
        """The `lake` section: defaults < YAML < environment (CRYPTOLAKE_ROOT too) < `root` and `overrides`."""
        return lake_settings(root, **overrides).lake


class Settings(BaseSettings):
    """Everything a lake and its collector are configured with (see docs/configuration.md)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False,
                                      env_ignore_empty=True, env_parse_none_str="null", extra="forbid", frozen=True,
                                      allow_inf_nan=False)

    lake: LakeConfig = Field(default_factory=LakeConfig, description="The store.")
    feeds: tuple[FeedSettings, ...] = Field((), description="What `cryptolake collect` (and "
                                                            "`lake.subscribe_configured()`) subscribes.")
    network: NetworkSettings = Field(default_factory=NetworkSettings, description="Connections of every feed.")
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings, description="Health, alerts, metrics.")
    cryptofeed: dict[str, Any] = Field(default_factory=dict, repr=False,
                                       description="cryptofeed's own configuration (what its config.yaml holds: API "
                                                   "keys per exchange, ignore_invalid_instruments, ...), given to "
                                                   "every feed as `config=`. `uvloop` and `log` are the lake's.",
                                       json_schema_extra={"allowed": "a mapping (cryptofeed's configuration keys)"})

    def __init__(self, **values: Any) -> None:
        request = _REQUEST.get() or LoadRequest()
        request.init_data = dict(values)
        tokens = _REQUEST.set(request), inside_settings.set(True)
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise config_error(Settings, exc, request.origin, context=request.sources()) from None
        except SettingsError as exc:
            raise _env_error(exc, request) from None
        finally:
            inside_settings.reset(tokens[1])
            _REQUEST.reset(tokens[0])
        lines = self._cross_checks(request)
        if lines:
            raise problems(lines, request.sources())

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        request = _REQUEST.get() or LoadRequest()
        return init_settings, EnvSource(settings_cls, request), YamlSource(settings_cls, request)  # first wins

    @field_validator("cryptofeed")
    @classmethod
    def _cryptofeed(cls, value: dict[str, Any]) -> dict[str, Any]:
        from .feeds import check_cryptofeed_config

        return check_cryptofeed_config(value)

    def _cross_checks(self, request: LoadRequest) -> list[str]:
        """What involves two sections: feed channels the lake does not store, backoff bounds after overrides."""
        lines = []
        for i, feed in enumerate(self.feeds):
            missing = [c for c in feed.channels if c not in self.lake.tables]
            if missing:
                path = ("feeds", i, "channels")
                lines.append(f"feeds[{i}].channels = {list(feed.channels)!r}{request.origin(path)}: "
                             f"{', '.join(missing)} not in lake.tables ({', '.join(self.lake.tables)})")
        checks = [("network.reconnect", ("network", "reconnect"), self.network.reconnect)]
        for i, feed in enumerate(self.feeds):
            if feed.reconnect is not None:
                merged = {**self.network.reconnect.model_dump(), **feed.reconnect.model_dump(include=feed.reconnect.model_fields_set)}
                checks.append((f"feeds[{i}].reconnect", ("feeds", i, "reconnect"), ReconnectSettings(**merged)))
        for name, path, reconnect in checks:
            if reconnect.max_delay < reconnect.initial_delay:
                lines.append(f"{name}.max_delay = {reconnect.max_delay!r}{request.origin(path + ('max_delay',))}: "
                             f"must be at least {name}.initial_delay ({reconnect.initial_delay!r})")
        return lines

    def feed_spec(self, exchange: str, symbols: Any, channels: Any = ("trades",), *, simulator: Any = None,
                  proxy: Any = None, no_proxy: Any = None, retries: int | None = None, reconnect: Any = None,
                  options: Any = None, connect_timeout: float | None = None, rest_timeout: float | None = None) -> Any:
        """A validated `FeedSpec`; what is None comes from `network`, and the top-level `cryptofeed`
        mapping is the base of the feed's cryptofeed `config`."""
        from .feeds import FeedSpec

        net = self.network
        options = dict(options or {})
        if self.cryptofeed:
            options["config"] = {**self.cryptofeed, **(options.get("config") or {})}
        return FeedSpec(exchange=exchange, symbols=tuple([symbols] if isinstance(symbols, str) else symbols),
                        channels=tuple([channels] if isinstance(channels, str) else channels), simulator=simulator,
                        proxy=net.proxy if proxy is None else proxy,
                        no_proxy=net.no_proxy if no_proxy is None else no_proxy,
                        retries=net.retries if retries is None else retries,
                        reconnect=net.reconnect.policy() if reconnect is None else reconnect, options=options,
                        connect_timeout=net.connect_timeout_s if connect_timeout is None else connect_timeout,
                        rest_timeout=net.rest_timeout_s if rest_timeout is None else rest_timeout)


def _env_error(exc: SettingsError, request: LoadRequest) -> ConfigError:
    """pydantic-settings could not decode an environment variable (JSON for a list or mapping)."""
    cause = exc.__cause__
    while cause is not None and cause.__cause__ is not None and not str(cause):
        cause = cause.__cause__
    field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else ""
    names = sorted(k.upper() for k in request.env or {} if k.upper().startswith(ENV_PREFIX + field.upper()))
    where = ", ".join(names) or f"{ENV_PREFIX}{field.upper()}"
    return problems([f"{field}: environment variable {where} is not valid JSON ({cause}); lists and mappings are "
                     f"written as JSON, e.g. '[\"trades\", \"l2_book\"]'"], request.sources())


def load_settings(path: str | os.PathLike | bool | None = None, *, env: Any = None, **sections: Any) -> Settings:
    """The settings: defaults < YAML < environment < `sections` (e.g. `lake={"max_rows": 1000}`).

    `path`: the YAML file (None: $CRYPTOLAKE_CONFIG, else ./cryptolake.yaml if present; False: no
    file). `env`: the environment to read (default os.environ). A section given as a mapping is
    merged over the file's and the environment's; given as a model object it replaces them.
    """
    token = _REQUEST.set(LoadRequest(path, env))
    try:
        return Settings(**sections)
    finally:
        _REQUEST.reset(token)


def lake_settings(root: str | os.PathLike | None = None, *, config: LakeConfig | None = None,
                  settings: Settings | None = None, **overrides: Any) -> Settings:
    """What `Lake(root, config=, settings=, **overrides)` opens with: `settings` as given, or the
    loaded settings with `config` as the lake section, or with `root` and `overrides` over it."""
    if settings is not None:
        if config is not None or root is not None or overrides:
            raise ConfigError("pass settings= alone: its lake section already holds root and the other lake settings")
        if not isinstance(settings, Settings):
            raise ConfigError(f"settings must be a Settings (from load_settings), got {type(settings).__name__}")
        return settings
    if config is not None:
        if root is not None or overrides:
            raise ConfigError("pass either config= or root/settings, not both")
        if not isinstance(config, LakeConfig):
            raise ConfigError(f"config must be a LakeConfig, got {type(config).__name__}")
        return load_settings(lake=config)
    lake = dict(overrides)
    if root is not None:
        lake["root"] = root
    return load_settings(lake=lake) if lake else load_settings()
