"""Where settings come from: the YAML file and the CRYPTOLAKE_* environment, as pydantic-settings sources.

One `LoadRequest` per load says which file and which environment to read, and keeps what each
source gave, so an invalid value can be traced to its file and line, its environment variable or
the argument that set it.

    file   path= argument, else $CRYPTOLAKE_CONFIG, else ./cryptolake.yaml if it exists, else none;
           a relative `lake.root` in a file is relative to the file's directory
    env    CRYPTOLAKE_<SECTION>__<FIELD>[__<FIELD>...] (any case), values as YAML would write them
           only for lists and mappings (JSON: '["trades","l2_book"]'); lists of strings also take
           'a,b'; 'null' sets None. CRYPTOLAKE_ROOT is short for CRYPTOLAKE_LAKE__ROOT.
"""
from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource
from pydantic_settings.sources.utils import parse_env_vars  # the parsing EnvSettingsSource applies to os.environ

from .config_errors import dotted
from .errors import ConfigError

__all__ = ["CONFIG_ENV", "CONFIG_FILE", "ENV_PREFIX", "EnvSource", "LoadRequest", "ROOT_ENV", "YamlSource",
           "env_names", "read_yaml"]

log = logging.getLogger(__name__)

ENV_PREFIX = "CRYPTOLAKE_"
CONFIG_ENV = "CRYPTOLAKE_CONFIG"
CONFIG_FILE = "cryptolake.yaml"
ROOT_ENV = "CRYPTOLAKE_ROOT"
NESTED = "__"
# CRYPTOLAKE_* variables that are not settings: the config file's path and the crash-test hook
_NOT_SETTINGS = frozenset({CONFIG_ENV, ROOT_ENV, "CRYPTOLAKE_CRASH_AT"})


@dataclass
class LoadRequest:
    """What one load reads (`path`: a file, False for none, None to look; `env`: the environment)
    and, once read, what each source gave."""

    path: str | os.PathLike | bool | None = None
    env: Mapping[str, str] | None = None
    file: Path | None = None
    yaml_data: dict[str, Any] = field(default_factory=dict)
    yaml_lines: dict[tuple, int] = field(default_factory=dict)
    env_data: dict[str, Any] = field(default_factory=dict)
    init_data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = dict(os.environ if self.env is None else self.env)
        self.file = self._find_file()

    def _find_file(self) -> Path | None:
        if self.path is False:
            return None
        if self.path is not None and self.path is not True:
            chosen, how = Path(os.fspath(self.path)), "the path given"
        elif _get(self.env, CONFIG_ENV):
            chosen, how = Path(_get(self.env, CONFIG_ENV) or ""), f"${CONFIG_ENV}"
        else:
            default = Path.cwd() / CONFIG_FILE
            return default if default.is_file() else None
        chosen = chosen.expanduser()
        if not chosen.is_file():
            raise ConfigError(f"configuration file {chosen} ({how}) does not exist or is not a file")
        return chosen.resolve()

    def sources(self) -> str:
        """The sources read, for error headings: 'cryptolake.yaml, environment, arguments'."""
        names = [str(self.file)] if self.file is not None else []
        names += ["environment"] if self.env_data else []
        names += ["arguments"] if self.init_data else []
        return ", ".join(names)

    def origin(self, path: tuple) -> str:
        """' (from <where>)' for the value at `path`: the highest-precedence source holding it."""
        if _holds(self.init_data, path):
            return " (argument)"
        if _holds(self.env_data, path):
            return f" (environment variable {self._env_var(path)})"
        if _holds(self.yaml_data, path) and self.file is not None:
            line = next((self.yaml_lines[path[:k]] for k in range(len(path), 0, -1) if path[:k] in self.yaml_lines), None)
            return f" ({self.file.name} line {line})" if line else f" ({self.file.name})"
        return ""

    def _env_var(self, path: tuple) -> str:
        names = {k.upper() for k in self.env or {}}
        strings = []
        for part in path:
            if not isinstance(part, str):
                break
            strings.append(part)
        for k in range(len(strings), 0, -1):
            name = ENV_PREFIX + NESTED.join(strings[:k]).upper()
            if name in names:
                return name
        if tuple(strings[:2]) == ("lake", "root") and ROOT_ENV in names:
            return ROOT_ENV
        return ENV_PREFIX + NESTED.join(strings).upper()


