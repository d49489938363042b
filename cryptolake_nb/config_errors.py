"""What a setting allows, in words, and pydantic's validation errors as one ConfigError naming each field.

`allowed(field)` renders a field's type and bounds ("an integer >= 1", "one of 'none', 'batch',
'strict'"); the error messages and the generated reference page (config_doc.py) both use it, so
they say the same thing. `config_error` turns a ValidationError into one message with a line per
problem: the dotted path (`lake.max_rows`, `feeds[0].channels`), the value given (credentials
masked), where it came from (file and line, environment variable, argument) and what is allowed.
"""
from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from .errors import ConfigError
from .proxy import redact

__all__ = ["Origin", "allowed", "config_error", "describe", "dotted", "model_at"]

Origin = Callable[[tuple], str]
"""Where the value at a path came from, e.g. ' (cryptolake.yaml line 3)', or ''."""

_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}
_MAX_SHOWN = 120


def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _bounds(metadata: Sequence[Any]) -> str:
    found: dict[str, Any] = {}
    for item in metadata:
        for name in ("ge", "gt", "le", "lt"):
            value = getattr(item, name, None)
            if value is not None and isinstance(item, (annotated_types.BaseMetadata, annotated_types.GroupedMetadata)):
                found[name] = value
        if isinstance(item, annotated_types.MinLen) and item.min_length > 0:
            found["min_len"] = item.min_length
    if "ge" in found and "le" in found:
        return f" from {found['ge']} to {found['le']}"
    parts = [f"{op} {found[name]}" for name, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if name in found]
    if "min_len" in found:
        parts.append("not empty")
    return (" " + " and ".join(parts)) if parts else ""


def describe(tp: Any, metadata: Sequence[Any] = ()) -> str:
    """A type (and its constraints) in words."""
    tp = _strip_annotated(tp)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        text = " or ".join(describe(a) for a in members)
        return f"{text}{_bounds(metadata)} or null" if type(None) in typing.get_args(tp) else text + _bounds(metadata)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(tp))
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        inner = describe(args[0]) if args else "values"
        return f"a list of {inner.removeprefix('a ').removeprefix('an ')}s" + _bounds(metadata)
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        return "a mapping"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "a mapping of the settings below"
    return _TYPE_WORDS.get(tp, getattr(tp, "__name__", str(tp))) + _bounds(metadata)


def allowed(field: FieldInfo) -> str:
    """What a field accepts, in words: its `allowed` text if it declares one, else from its type."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if "allowed" in extra:
        return str(extra["allowed"])
    return describe(field.annotation, field.metadata)


def dotted(loc: Sequence[Any]) -> str:
    """('feeds', 0, 'channels') -> 'feeds[0].channels'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def model_at(model: type[BaseModel], loc: Sequence[Any]) -> tuple[tuple, FieldInfo | None, type[BaseModel]]:
    """Walk `loc` through the model's fields: (the part of loc that names settings, the last field,
    the model holding it). Union-member tags pydantic puts in locs are dropped."""
    kept: list[Any] = []
    field: FieldInfo | None = None
    owner, current = model, model
    for part in loc:
        if isinstance(part, int):
            if field is not None and kept:
                kept.append(part)
                inner = _item_model(field.annotation)
                if inner is not None:
                    current, field = inner, None
            continue
        if isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            owner, field = current, current.model_fields[part]
            kept.append(part)
            current = _model_of(field.annotation)
        else:
            if isinstance(current, type) and issubclass(current, BaseModel):
                kept.append(part)  # an unknown key inside a section
                owner, field = current, None
            break
    return tuple(kept), field, owner


def _model_of(tp: Any) -> Any:
    """The section model a field holds (`Model` or `Model | None`), else None."""
    tp = _strip_annotated(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    if typing.get_origin(tp) in (Union, types.UnionType):
        models = [m for m in map(_model_of, typing.get_args(tp)) if m is not None]
        return models[0] if len(models) == 1 else None
    return None


def _item_model(tp: Any) -> Any:
    tp = _strip_annotated(tp)
    if typing.get_origin(tp) in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if args and isinstance(_strip_annotated(args[0]), type) and issubclass(_strip_annotated(args[0]), BaseModel):
            return _strip_annotated(args[0])
    return None


def _shown(value: Any) -> str:
    text = redact(repr(value))
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _validator_text(error: Mapping[str, Any]) -> str:
    cause = (error.get("ctx") or {}).get("error")
    text = str(cause) if cause is not None else str(error.get("msg", ""))
    for prefix in ("Value error, ", "Assertion failed, "):
        text = text.removeprefix(prefix)
    return redact(text)


def _unknown(path: tuple, owner: type[BaseModel], prefix: str, origin: str) -> str:
    name = str(path[-1])
    names = sorted(owner.model_fields)
    where = dotted((prefix,) + path[:-1]) if prefix else dotted(path[:-1])
    guess = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"; did you mean {dotted((prefix,) + path[:-1] + (guess[0],)) if prefix else dotted(path[:-1] + (guess[0],))}?" if guess else ""
    scope = f"{where} takes" if where else "the settings are"
    return f"{dotted((prefix,) + path) if prefix else dotted(path)}: unknown setting{origin}{hint} ({scope}: {', '.join(names)})"


def line_for(model: type[BaseModel], error: Mapping[str, Any], origin: Origin, prefix: str = "") -> str:
    """One line for one pydantic error dict."""
    loc = tuple(error.get("loc", ()))
    path, field, owner = model_at(model, loc)
    shown_path = dotted(((prefix,) if prefix else ()) + path)
    where = origin(path)
    kind = error.get("type")
    if kind == "extra_forbidden":
        return _unknown(path, owner, prefix, where)
    if kind == "missing":
        need = allowed(field) if field is not None else "a value"
        return f"{shown_path}: required{where}; allowed: {need}"
    value = _shown(error.get("input"))
    if kind in ("value_error", "assertion_error"):
        return f"{shown_path} = {value}{where}: {_validator_text(error)}"
    need = allowed(field) if field is not None else str(error.get("msg", "invalid"))
    if kind in ("model_type", "model_attributes_type", "dict_type") and not path:
        return f"the configuration{where} must be a mapping of sections, got {value}"
    return f"{shown_path} = {value}{where}: must be {need}"


def config_error(model: type[BaseModel], exc: ValidationError, origin: Origin | None = None,
                 prefix: str = "", context: str = "") -> ConfigError:
    """One ConfigError for every problem in `exc`: one line each (a heading when there are several)."""
    origin = origin or (lambda path: "")
    lines = list(dict.fromkeys(line_for(model, e, origin, prefix) for e in exc.errors()))
    return problems(lines, context)


def problems(lines: Sequence[str], context: str = "") -> ConfigError:
    """A ConfigError listing `lines`; `context` names the sources read (e.g. 'cryptolake.yaml, environment')."""
    about = f" ({context})" if context else ""
    if len(lines) == 1:
        return ConfigError(f"invalid configuration{about}: {lines[0]}")
    body = "\n".join(f"  - {line}" for line in lines)
    return ConfigError(f"invalid configuration{about}: {len(lines)} problems\n{body}")
