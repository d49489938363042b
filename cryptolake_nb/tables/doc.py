"""docs/tables.md, generated from the registered tables so the page and the code cannot drift.

Column types and nullability come from each table's Arrow schema, meanings from the inline comment
on the column's `pa.field(...)` line (plus comment-only lines right below it): in the table's module,
else COMMON_COLUMNS below (the columns every table shares), else the package modules whose functions
the table module uses (e.g. a shared schema builder). A comment's "NULL when ..." clause fills the
NULL column. Regenerate the page with:

    python -m cryptolake_nb.tables.doc > docs/tables.md
"""
from __future__ import annotations

import ast
import inspect
import io
import re
import sys
import tokenize
from types import ModuleType

import pyarrow as pa

from . import ORDER, TABLES, TableSpec

__all__ = ["COMMON_COLUMNS", "column_comments", "markdown"]

COMMAND = "python -m cryptolake_nb.tables.doc > docs/tables.md"

# the columns schema.make_schema and records.EXTRA_FIELD give every table
COMMON_COLUMNS = {
    "exchange": "cryptofeed's exchange id as the feed gives it (BINANCE, KRAKEN_FUTURES, ...); partition column",
    "symbol": "cryptofeed's normalised symbol (BTC-USDT, ETH-USD-PERP, ...); partition column",
    "extra": "public attributes of the cryptofeed object that this table does not map (say, a field a newer "
             "cryptofeed adds), as one JSON object: Decimals as strings, attributes whose value is None left "
             "out, cryptofeed's `raw` message never stored; NULL when the object has no such attribute with a "
             "value (so always, with cryptofeed 2.4.1)",
    "ts": "the exchange's time of the event, to the microsecond; the date partition and sort key. When the "
          "exchange sends no time, a trade is rejected, while ticker, candles, funding, open_interest, "
          "liquidations and index rows take the receipt time (the table's notes name the exchanges)",
    "receipt_ts": "when the message reached cryptofeed (for a replay: the time the capture recorded), to the "
                  "microsecond",
}
_NULL_WHEN = re.compile(r"[;,]?\s*NULL\s+(?:only\s+)?(when|on|if)\s+(.*)$", re.S)
_CODE = frozenset({tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                   tokenize.ENDMARKER})


def column_comments(source: str) -> dict[str, str]:
    """Column name -> the comment on its `pa.field("name", ...)` line, continued by comment-only lines."""
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    comments = {t.start[0]: t.string.lstrip("#").strip() for t in tokens if t.type == tokenize.COMMENT}
    code = {line for t in tokens if t.type not in _CODE for line in range(t.start[0], t.end[0] + 1)}
    out: dict[str, str] = {}
    for i in range(2, len(tokens) - 2):
        t = tokens[i]
        if (t.string == "field" and tokens[i - 1].string == "." and tokens[i - 2].string == "pa"
                and tokens[i + 1].string == "(" and tokens[i + 2].type == tokenize.STRING):
            line = t.start[0]
            parts = [comments[line]] if line in comments else []
            line += 1
            while line in comments and line not in code:
                parts.append(comments[line])
                line += 1
            out[ast.literal_eval(tokens[i + 2].string)] = " ".join(parts)
    return out


def _module(spec: TableSpec) -> ModuleType | None:
    for name, module in list(sys.modules.items()):
        if name.startswith(__package__ + ".") and getattr(module, "SPEC", None) is spec:
            return module
    return None


def _helper_comments(module: ModuleType) -> dict[str, str]:
    """Column comments in the package modules that define the functions `module` uses."""
    root = __package__.split(".")[0] + "."
    names = {getattr(v, "__module__", None) for v in vars(module).values() if callable(v)}
    out: dict[str, str] = {}
    for name in sorted(n for n in names if n and n.startswith(root) and n != module.__name__):
        for column, text in column_comments(inspect.getsource(sys.modules[name])).items():
            if text:
                out.setdefault(column, text)
    return out


def _split(comment: str, field: pa.Field) -> tuple[str, str]:
    """(meaning, NULL when) from a column comment."""
    match = _NULL_WHEN.search(comment)
    meaning = (comment[:match.start()].rstrip(" ;,") if match else comment) or "-"
    if not field.nullable:
        return meaning, "never"
    if match is None:
        return meaning, "(not stated)"
    return meaning, match.group(2).strip() if match.group(1) == "when" else f"{match.group(1)} {match.group(2).strip()}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table_section(spec: TableSpec) -> list[str]:
    module = _module(spec)
    comments = column_comments(inspect.getsource(module)) if module is not None else {}
    helpers = _helper_comments(module) if module is not None else {}
    about = inspect.cleandoc(module.__doc__ or "") if module is not None else ""
    lines = [f"## `{spec.name}`", ""]
    if about:
        lines += [about, ""]
    lines += [
        "| column | Arrow type | meaning | NULL when |",
        "|---|---|---|---|",
    ]
    for f in spec.schema:
        text = comments.get(f.name) or COMMON_COLUMNS.get(f.name) or helpers.get(f.name) or "(undocumented)"
        meaning, null = _split(text, f)
        lines.append(f"| `{f.name}` | `{f.type}` | {_cell(meaning)} | {_cell(null)} |")
    names = set(spec.schema.names)
    lines += [
        "",
        "Parquet: dictionary-encoded " + ", ".join(f"`{c}`" for c in spec.dictionary_columns if c in names)
        + "; DELTA_BINARY_PACKED " + ", ".join(f"`{c}`" for c in spec.delta_columns if c in names)
        + "; rows sorted by " + ", ".join(f"`{c}`" for c in spec.sort_columns) + " within a file.",
        "",
    ]
    return lines


def markdown() -> str:
    """The whole docs/tables.md page, one section per registered table in registration order."""
    lines = [
        "# Tables",
        "",
        f"<!-- generated by `{COMMAND}`; edit the table modules, not this page -->",
        "",
        "One table per cryptofeed channel; the table's name is the channel's (`lake.subscribe(..., "
        "channels=[...])`). Each is a DuckDB view over its Parquet history and live rows: "
        "`lake.sql('SELECT ... FROM ticker')`.",
        "",
        "Conventions, the same in every table:",
        "",
        "- Prices and quantities are `double`, converted from cryptofeed's Decimals through their exact "
        "string (correctly rounded).",
        "- Times are `timestamp[ns, tz=UTC]` rounded to the microsecond (what cryptofeed's float seconds carry).",
        "- A field the exchange does not send is NULL, never 0.",
        "- Rows that cannot be right (a NaN, infinite, zero or negative price or size; a missing value the "
        "table cannot do without; an exchange or symbol that cannot be a partition path) are not stored: "
        "they are kept aside with the reason, see `lake.rejected()`, counted per table and exchange in "
        "`lake.status()['rejected']`. Funding rates may be negative or zero; open interest and candle "
        "volume may be zero.",
        "- `extra` keeps what a table does not map, so a new cryptofeed attribute never fails a row and is "
        "not lost. Which attributes are unmapped is worked out once per Python type, so it costs nothing "
        "per row when there are none. Read it with DuckDB's JSON functions, e.g. "
        "`extra->>'$.name'`.",
        "- Files are partitioned `<table>/exchange=/symbol=/date=` (UTC date of `ts`), ZSTD-compressed.",
        "",
    ]
    for spec in (TABLES[n] for n in ORDER if n in TABLES):
        lines += _table_section(spec)
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
