"""Every channel of every recorded capture, replayed into a lake, holds what cryptofeed's playback delivers.

For each capture cryptofeed 2.4.1 can play, `lake.replay` into a fresh lake must, per channel
(trades, ticker, candles, funding, open_interest, liquidations, index), store one row per callback of
cryptofeed's own `playback()` (tests/cryptofeed_reference.py) or keep it aside with a reason listed
in EXPECTED_REJECTS; and the stored values must equal cryptofeed's objects field by field, `extra`
included, while live and again after `lake.flush()`. Every row is compared, not a sample: the
largest channel here has 4,000 rows. Order-book channels belong to the book tables' own tests.

docs/capture-coverage.md is generated from these results; `test_coverage_doc_is_current` fails when
it is out of date. Regenerate it with:

    .venv/bin/python tests/test_capture_channels.py
"""
from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from cryptofeed_reference import CAPTURES, exchange_names, playback_reference

from cryptolake_nb import Lake, ReplayError
from cryptolake_nb.replay import capture_sets
from cryptolake_nb.dedup import key_columns
from cryptolake_nb.schema import schema_for
from cryptolake_nb.tables import TABLES

DOC = Path(__file__).resolve().parents[1] / "docs" / "capture-coverage.md"
REGENERATE = ".venv/bin/python tests/test_capture_channels.py"
CHANNELS = ("trades", "ticker", "candles", "funding", "open_interest", "liquidations", "index")
BOOK_CHANNELS = ("l2_book", "l3_book")  # checked by the order-book tables' own tests

# cryptofeed 2.4.1's playback() fails on these captures: nothing to compare against, and the lake
# must refuse them cleanly.
CRYPTOFEED_CANNOT_PLAY = {
    "COINBASE": "recorded the old api.pro.coinbase.com/products list; 2.4.1 parses the v3 brokerage "
                "products list (playback: TypeError)",
    "BYBIT": "recorded the old v2/public/symbols list; 2.4.1 reads the v5 instruments-info lists "
             "(playback: KeyError 'result')",
}
# (exchange, channel) -> (rows kept aside, their reason, why that is right)
EXPECTED_REJECTS = {
    ("DELTA", "candles"): (10, "open must be a finite positive number, got 0.0",
                           "DELTA sends the candles of untraded option contracts with every price 0"),
}
# what else a reader of the coverage table should know, per (exchange, channel)
NOTES = {
    ("POLONIEX", "trades"): "cryptofeed 2.4.1 passes each trade's id as Trade.exchange (stored as given: "
                            "exchange '60184114' etc., one partition per trade, trade_id NULL) and the "
                            "quote-currency amount as Trade.amount",
    ("HITBTC", "candles"): "no update time from the exchange: ts = receipt_ts; the first updates are "
                           "a snapshot of candles from days before the capture",
    ("KRAKEN", "ticker"): "no exchange time: ts = receipt_ts",
    ("KRAKEN_FUTURES", "ticker"): "no exchange time: ts = receipt_ts",
    ("BITFINEX", "ticker"): "no exchange time: ts = receipt_ts",
}
_RENAMED = {"trades": {"trade_id": "id"}, "liquidations": {"liquidation_id": "id"}}  # column -> attribute


@dataclass
class ChannelResult:
    """One exchange's channel: what cryptofeed delivered, what the lake holds, what went wrong."""

    exchange: str
    channel: str
    cryptofeed: int | None = None  # callbacks of cryptofeed's playback
    lake: int | None = None        # rows the lake holds after the replay
    rejected: int | None = None    # rows kept aside
    duplicates: int | None = None  # rows dropped as repeats of the table's natural key
    failures: list[str] = field(default_factory=list)
    note: str = ""


# -- cryptofeed's objects as lake rows --------------------------------------------------------------

def _us(seconds: Any) -> int | None:
    return None if seconds is None else round(float(seconds) * 1e6)


def _attribute(table: str, column: str) -> str:
    return {"ts": "timestamp", "receipt_ts": "receipt_timestamp"}.get(column) or _RENAMED.get(table, {}).get(column, column)


def _mapped(table: str) -> set[str]:
    return {_attribute(table, f.name) for f in schema_for(table) if f.name != "extra"}


