"""Our capture replay driver against cryptofeed 2.4.1's own playback(), exchange by exchange."""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from pathlib import Path

import pytest
from cryptofeed.connection import HTTPAsyncConn, HTTPSync
from cryptofeed.defines import L2_BOOK, TRADES
from cryptofeed.symbols import Symbols
from cryptofeed_reference import CAPTURES, exchange_names, playback_reference

from cryptolake_nb.errors import ReplayError
from cryptolake_nb.replay import ReplayResult, capture_sets, replay_capture
from cryptolake_nb.replay_http import RecordedResponses

EXCHANGES = exchange_names(CAPTURES)

# cryptofeed 2.4.1's playback() itself fails on these: the captures predate the exchanges' current APIs.
CRYPTOFEED_CANNOT_PLAY = {
    "COINBASE": "2.4.1 reads api.coinbase.com/api/v3/brokerage/products; the capture holds the old "
                "api.pro.coinbase.com/products list (playback dies with a TypeError parsing it)",
    "BYBIT": "2.4.1 reads api.bybit.com/v5/market/instruments-info; the capture holds the old "
             "v2/public/symbols list (playback dies with KeyError 'result')",
}
# Symbol requests the capture has no record of, answered (as cryptofeed's playback answers every
# symbol request) with the next unused recorded symbol response: (requested, served) URL pairs.
SUBSTITUTED_REST = {
    "BITFINEX": (("https://api-pub.bitfinex.com/v2/conf/pub:list:pair:futures",  # what 2.4.1 asks
                  "https://api-pub.bitfinex.com/v2/conf/pub:list:pair:future"),),  # what was recorded
}


def _require_captures() -> None:
    assert CAPTURES.is_dir(), (f"capture folder {CAPTURES} is missing: the replay tests need cryptofeed's "
                               "recorded sample data there (see its README.md)")


@pytest.fixture
def cryptofeed_results() -> dict:
    """cryptofeed's own playback of every capture (run once per session, in subprocesses)."""
    _require_captures()
    return playback_reference(CAPTURES)


def _replay_with_trades(name: str) -> tuple[ReplayResult, list]:
    trades: list = []

    async def on_trade(t, receipt_timestamp: float) -> None:
        trades.append([str(t.symbol), t.side, str(t.price), str(t.amount), t.id,
                       None if t.timestamp is None else float(t.timestamp), receipt_timestamp])

    result = replay_capture(capture_sets(CAPTURES)[name], {TRADES: on_trade})
    return result, json.loads(json.dumps(trades))


@pytest.mark.parametrize("name", EXCHANGES)
def test_matches_cryptofeed_playback(name: str, cryptofeed_results: dict) -> None:
    _require_captures()
    theirs = cryptofeed_results[name]
    if name in CRYPTOFEED_CANNOT_PLAY:
        assert "error" in theirs, f"cryptofeed now plays {name}; drop it from CRYPTOFEED_CANNOT_PLAY"
        with pytest.raises(ReplayError, match=name):
            replay_capture(capture_sets(CAPTURES)[name], {})
        return
    assert "error" not in theirs, f"cryptofeed's playback failed on {name}: {theirs.get('error')}"
    ours, trades = _replay_with_trades(name)
    assert ours.exchange == name
    assert ours.messages == theirs["messages"]
    assert ours.callbacks == theirs["callbacks"]
    assert trades == theirs["trades"]  # receipt times included
    assert ours.substitutions == SUBSTITUTED_REST.get(name, ())


def test_every_capture_is_accounted_for() -> None:
    _require_captures()
    assert set(CRYPTOFEED_CANNOT_PLAY) | set(SUBSTITUTED_REST) <= set(EXCHANGES)
    assert not set(CRYPTOFEED_CANNOT_PLAY) & set(SUBSTITUTED_REST)
    for name, files in capture_sets(CAPTURES).items():
        assert files[0].name == f"{name}.0" and any(".ws." in f.name for f in files)


def test_substitution_is_logged_with_both_urls(caplog: pytest.LogCaptureFixture) -> None:
    _require_captures()
    (requested, served), = SUBSTITUTED_REST["BITFINEX"]
    with caplog.at_level(logging.WARNING, logger="cryptolake_nb.replay"):
        result = replay_capture(capture_sets(CAPTURES)["BITFINEX"], {})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and requested in warnings[0] and served in warnings[0]
    assert result.substitutions == ((requested, served),) and result.callbacks[TRADES] == 210


