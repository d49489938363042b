"""benchmarks/health_bench.py at a small size: both configurations store every trade, the monitored one
counts every message and is scraped, and the report states the target and the verdict."""
from __future__ import annotations

import pytest

from benchmarks.health_bench import TARGET, make_trades, measure, report_markdown


def test_health_bench_measures_what_it_says(tmp_path):
    trades = make_trades(8)
    assert [t.symbol for t, _ in trades[:4]] == ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT"]
    assert [t.id for t, _ in trades] == ["0"] * 4 + ["1"] * 4  # consecutive ids per symbol: no sequence gaps
    result = measure(runs=2, n_trades=4_000, workdir=tmp_path)  # run_once raises if a row or a count is missing
    assert len(result["off"]["runs_s"]) == len(result["on"]["runs_s"]) == 2
    assert all(n >= 1 for n in result["on"]["scrapes"]) and result["on"]["metrics_bytes"] > 1_000
    pairs = sorted(b / a for a, b in zip(result["off"]["runs_s"], result["on"]["runs_s"]))
    assert result["cost"] == pytest.approx((pairs[0] + pairs[1]) / 2 - 1)  # the median of two pairs
    assert result["medians_cost"] == result["on"]["median_s"] / result["off"]["median_s"] - 1
    assert result["met"] == (result["cost"] < TARGET and result["cpu_cost"] < TARGET)
    assert result["estimated_cost"] > 0
    parts = result["parts"]
    assert parts["sealed_batches"] >= 1 and parts["observe_us_per_batch"] > 0 and parts["health_report_ms"] > 0
    assert parts["scrape_cpu_ms"] > 0
    text = report_markdown(result, {"cpu": "test cpu", "cpus": 2, "python": "3", "load_avg_at_start": [0.0]})
    assert "Target: cost < 5%: **" in text and ("**met**" in text) == result["met"] and "test cpu" in text