def expected_row(table: str, record: dict[str, Any]) -> tuple:
    """A callback's attributes (cryptofeed_reference's dict form, or a reject's raw values) as the lake
    row it should become: Decimals to float, times to whole µs, unmapped attributes to `extra`."""
    row = []
    for f in schema_for(table):
        if f.name == "extra":
            unmapped = set(record) - _mapped(table)
            found = {k: record[k] for k in sorted(unmapped) if record[k] is not None}
            row.append(json.dumps(found, sort_keys=True) if found else None)
            continue
        value = record.get(_attribute(table, f.name))
        if f.name == "ts" and value is None and table != "trades":
            value = record.get("receipt_timestamp")  # the exchange sent no time
        if f.name == "receipt_ts" and value is None:
            value = record.get("timestamp")
        if value is None:
            row.append(None)
        elif pa.types.is_timestamp(f.type):
            row.append(_us(value))
        elif pa.types.is_floating(f.type):
            row.append(float(Decimal(str(value))))
        elif pa.types.is_integer(f.type):
            row.append(int(value))
        elif pa.types.is_boolean(f.type):
            row.append(bool(value))
        else:
            row.append(str(value))
    return tuple(row)


def stored_rows(lake: Lake, table: str) -> tuple[list[tuple], list[str]]:
    """The lake's rows of `table` in schema order, times as whole µs; and any problems seen."""
    result = lake.sql(f'SELECT * FROM "{table}"', to="arrow")
    problems, columns = [], []
    for f in schema_for(table):
        col = result.column(f.name)
        if pa.types.is_timestamp(f.type):
            ns = col.cast(pa.int64()).to_pylist()
            if any(v is not None and v % 1000 for v in ns):
                problems.append(f"{table}.{f.name}: times that are not whole microseconds")
            columns.append([None if v is None else v // 1000 for v in ns])
        else:
            columns.append(col.to_pylist())
    return list(zip(*columns)), problems


def _without_extra(table: str, row: tuple) -> tuple:
    i = schema_for(table).get_field_index("extra")
    return row[:i] + row[i + 1:]


def _describe(table: str, rows: Counter, limit: int = 3) -> str:
    names = schema_for(table).names
    shown = [dict(zip(names, r)) if len(r) == len(names) else r for r in list(rows.elements())[:limit]]
    return "; ".join(map(str, shown)) + (" ..." if sum(rows.values()) > limit else "")


def _field_differences(table: str, got: Counter, want: Counter, limit: int = 3) -> str:
    """For stored rows that match no callback: the fields that differ from the callback with the same
    symbol and times, e.g. `ticker row 3 of BTC-USDT at 1633998276480073: bid 13.79 != 13.76`."""
    names = schema_for(table).names
    key = [names.index(n) for n in ("symbol", "ts", "receipt_ts")]
    by_key = {tuple(r[i] for i in key): r for r in want}
    out = []
    for row in list(got)[:limit]:
        twin = by_key.get(tuple(row[i] for i in key))
        if twin is not None:
            diffs = [f"{n} {a!r} != {b!r}" for n, a, b in zip(names, row, twin) if a != b]
            out.append(f"{row[key[0]]} at {row[key[1]]}: " + ", ".join(diffs))
    return "; ".join(out)


def _deduplicated(table: str, rows: list[tuple], rejected: Counter) -> list[tuple]:
    """`rows` (delivery order) less the rejected ones and less repeats of the table's dedup key."""
    spec = TABLES[table]
    cols = key_columns(spec) if spec.dedup_key else ()
    names = schema_for(table).names
    at = [names.index(c) for c in cols]
    budget, seen, out = Counter(rejected), set(), []
    for row in rows:
        bare = _without_extra(table, row)
        if budget[bare]:
            budget[bare] -= 1
            continue
        if at:
            key = tuple(row[i] for i in at)
            if None not in key:
                if key in seen:
                    continue
                seen.add(key)
        out.append(row)
    return out


def compare_channel(result: ChannelResult, records: list[dict], live: list[tuple], flushed: list[tuple],
                    rejects: list[dict]) -> None:
    """Fill `result`'s failures: every callback is stored exactly or kept aside as expected."""
    table, failures = result.channel, result.failures
    if result.cryptofeed != len(records):
        failures.append(f"the reference recorded {len(records)} of {result.cryptofeed} callbacks")
    ordered = [expected_row(table, r) for r in records]
    kept = Counter(_without_extra(table, expected_row(table, r["values"])) for r in rejects)
    valid = _deduplicated(table, ordered, kept)  # what the lake must hold: valid rows, first of each key
    duplicates = len(records) - len(rejects) - len(valid)
    result.duplicates = duplicates
    if len(live) + len(rejects) + duplicates != result.cryptofeed:
        failures.append(f"{len(live)} rows + {len(rejects)} rejected + {duplicates} duplicates != "
                        f"{result.cryptofeed} callbacks")
    expected = Counter(valid)
    stored = Counter(live)
    if stored - expected:
        failures.append(f"rows cryptofeed did not deliver (or with other values): {_describe(table, stored - expected)}"
                        f" [field by field: {_field_differences(table, stored - expected, expected - stored)}]")
    accounted = Counter(_without_extra(table, r) for r in live) + kept
    wanted = Counter(_without_extra(table, r) for r in expected.elements()) + kept
    if wanted - accounted:
        failures.append(f"callbacks neither stored nor rejected: {_describe(table, wanted - accounted)}")
    if accounted - wanted:
        failures.append(f"rows or rejects cryptofeed did not deliver: {_describe(table, accounted - wanted)}")
    if Counter(flushed) != stored:
        failures.append("rows changed on their way into Parquet")
    want = EXPECTED_REJECTS.get((result.exchange, table))
    reasons = Counter(r["reason"] for r in rejects)
    if rejects and (want is None or reasons != Counter({want[1]: want[0]})):
        failures.append(f"unexpected rejects: {dict(reasons)}")
    elif want is not None and not rejects:
        failures.append(f"expected {want[0]} rows rejected ({want[1]}), none were")


# -- one capture ----------------------------------------------------------------------------------

def _configured_channels(files: list[Path], name: str) -> list[str]:
    head = next(f for f in files if f.name == f"{name}.0")
    for line in head.read_text(encoding="utf-8").splitlines():
        if line.startswith("configuration: "):
            return list(json.loads(line.partition(": ")[2]))
    return []


def _order(channels: set[str]) -> list[str]:
    known = CHANNELS + BOOK_CHANNELS
    return sorted(channels, key=lambda c: (known.index(c) if c in known else len(known), c))


def check_capture(name: str, files: list[Path], reference: dict[str, Any], root: Path) -> list[ChannelResult]:
    """Replay `name` into a fresh lake under `root` and compare every channel with `reference`."""
    if name in CRYPTOFEED_CANNOT_PLAY:
        result = ChannelResult(name, "all", note=f"cryptofeed 2.4.1 cannot play it: {CRYPTOFEED_CANNOT_PLAY[name]}")
        if "error" not in reference:
            result.failures.append("cryptofeed now plays it: drop it from CRYPTOFEED_CANNOT_PLAY")
        with Lake(root, autoflush=False) as lake:
            try:
                lake.replay(files)
                result.failures.append("lake.replay did not raise ReplayError")
            except ReplayError as exc:
                if name not in str(exc):
                    result.failures.append(f"ReplayError does not name the exchange: {exc}")
            if lake.flush() or not lake.rejected().empty:
                result.failures.append("a refused capture left rows or rejects behind")
        return [result]
    if "error" in reference:
        return [ChannelResult(name, "all", failures=[f"cryptofeed's playback failed: {reference['error']}"])]
    callbacks, records = reference["callbacks"], reference["records"]
    channels = _order(set(_configured_channels(files, name)) | set(callbacks))
    results = {c: ChannelResult(name, c, cryptofeed=callbacks.get(c, 0), note=NOTES.get((name, c), ""))
               for c in channels}
    mine = [c for c in channels if c in CHANNELS]
    with Lake(root, autoflush=False) as lake:
        try:
            stored = lake.replay(files)
        except ReplayError as exc:
            for c in mine:
                results[c].failures.append(f"lake.replay failed: {exc}")
            return list(results.values())
        rejected = lake.rejected()
        live = {}
        for c in mine:
            live[c], problems = stored_rows(lake, c)
            results[c].failures.extend(problems)
            results[c].lake, results[c].rejected = len(live[c]), int((rejected["table"] == c).sum())
            if stored.get(c) != len(live[c]):
                results[c].failures.append(f"lake.replay reported {stored.get(c)} rows, the view holds {len(live[c])}")
            if lake.status()["tables"][c]["files"]:
                results[c].failures.append("rows were written to Parquet before flush()")
        lake.flush()
        for c in mine:
            flushed, problems = stored_rows(lake, c)
            results[c].failures.extend(problems)
            if lake.status()["tables"][c]["buffer_rows"]:
                results[c].failures.append("rows left in the live buffer after flush()")
            rejects = [r for r in rejected.to_dict("records") if r["table"] == c]
            compare_channel(results[c], records.get(c, []), live[c], flushed, rejects)
    return list(results.values())


def check_all(captures: Path, root: Path) -> dict[str, list[ChannelResult]]:
    reference = playback_reference(captures)
    return {name: check_capture(name, files, reference[name], root / name)
            for name, files in capture_sets(captures).items()}


# -- the coverage table -----------------------------------------------------------------------------

def _cell(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def coverage_markdown(results: dict[str, list[ChannelResult]]) -> str:
    """docs/capture-coverage.md: exchange x channel, cryptofeed's callbacks against the lake's rows."""
    lines = [
        "# Capture coverage",
        "",
        "<!-- generated by tests/test_capture_channels.py; do not edit by hand -->",
        "",
        "Each recorded capture in `../shared/data/cryptofeed-captures/` replayed with `lake.replay` into a",
        "fresh lake, channel by channel, against cryptofeed 2.4.1's own `playback()` of the same files.",
        "*cryptofeed*: callbacks playback delivered; *lake*: rows the lake holds; *rejected*: rows kept",
        "aside with a reason (`lake.rejected()`); *duplicates*: rows dropped as repeats of the table's",
        "natural key (`dedup_key`, see docs/tables.md; e.g. HITBTC's capture ran 4 identical connections).",
        "**pass** means every callback is stored with values equal to cryptofeed's object field by field",
        "(all rows, `extra` included, live and again after `lake.flush()`), or rejected for the reason",
        "given, or is a later copy of a stored row. Order-book channels are checked by the book tables'",
        "tests, not here.",
        "",
        f"Regenerate: `{REGENERATE}` (CI fails when this file is out of date).",
        "",
        "| exchange | channel | cryptofeed | lake | rejected | duplicates | result | notes |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    seen: set[str] = set()
    for name in sorted(results):
        for r in results[name]:
            seen.add(r.channel)
            if r.channel in BOOK_CHANNELS:
                status, notes = "not checked here", "order-book channel"
            elif r.channel == "all":
                status, notes = ("fail: " + "; ".join(r.failures)) if r.failures else "refused (ReplayError)", r.note
            else:
                status = ("fail: " + "; ".join(r.failures)) if r.failures else "pass"
                want = EXPECTED_REJECTS.get((name, r.channel))
                notes = "; ".join(x for x in (r.note, f"rejected: {want[1]} ({want[2]})" if want else "") if x)
            row = [name, r.channel, _cell(r.cryptofeed), _cell(r.lake), _cell(r.rejected), _cell(r.duplicates), status,
                   notes.replace("|", "\\|")]
            lines.append("| " + " | ".join(row) + " |")
    absent = [c for c in CHANNELS if c not in seen]
    if absent:
        lines += ["", "No capture holds " + ", ".join(f"`{c}`" for c in absent) + ": those tables are tested "
                  "with real cryptofeed objects in `tests/test_tables.py`."]
    return "\n".join(lines) + "\n"


# -- tests ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[ChannelResult]]:
    """Every capture replayed and compared once for this module."""
    if not CAPTURES.is_dir():
        pytest.fail(f"recorded captures not found at {CAPTURES}: ../shared/data must sit beside the checkout")
    return check_all(CAPTURES, tmp_path_factory.mktemp("capture-channels"))


@pytest.mark.parametrize("name", exchange_names(CAPTURES))
def test_every_channel_matches_cryptofeed(name: str, results: dict[str, list[ChannelResult]]) -> None:
    failures = [f"{r.channel}: {msg}" for r in results[name] for msg in r.failures]
    assert not failures, f"{name}:\n" + "\n".join(failures)


def test_channels_beyond_trades_were_compared(results: dict[str, list[ChannelResult]]) -> None:
    """Guards the comparison itself: the captures do exercise ticker and candles rows."""
    rows = Counter()
    for channel_results in results.values():
        for r in channel_results:
            rows[r.channel] += r.lake or 0
    assert rows["ticker"] > 4000 and rows["candles"] > 4000 and rows["trades"] > 2000, rows
    assert set(EXPECTED_REJECTS) | set(NOTES) <= {(n, r.channel) for n, rs in results.items() for r in rs}


def test_coverage_doc_is_current(results: dict[str, list[ChannelResult]]) -> None:
    text = coverage_markdown(results)
    assert DOC.is_file(), f"{DOC} is missing: run `{REGENERATE}`"
    assert DOC.read_text(encoding="utf-8") == text, f"{DOC.name} is out of date: run `{REGENERATE}`"


if __name__ == "__main__":  # regenerate docs/capture-coverage.md
    with tempfile.TemporaryDirectory() as tmp:
        outcome = check_all(CAPTURES, Path(tmp))
    DOC.write_text(coverage_markdown(outcome), encoding="utf-8")
    failed = [f"{n} {r.channel}" for n, rs in outcome.items() for r in rs if r.failures]
    print(f"wrote {DOC}" + (f"; failing: {', '.join(failed)}" if failed else ""), file=sys.stderr)