def _get(env: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (env or {}).items():
        if key.upper() == name and value:
            return value
    return None


def _holds(data: Any, path: tuple) -> bool:
    for part in path:
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, (list, tuple)) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return False
    return bool(path)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader; duplicate keys are found in the node walk below."""


def read_yaml(file: Path) -> tuple[dict[str, Any], dict[tuple, int]]:
    """(data, path -> line) from a YAML file: a mapping of sections; duplicate keys refused."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read configuration file {file}: {exc}") from None
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{file}{where}: not valid YAML: {problem}") from None
    finally:
        loader.dispose()
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the configuration must be a mapping of sections (lake:, feeds:, network:, "
                          f"monitoring:, cryptofeed:), got a {type(data).__name__}")
    lines: dict[tuple, int] = {}
    _walk(file, node, (), lines, loader)
    _relative_root(file, data)
    return data, lines


def _walk(file: Path, node: yaml.Node, path: tuple, lines: dict[tuple, int], loader: yaml.SafeLoader) -> None:
    if len(path) > 32:  # an alias that contains itself: the settings are never this deep
        raise ConfigError(f"{file}: {dotted(path[:3])}... nests deeper than any setting (a recursive alias?)")
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise ConfigError(f"{file} line {line}: {dotted(path + (key,))} is set twice "
                                  f"(first on line {seen[key]})")
            seen[key] = line
            lines[path + (key,)] = line
            _walk(file, value_node, path + (key,), lines, loader)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _walk(file, item, path + (i,), lines, loader)


def _relative_root(file: Path, data: dict[str, Any]) -> None:
    lake = data.get("lake")
    root = lake.get("root") if isinstance(lake, dict) else None
    if isinstance(root, str) and root.strip() and not Path(root).expanduser().is_absolute():
        lake["root"] = str(file.parent / root)


class YamlSource(PydanticBaseSettingsSource):
    """The request's YAML file (nothing when there is none)."""

    def __init__(self, settings_cls: type[BaseSettings], request: LoadRequest) -> None:
        super().__init__(settings_cls)
        self.request = request

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return self.request.yaml_data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        if self.request.file is not None:
            self.request.yaml_data, self.request.yaml_lines = read_yaml(self.request.file)
        return self.request.yaml_data


class EnvSource(EnvSettingsSource):
    """pydantic-settings' environment source on the request's environment, plus CRYPTOLAKE_ROOT;
    CRYPTOLAKE_* variables that name no setting are reported in a warning (with a suggestion)."""

    def __init__(self, settings_cls: type[BaseSettings], request: LoadRequest) -> None:
        self.request = request
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self.request.env or {}, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        root = _get(self.request.env, ROOT_ENV)
        if root:
            lake = data.setdefault("lake", {})
            if isinstance(lake, dict):
                given = lake.get("root")
                if given is not None and str(given) != root:
                    raise ConfigError(f"{ROOT_ENV}={root!r} and {ENV_PREFIX}LAKE{NESTED}ROOT={str(given)!r} disagree: "
                                      f"set one of them")
                lake["root"] = root
        self._warn_unknown()
        self.request.env_data = data
        return data

    def _warn_unknown(self) -> None:
        known = env_names(self.settings_cls)
        sections = {ENV_PREFIX + name.upper() for name in self.settings_cls.model_fields}
        for name in sorted(k.upper() for k in self.request.env or {}):
            if not name.startswith(ENV_PREFIX) or name in _NOT_SETTINGS or name in sections:
                continue
            if any(name.startswith(s + NESTED) for s in sections):
                continue  # under a section: pydantic refuses an unknown field there, with its name
            guess = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.7)
            hint = f"; did you mean {guess[0]}?" if guess else f" (settings are {ENV_PREFIX}<SECTION>{NESTED}<FIELD>)"
            log.warning("ignoring environment variable %s: it names no setting%s", name, hint)


def env_names(model: type[BaseModel], prefix: str = ENV_PREFIX) -> set[str]:
    """Every environment variable name that sets a single field of `model`, sections spelled out."""
    out: set[str] = set()
    for name, info in model.model_fields.items():
        full = prefix + name.upper()
        out.add(full)
        inner = info.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            out |= env_names(inner, full + NESTED)
    if model.__name__ == "Settings":
        out.add(ROOT_ENV)
    return out
