"""In a real Jupyter kernel (nbclient): status renders as HTML, charts as exactly one PNG each, a live
chart updates one output in place, and long operations draw a progress bar without being asked."""
from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

CELLS = [
    """
import cryptolake_nb as cl
from decimal import Decimal
from cryptofeed.types import Trade
lake = cl.Lake(ROOT, autoflush=False, autocompact=False, compact_min_files=2)
cb = cl.TradeLake(lake)
for n in range(3):
    for sym in ("BTC-USDT", "ETH-USDT"):
        await cb(Trade("BINANCE", sym, "buy", Decimal(1), Decimal(100 + n), 1_700_000_000.0 + n, id=str(n), type=None,
                       raw=None), 1_700_000_100.0)
    lake.flush()
""",
    "done = lake.compact()",
    'cl.plot_ohlc(lake.ohlc("BTC-USDT", "1s"))',
    """
chart = cl.LiveChart("ohlc")
for _ in range(3):
    chart.show(lake.ohlc("BTC-USDT", "1s"))
""",
    "lake.status()",
]


@pytest.mark.slow  # starts a kernel: a few seconds
def test_outputs_in_a_real_kernel(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"ROOT = {str(tmp_path / 'lake')!r}")]
    nb.cells += [nbformat.v4.new_code_cell(c.strip()) for c in CELLS]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [c.outputs for c in nb.cells]
    assert not any(o.output_type == "error" for cell in outputs for o in cell), outputs
    assert outputs[1] == []  # loading and flushing print nothing

    bar = "".join(o.text for o in outputs[2] if o.output_type == "stream" and o.name == "stderr")
    assert "compact" in bar and "2/2" in bar  # in a kernel, the bar shows by default

    def images(cell: list) -> list:
        return [o for o in cell if "image/png" in o.get("data", {})]

    assert len(images(outputs[3])) == 1 and len(outputs[3]) == 1  # no second copy from a pyplot backend
    live = images(outputs[4])
    assert len(live) == 1 and len(outputs[4]) == 1  # three shows, one output updated in place
    html = outputs[5][0]["data"]["text/html"]
    assert "recent queries" in html and "trades 1/0" in html  # compacted: one BTC-USDT file
