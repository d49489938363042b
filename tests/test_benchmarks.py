"""The benchmark code computes right answers at small sizes, so that a fast wrong answer cannot win:
every peer's bars, VWAPs, as-of join and day scan equal the lake's, and the lake's bars equal an
independent numpy computation from the generated rows."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from benchmarks.freshness import visibility_latency
from benchmarks.lake_system import LakeSystem
from benchmarks.peers.duckdb_plain import PlainDuckDB
from benchmarks.peers.pandas_baseline import PandasParquet
from benchmarks.peers.polars_scan import PolarsScan
from benchmarks.synth import EXCHANGES, SYMBOLS, market
from benchmarks.workload import QUERIES, Workload, disagreement

TOTAL, DAYS = 40_000, 2


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The market written once by the lake, by pandas, and as day files (what ArcticDB is given)."""
    root = tmp_path_factory.mktemp("bench")
    w = Workload(day=1)
    lake, pdp = LakeSystem(root / "lake", w), PandasParquet(root / "pandas", w)
    days, sources = [], []
    for day, table in market(TOTAL, DAYS):
        lake.write(table)
        pdp.write(table)
        pq.write_table(table, root / f"day-{day}.parquet")
        sources.append(str(root / f"day-{day}.parquet"))
        days.append(table)
    want = {q: lake.answer(q) for q in QUERIES}
    yield {"root": root, "w": w, "lake": lake, "pandas": pdp, "days": days, "sources": sources, "want": want}
    lake.close()


def test_market_is_deterministic_and_shaped_like_a_market() -> None:
    a = [t for _, t in market(20_000, 2, seed=4)]
    b = [t for _, t in market(20_000, 2, seed=4)]
    assert all(x.equals(y) for x, y in zip(a, b))
    assert not a[0].equals(next(market(20_000, 2, seed=5))[1])
    both = pa.concat_tables(a)
    assert 18_000 <= both.num_rows <= 22_000
    assert set(both.column("exchange").unique().to_pylist()) == set(EXCHANGES)
    assert set(both.column("symbol").unique().to_pylist()) == set(SYMBOLS)
    df = both.to_pandas()
    for _, g in df.groupby(["exchange", "symbol"]):
        assert g["ts"].is_monotonic_increasing and g["ts"].is_unique  # first/last by ts well defined
        assert g["trade_id"].astype(int).diff().dropna().eq(1).all()  # consecutive ids: no false gaps
    assert (df["price"] > 0).all() and (df["amount"] > 0).all() and (df["receipt_ts"] > df["ts"]).all()
    btc = df[df["symbol"] == "BTC-USDT"].groupby("exchange")["price"].median()
    assert btc.max() / btc.min() < 1.01  # one fair price shared by the venues


def test_lake_bars_equal_an_independent_computation(data: dict) -> None:
    w = data["w"]
    t = data["days"][w.day]
    t = t.filter(pc.and_(pc.equal(t["exchange"], w.exchange), pc.equal(t["symbol"], w.symbol)))
    ts = t["ts"].cast(pa.int64()).to_numpy()
    price, amount = t["price"].to_numpy(), t["amount"].to_numpy()
    bucket = ts // w.step_ns * w.step_ns
    rows = []
    for b in np.unique(bucket):
        m = bucket == b
        order = np.argsort(ts[m])
        p, a = price[m][order], amount[m][order]
        rows.append({"bucket": b, "open": p[0], "high": p.max(), "low": p.min(), "close": p[-1],
                     "volume": a.sum(), "trades": len(p), "vwap": (p * a).sum() / a.sum()})
    assert disagreement("ohlc", data["want"]["ohlc"], pd.DataFrame(rows)) is None


def test_lake_vwap_equals_an_independent_computation(data: dict) -> None:
    df = pa.concat_tables(data["days"]).to_pandas()
    df["n"] = df["price"] * df["amount"]
    g = df.groupby(["exchange", "symbol"], sort=True).agg(n=("n", "sum"), volume=("amount", "sum"), trades=("price", "size"))
    g["vwap"] = g.pop("n") / g["volume"]
    assert disagreement("vwap", data["want"]["vwap"], g.reset_index()) is None


@pytest.mark.parametrize("peer", ["duckdb", "polars", "pandas"])
@pytest.mark.parametrize("query", QUERIES)
def test_each_peer_answers_as_the_lake_does(data: dict, peer: str, query: str) -> None:
    files = data["lake"].files()
    system = {"duckdb": lambda: PlainDuckDB(files, data["w"]), "polars": lambda: PolarsScan(files, data["w"]),
              "pandas": lambda: data["pandas"]}[peer]()
    got = system.answer(query)
    assert len(got) > 0
    assert disagreement(query, got, data["want"][query]) is None