def _capture_without_rest(tmp_path: Path, name: str, drop_http: bool) -> list[Path]:
    """`name`'s capture with its REST records gone: only NAME.0's configuration line is kept
    (drop_http=False), or NAME.0 is kept and the polled-GET files are left out (drop_http=True)."""
    files = []
    for path in capture_sets(CAPTURES)[name]:
        if path.name == f"{name}.0" and not drop_http:
            config = [line for line in path.read_text(encoding="utf-8").splitlines()
                      if line.startswith("configuration: ")]
            (tmp_path / path.name).write_text("\n".join(config) + "\n", encoding="utf-8")
        elif ".http." in path.name and drop_http:
            continue
        else:
            (tmp_path / path.name).symlink_to(path)
        files.append(tmp_path / path.name)
    return files


def test_capture_lacking_every_symbol_response_still_raises(tmp_path: Path) -> None:
    _require_captures()
    with pytest.raises(ReplayError, match=r"GEMINI: cryptofeed requests https://api\.gemini\.com/v1/symbols, "
                                          r"which the capture lacks .*none is left to substitute"):
        replay_capture(_capture_without_rest(tmp_path, "GEMINI", drop_http=False), {})


def test_polled_requests_are_matched_by_url_only(tmp_path: Path) -> None:
    _require_captures()  # cryptofeed's playback keys these by URL: a book snapshot is never substituted
    with pytest.raises(ReplayError, match=r"BITSTAMP: cryptofeed requests https://www\.bitstamp\.net/api/v2/"
                                          r"order_book/\w+, which the capture lacks .*matched by URL only"):
        replay_capture(_capture_without_rest(tmp_path, "BITSTAMP", drop_http=True), {})


def test_recorded_response_rules() -> None:
    subs: list = []
    symbols = RecordedResponses("X", "symbol", [("u/a", "a1"), ("u/b", "b"), ("u/a", "a2"), ("u/c", "c")],
                                latest=True, fallback=True, substitutions=subs)
    assert symbols.take("u/a") == "a2" and symbols.take("u/a") == "a2"  # the last run's, as often as asked
    assert symbols.take("u/new") == "b"        # unknown URL: the first record no request took yet
    assert symbols.take("u/b") == "b"          # a recorded URL is always answered by URL
    assert symbols.take("u/newer") == "c"
    with pytest.raises(ReplayError, match="u/newest, which the capture lacks .*none is left"):
        symbols.take("u/newest")
    assert subs == [("u/new", "u/b"), ("u/newer", "u/c")]
    polled = RecordedResponses("X", "polled", [("u/s", "s1"), ("u/t", "t"), ("u/s", "s2")], latest=False,
                               fallback=False)
    assert [polled.take("u/s"), polled.take("u/s"), polled.take("u/t")] == ["s1", "s2", "t"]
    with pytest.raises(ReplayError, match=r"requests u/s more often than the capture recorded it \(2 time"):
        polled.take("u/s")
    with pytest.raises(ReplayError, match="u/z, which the capture lacks .*matched by URL only"):
        polled.take("u/z")
    assert polled.substitutions == []


def test_runs_inside_a_running_event_loop() -> None:
    _require_captures()
    seen: list = []

    async def on_book(book, receipt_timestamp: float) -> None:
        seen.append((threading.current_thread().name, receipt_timestamp))
        assert HTTPAsyncConn.read.__qualname__ == "HTTPAsyncConn.read"  # classes never patched
        assert HTTPSync.read.__qualname__ == "HTTPSync.read"

    async def main() -> ReplayResult:
        assert asyncio.get_running_loop().is_running()
        return replay_capture(capture_sets(CAPTURES)["GEMINI"], {L2_BOOK: on_book})

    result = asyncio.run(main())
    assert result.callbacks[L2_BOOK] == len(seen) > 0
    assert all(isinstance(ts, float) and 1.6e9 < ts < 1.7e9 for _, ts in seen)
    assert {thread for thread, _ in seen} == {"cryptolake-replay-GEMINI"}


