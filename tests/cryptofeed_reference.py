"""The reference the capture tests check against: cryptofeed 2.4.1's own playback() of each capture.

`playback_reference(captures)` runs `cryptofeed.raw_data_collection.playback` once per exchange
in worker subprocesses, never in the test process: playback patches cryptofeed's HTTP classes
process-wide while it runs. A few workers share the exchanges, because playback really sleeps
through cryptofeed's snapshot delays and rate limits. The workers may connect to loopback
addresses only, like the test process.

The result is cached for the process, i.e. the pytest session; test modules reach it through a
fixture of their own (`playback_reference(captures)`) and must not modify it.
"""
from __future__ import annotations

import functools
import json
import queue
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cryptolake_nb.replay import capture_sets

__all__ = ["CAPTURES", "MISSING", "exchange_names", "playback_reference"]

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = (ROOT.parent / "shared" / "data" / "cryptofeed-captures").resolve()
MISSING = "<cryptofeed-captures folder missing>"
_WORKERS = 3      # worker interpreters; playback mostly sleeps (snapshot delays, rate limits)
_TIMEOUT = 180.0  # seconds a worker may take for all its exchanges

_MARK = "@@cryptofeed-reference@@ "
_WORKER = r"""
import ipaddress, json, socket, sys

def loopback_only(event, args):
    if event == "socket.connect" and args[0].family in (socket.AF_INET, socket.AF_INET6):
        host = args[1][0]
        try:
            ok = ipaddress.ip_address(host).is_loopback
        except ValueError:
            ok = host == "localhost"
        if not ok:
            raise ConnectionRefusedError(f"cryptofeed reference: connection to {host!r} refused")

sys.addaudithook(loopback_only)

from decimal import Decimal

from cryptofeed.raw_data_collection import playback

RECORDED = ("trades", "ticker", "candles", "funding", "open_interest", "liquidations", "index")

def seconds(value):
    return None if value is None else float(value)

def fields(obj, receipt):
    out = {}
    for name in dir(obj):  # every public data attribute, as the lake's `extra` sees them too
        if name.startswith("_") or name == "raw":
            continue
        value = getattr(obj, name)
        if not callable(value):
            out[name] = str(value) if isinstance(value, Decimal) else value
    out["receipt_timestamp"] = seconds(receipt)
    return out

def play(name, files):
    channels = []
    for line in open(next(f for f in files if f.endswith("/" + name + ".0")), encoding="utf-8"):
        if line.startswith("configuration: "):
            channels = list(json.loads(line.split(": ", 1)[1]))
    trades = []
    records = {c: [] for c in channels if c in RECORDED}

    async def on_trade(t, receipt):
        trades.append([str(t.symbol), t.side, str(t.price), str(t.amount), t.id, seconds(t.timestamp),
                       seconds(receipt)])
        records["trades"].append(fields(t, receipt))

    def recorder(channel):
        async def record(obj, receipt):
            records[channel].append(fields(obj, receipt))
        return record

    async def ignore(obj, receipt):
        pass

    callbacks = {c: (on_trade if c == "trades" else recorder(c) if c in RECORDED else ignore) for c in channels}
    try:
        res = playback(name, files, callbacks=callbacks, config=None)
        return {"messages": res["messages_processed"], "callbacks": res["callbacks"], "trades": trades,
                "records": records}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}

for request in sys.stdin:  # one [name, files] per line; one marked JSON line back per request
    name, files = json.loads(request)
    print("\n" + MARK + json.dumps(play(name, files), default=str), flush=True)
""".replace("MARK", repr(_MARK))


def exchange_names(captures: Path = CAPTURES) -> list[str]:
    """The captures' exchange names, for parametrizing; one placeholder name if the folder is missing
    (the `captures` fixture then fails those tests loudly)."""
    return sorted(capture_sets(captures)) if captures.is_dir() else [MISSING]


def _work(todo: "queue.SimpleQueue[tuple[str, list[Path]]]", results: dict[str, dict[str, Any]]) -> None:
    """Run one worker interpreter and feed it exchanges from `todo` until none is left."""
    with subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, cwd=str(ROOT)) as proc:
        watchdog = threading.Timer(_TIMEOUT, proc.kill)
        watchdog.start()
        try:
            while True:
                try:
                    name, files = todo.get_nowait()
                except queue.Empty:
                    break
                proc.stdin.write(json.dumps([name, [str(f) for f in files]]) + "\n")
                proc.stdin.flush()
                output = []
                for line in proc.stdout:
                    if line.startswith(_MARK):
                        results[name] = json.loads(line[len(_MARK):])
                        break
                    output.append(line)
                else:
                    raise AssertionError(f"cryptofeed's playback of {name} crashed or timed out:\n"
                                         + "".join(output)[-3000:])
        finally:
            watchdog.cancel()
            proc.stdin.close()  # the worker exits at end of input


def playback_reference(captures: Path = CAPTURES) -> dict[str, dict[str, Any]]:
    """Exchange -> what cryptofeed's playback() delivered for its capture: `messages`, `callbacks`
    (per channel), `trades` and `records`, or `error` if playback() raised. Each trade callback is
    [symbol, side, price, amount, id, timestamp, receipt_timestamp]: price and amount as the
    Decimals' strings, the times as float seconds (timestamp None when cryptofeed gave none).
    `records` maps each of the channels trades, ticker, candles, funding, open_interest, liquidations
    and index that the capture subscribes to, to its callbacks in order, each a dict of the object's
    public data attributes (all but `raw`; Decimals as their strings, times as float seconds) plus
    `receipt_timestamp`. Computed once per folder and process."""
    return _playback_all(Path(captures).resolve())


@functools.cache
def _playback_all(captures: Path) -> dict[str, dict[str, Any]]:
    sets = capture_sets(captures)
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for item in sets.items():
        todo.put(item)
    results: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        for run in [pool.submit(_work, todo, results) for _ in range(_WORKERS)]:
            run.result()
    return {name: results[name] for name in sets}