def test_pandas_scan_without_partition_filter_answers_the_same(data: dict) -> None:
    assert disagreement("scan", data["pandas"].scan(pruned=False), data["want"]["scan"]) is None
    assert disagreement("scan", data["lake"].sql("scan", pruned=False).to_pandas(), data["want"]["scan"]) is None


@pytest.mark.slow
def test_arcticdb_answers_as_the_lake_does(data: dict) -> None:
    """Through its own virtual environment, made here when missing (as `make bench` makes it): the
    driver's bars come from ArcticDB's own resample, so only ArcticDB itself can check them."""
    from benchmarks.peers.arctic import arctic_answers, ensure_venv, run_driver

    python = ensure_venv()
    result = run_driver({"store": str(data["root"] / "arctic"), "sources": data["sources"],
                         "workload": data["w"].as_dict(), "repeat": 1}, python=python)
    got = arctic_answers(result)
    assert result["write"]["rows"] == sum(t.num_rows for t in data["days"])
    for q in QUERIES:
        assert disagreement(q, got[q], data["want"][q]) is None, q


def test_a_wrong_answer_is_caught(data: dict) -> None:
    want = data["want"]
    bars = want["ohlc"].copy()
    bars.loc[len(bars) // 2, "close"] *= 1.0001
    assert "close" in disagreement("ohlc", bars, want["ohlc"])
    assert "rows" in disagreement("ohlc", want["ohlc"].iloc[1:], want["ohlc"])
    v = want["vwap"].copy()
    v.loc[0, "symbol"] = "XXX"
    assert disagreement("vwap", v, want["vwap"]) is not None


def test_visibility_latency_takes_the_first_answer_that_saw_the_row() -> None:
    answers = [(1_000, 500), (2_000, 1_500), (3_000, 2_500)]  # (arrived, newest receipt seen)
    out = visibility_latency(np.array([400, 500, 501, 1_500, 2_600]), answers)
    # 400 -> 1000 (0.6 us), 500 -> 1000, 501 -> 2000, 1500 -> 2000; 2600 never seen
    assert out["rows"] == 4 and out["unseen_rows"] == 1
    assert out["max_ms"] == pytest.approx(1.499e-3)


def test_report_states_misses(data: dict, tmp_path: Path) -> None:
    from benchmarks.method import METHOD
    from benchmarks.report import markdown
    from benchmarks.targets import checks

    result = {"machine": {"cpu": "x", "cpus": 2, "ram_gib": 1, "platform": "p", "python": "3", "load_avg_at_start": [0],
                          "versions": {"duckdb": "1"}},
              "mode": "quick", "sizes": {"trades": 1}, "started": "now", "elapsed_s": 1.0,
              "flush": {"rows": 10, "lake_rows_per_s": 1e6, "latency_s": 1e-5, "latency_min_s": 1e-5, "latency_max_s": 1e-5,
                        "pyarrow_default_rows_per_s": 2e6, "lake_bytes_per_trade": 15.0, "pyarrow_default_bytes_per_trade": 20.0},
              "memory": {"rows": 10, "rss_to_arrow": 1.5, "rss_mb_per_million_rows": 100, "arrow_mb_per_million_rows": 70,
                         "peak_rss_mb": 10}}
    got = {c[0]: c[4] for c in checks(result)}
    assert got["flush throughput"] is False and got["RSS / Arrow size of buffered rows"] is True
    text = markdown(result, METHOD)
    assert "| flush throughput | 1.00 M rows/s |" in text and "**NO**" in text and "## Method" in text


def test_cost_per_message_drives_every_frame_through_cryptofeed_into_the_lake(tmp_path: Path) -> None:
    from benchmarks.parse_cost import bench_parse_cost

    r = bench_parse_cost(3_000, tmp_path / "parse", repeat=2)
    assert r["rows_stored"] == 6_000  # each round's fresh frames, every one stored once
    for k in ("cryptofeed_us_per_msg", "lake_callback_us", "keep_us", "seal_us_per_row", "flush_us_per_row"):
        assert np.isfinite(r[k]), k
    assert r["cryptofeed_us_per_msg"] > 0 and r["seal_us_per_row"] > 0
    assert r["runs_paired"] == 2 * 2  # two runs of 2,000 frames (2,000 + 1,000) per round
    low, high = r["cryptofeed_run_us"]  # a round's cost per message lies within its runs' range
    assert low <= r["cryptofeed_us_per_msg"] <= high
    for share in ("keep_share", "callback_share"):  # a median of the paired runs, between their quartiles
        low, high = r[f"{share}_iqr"]
        assert low <= r[share] <= high, share
