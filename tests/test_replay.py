"""Our capture replay driver against cryptofeed 2.4.1's own playback(), exchange by exchange."""
from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptofeed.connection import HTTPAsyncConn, HTTPSync
from cryptofeed.defines import L2_BOOK, TRADES
from cryptofeed.symbols import Symbols

from cryptolake_nb.errors import ReplayError
from cryptolake_nb.replay import ReplayResult, capture_sets, replay_capture

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = (ROOT / ".." / "shared" / "data" / "cryptofeed-captures").resolve()
MISSING = "<cryptofeed-captures folder missing>"
EXCHANGES = sorted(capture_sets(CAPTURES)) if CAPTURES.is_dir() else [MISSING]

# cryptofeed 2.4.1's playback() itself fails on these: the captures predate the exchanges' current APIs.
CRYPTOFEED_CANNOT_PLAY = {
    "COINBASE": "2.4.1 reads api.coinbase.com/api/v3/brokerage/products; the capture holds the old "
                "api.pro.coinbase.com/products list (playback dies with a TypeError parsing it)",
    "BYBIT": "2.4.1 reads api.bybit.com/v5/market/instruments-info; the capture holds the old "
             "v2/public/symbols list (playback dies with KeyError 'result')",
}
# cryptofeed's playback hands out recorded REST bodies in file order whatever URL is asked, so it
# "plays" these on a mismatched response; our driver matches URLs and must refuse.
CAPTURE_LACKS_REST = {
    "BITFINEX": "https://api-pub.bitfinex.com/v2/conf/pub:list:pair:futures",  # capture has ...:future
}

_CRYPTOFEED_PLAYBACK = r"""
import json, sys
from pathlib import Path
from cryptofeed.raw_data_collection import playback

def config_channels(head):
    for line in open(head, encoding="utf-8"):
        if line.startswith("configuration: "):
            return list(json.loads(line.split(": ", 1)[1]))
    return []

out = {}
for name, files in json.loads(sys.argv[1]).items():
    trades = []
    async def on_trade(t, receipt):
        trades.append([str(t.symbol), t.side, str(t.price), str(t.amount), t.id,
                       None if t.timestamp is None else float(t.timestamp)])
    async def ignore(obj, receipt):
        pass
    channels = config_channels(next(f for f in files if Path(f).name == name + ".0"))
    callbacks = {c: (on_trade if c == "trades" else ignore) for c in channels}
    try:
        res = playback(name, files, callbacks=callbacks, config=None)
        out[name] = {"messages": res["messages_processed"], "callbacks": res["callbacks"], "trades": trades}
    except Exception as exc:
        out[name] = {"error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(out))
"""


def _require_captures() -> None:
    assert CAPTURES.is_dir(), (f"capture folder {CAPTURES} is missing: the replay tests need cryptofeed's "
                               "recorded sample data there (see its README.md)")


@pytest.fixture(scope="module")
def cryptofeed_results() -> dict:
    """cryptofeed's own playback of every capture, in a subprocess (it patches classes globally)."""
    _require_captures()
    sets = {name: [str(p) for p in files] for name, files in capture_sets(CAPTURES).items()}
    proc = subprocess.run([sys.executable, "-c", _CRYPTOFEED_PLAYBACK, json.dumps(sets)], capture_output=True,
                          text=True, timeout=120, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _replay_with_trades(name: str) -> tuple[ReplayResult, list]:
    trades: list = []

    async def on_trade(t, receipt_timestamp: float) -> None:
        trades.append([str(t.symbol), t.side, str(t.price), str(t.amount), t.id,
                       None if t.timestamp is None else float(t.timestamp)])

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
    if name in CAPTURE_LACKS_REST:
        with pytest.raises(ReplayError, match="capture lacks") as info:
            replay_capture(capture_sets(CAPTURES)[name], {})
        assert CAPTURE_LACKS_REST[name] in str(info.value)
        return
    assert "error" not in theirs, f"cryptofeed's playback failed on {name}: {theirs.get('error')}"
    ours, trades = _replay_with_trades(name)
    assert ours.exchange == name
    assert ours.messages == theirs["messages"]
    assert ours.callbacks == theirs["callbacks"]
    assert trades == theirs["trades"]


def test_every_capture_is_accounted_for() -> None:
    _require_captures()
    assert set(CRYPTOFEED_CANNOT_PLAY) | set(CAPTURE_LACKS_REST) <= set(EXCHANGES)
    for name, files in capture_sets(CAPTURES).items():
        assert files[0].name == f"{name}.0" and any(".ws." in f.name for f in files)


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
        files, match = [CAPTURES / "GEMINI.0", CAPTURES / "POLONIEX.ws.1.0"], "several exchanges given: GEMINI, POLONIEX"
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
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert [together[i] for i in range(len(names))] == [alone[n] for n in names]