def test_leaves_cryptofeed_globals_alone_and_stays_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    _require_captures()

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    live = ({"BTC-USD": "btcusd"}, {"tick_size": {}})  # what a live BITSTAMP feed would have loaded
    monkeypatch.setitem(Symbols.data, "BITSTAMP", {"normalized": live[0], "info": live[1]})
    monkeypatch.delitem(Symbols.data, "BINANCE", raising=False)
    assert replay_capture(capture_sets(CAPTURES)["BITSTAMP"], {}).callbacks == {"l2_book": 627, "trades": 10}
    assert replay_capture(capture_sets(CAPTURES)["BINANCE"], {}).callbacks[L2_BOOK] == 176
    assert Symbols.get("BITSTAMP") == live and not Symbols.populated("BINANCE")


def test_waits_inside_cryptofeed_are_skipped() -> None:
    _require_captures()
    for name in ("BITSTAMP", "INDEPENDENT_RESERVE"):  # 5 s snapshot delay / 1 s per-snapshot rate limit
        assert replay_capture(capture_sets(CAPTURES)[name], {}).duration < 2.5


def test_progress_hook() -> None:
    _require_captures()
    calls: list = []
    replay_capture(capture_sets(CAPTURES)["KRAKEN"], {}, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1] and [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_parser_error_names_file_and_line(tmp_path: Path) -> None:
    _require_captures()
    (tmp_path / "POLONIEX.0").symlink_to(CAPTURES / "POLONIEX.0")
    head = (CAPTURES / "POLONIEX.ws.1.0").read_text(encoding="utf-8").splitlines()[:5]
    (tmp_path / "POLONIEX.ws.1.0").write_text("\n".join(head + ['1661123518.5: {"channel": "trades", "data'])
                                              + "\n", encoding="utf-8")
    with pytest.raises(ReplayError, match=r"POLONIEX: replay failed at .*POLONIEX\.ws\.1\.0 line 6") as info:
        replay_capture([str(p) for p in tmp_path.iterdir()], {})
    assert info.value.__cause__ is not None


@pytest.mark.parametrize("case", ["no_head", "mixed", "nonexistent", "no_config", "bad_name", "empty"])
def test_bad_file_sets_raise_replay_error(case: str, tmp_path: Path) -> None:
    _require_captures()
    if case == "no_head":
        files, match = [CAPTURES / "GEMINI.ws.1.0"], r"GEMINI\.0 .* missing"
    elif case == "mixed":
        files = [CAPTURES / "GEMINI.0", CAPTURES / "POLONIEX.ws.1.0"]
        match = "several exchanges given: GEMINI, POLONIEX"
    elif case == "nonexistent":
        files, match = [CAPTURES / "GEMINI.0", tmp_path / "GEMINI.ws.9.0"], "not found"
    elif case == "no_config":
        (tmp_path / "GEMINI.0").write_text("https://api.gemini.com/v1/symbols -> 1.0: []\n", encoding="utf-8")
        files, match = [tmp_path / "GEMINI.0", CAPTURES / "GEMINI.ws.1.0"], "no configuration line"
    elif case == "bad_name":
        files, match = [CAPTURES / "README.md"], "not a cryptofeed capture file name"
    else:
        files, match = [], "no capture files"
    with pytest.raises(ReplayError, match=match):
        replay_capture(files, {})


def test_capture_sets_rejects_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="not found"):
        capture_sets(tmp_path / "nope")
    assert capture_sets(tmp_path) == {}


def test_bytes_literal_frames_are_decoded() -> None:
    from cryptolake_nb.replay import _decode  # HUOBI's gzip frames are covered by the parity test

    assert _decode("b'\\x1f\\x8b'") == b"\x1f\x8b" and _decode('b"{\\"a\\": 1}"') == b'{"a": 1}'
    assert _decode('{"b": "x"}') == '{"b": "x"}'


def test_concurrent_replays_do_not_interfere() -> None:
    _require_captures()
    names = ["KRAKEN", "HUOBI", "BINANCE", "KRAKEN"]
    alone = {name: replay_capture(capture_sets(CAPTURES)[name], {}).callbacks for name in set(names)}
    together: dict = {}
    threads = [threading.Thread(target=lambda i=i, n=n: together.__setitem__(
        i, replay_capture(capture_sets(CAPTURES)[n], {}).callbacks)) for i, n in enumerate(names)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [together[i] for i in range(len(names))] == [alone[n] for n in names]
