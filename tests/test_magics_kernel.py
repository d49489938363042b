"""%%lakesql in a real kernel: --every refreshes its outputs in place and stops cleanly (after --for,
or on the kernel's interrupt), --plot refreshes a chart, and an error is one line, no traceback."""
from __future__ import annotations

import re
import sys

import pytest

from kernels import QUIET_ENV, notebook, run, stdout_json

pytestmark = pytest.mark.slow

SETUP = """
import asyncio, json, sys, threading, time
from decimal import Decimal
from cryptofeed.types import Trade
from cryptolake_nb import TradeLake
%load_ext cryptolake_nb
stop = threading.Event()

def feed():  # a trade every 10 ms, as a collector thread would deliver them
    cb, loop, i = TradeLake(lake), asyncio.new_event_loop(), 0
    while not stop.is_set():
        t = Trade("BINANCE", "BTC-USDT", "buy", Decimal("1"), Decimal(100 + i % 7), 1_700_000_000.0 + i,
                  id=str(i), type=None, raw=None)
        loop.run_until_complete(cb(t, time.time()))
        i += 1
        time.sleep(0.01)
    loop.close()

feeder = threading.Thread(target=feed, daemon=True)
feeder.start()
while lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 0:
    time.sleep(0.01)
"""
EVERY_FOR, EVERY_INTERRUPTED, PLOT, ERROR, AFTER = 2, 3, 4, 5, 6


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    root = tmp_path_factory.mktemp("kernel")
    nb = notebook(
        SETUP,
        "%%lakesql --every 0.2s --for 2s -o watched\nSELECT count(*) AS n FROM trades",
        "%%lakesql --every 0.2s\nSELECT count(*) AS n FROM trades",
        "%%lakesql --every 0.2s --for 2s --plot\nSELECT ts, price FROM trades ORDER BY ts",
        "%%lakesql\nSELECT no_such_column FROM trades",
        "import traceback\nstop.set(); feeder.join(10)\n"
        "stack = traceback.format_stack(sys._current_frames()[feeder.ident]) if feeder.is_alive() else []\n"
        "print(json.dumps({'alive': feeder.is_alive(), 'stack': stack, 'watched': int(watched['n'][0]), 'prefix': sys.prefix}))",
        raises=(ERROR,),
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRYPTOLAKE_ROOT", str(root / "lake"))
        for k, v in QUIET_ENV.items():
            mp.setenv(k, v)
        client = run(nb, root, interrupt_after=(EVERY_INTERRUPTED, "update_display_data"))
    return client, nb


def _displays(client, cell):
    """(display_id, msg_type, text/plain) of every display message of a cell, in order."""
    return [(m["content"]["transient"]["display_id"], m["msg_type"], m["content"]["data"].get("text/plain", ""))
            for m in client.of(cell, "display_data", "update_display_data")]


def _counts(texts):
    return [int(re.search(r"(\d+)\s*$", t.strip()).group(1)) for t in texts]


def test_the_kernel_is_this_environment(kernel):
    client, _ = kernel
    assert stdout_json(client, AFTER)["prefix"] == sys.prefix


def test_every_refreshes_the_same_outputs_in_place_then_stops_after_for(kernel):
    client, nb = kernel
    shown = _displays(client, EVERY_FOR)
    new = [d for d in shown if d[1] == "display_data"]
    assert len(new) == 2, "one output for the result, one for the caption"
    result_id, caption_id = new[0][0], new[1][0]
    updates = [d for d in shown if d[1] == "update_display_data"]
    assert {d[0] for d in updates} == {result_id, caption_id}
    counts = _counts([new[0][2]] + [t for i, _, t in updates if i == result_id])
    assert len(counts) >= 3
    assert counts == sorted(counts) and counts[-1] > counts[0], f"live rows must show up: {counts}"
    assert "stopped (--for 2s elapsed)" in [t for i, _, t in updates if i == caption_id][-1]
    assert len(nb.cells[EVERY_FOR].outputs) == 2, "updates replace outputs, they do not append"
    assert not client.of(EVERY_FOR, "error")
    assert stdout_json(client, AFTER)["watched"] >= counts[-1], "-o VAR holds the latest result"


def test_every_stops_cleanly_on_the_kernels_interrupt(kernel):
    client, nb = kernel
    assert client.interrupted
    shown = _displays(client, EVERY_INTERRUPTED)
    assert "stopped (interrupted)" in shown[-1][2]
    assert not client.of(EVERY_INTERRUPTED, "error"), "an interrupt ends the watch, it is not an error"
    assert not [m for m in client.of(EVERY_INTERRUPTED, "stream") if m["content"]["name"] == "stderr"]
    assert nb.cells[EVERY_INTERRUPTED].execution_count is not None
    after = stdout_json(client, AFTER)  # the kernel went on running cells
    assert after["alive"] is False, "".join(after["stack"])


def test_every_with_plot_refreshes_a_chart(kernel):
    client, _ = kernel
    msgs = client.of(PLOT, "display_data", "update_display_data")
    charts = [m for m in msgs if "image/png" in m["content"]["data"]]
    assert charts[0]["msg_type"] == "display_data"
    assert any(m["msg_type"] == "update_display_data" for m in charts)
    assert len({m["content"]["transient"]["display_id"] for m in charts}) == 1


def test_a_failing_query_is_one_line_without_traceback(kernel):
    client, _ = kernel
    assert not client.of(ERROR, "error"), "no traceback message"
    err = "".join(m["content"]["text"] for m in client.of(ERROR, "stream") if m["content"]["name"] == "stderr")
    assert err.strip().count("\n") == 0
    assert err.startswith("UsageError: QueryError: Binder Error") and "no_such_column" in err
