"""time_weighted (the engine of `twap`) against a plain per-bucket loop, with chunks as small as one row
so that buckets, symbols and runs of tied times cross chunk boundaries."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cryptolake_nb.time_weighted as tw


def reference(rows: pd.DataFrame, step: int | None, end_ns: int | None) -> pd.DataFrame:
    """Sort by (s, t, r) keeping arrival order on full ties; each price holds until the next trade of
    its (s, bucket), the last until the bucket ends (or `end_ns`); no weight at all: the plain mean."""
    d = rows.sort_values(["s", "t", "r"], kind="stable")
    d = d.assign(bucket=0 if step is None else d.t // step * step)
    out = []
    for (s, bucket), g in d.groupby(["s", "bucket"], sort=True):
        t, p = g.t.to_numpy(), g.price.to_numpy()
        if step is None:
            until = t[-1] if end_ns is None else end_ns
        else:
            until = bucket + step if end_ns is None else min(bucket + step, end_ns)
        w = np.append(np.diff(t), until - t[-1]).astype(float)
        value = (p * w).sum() / w.sum() if w.sum() > 0 else p.mean()
        out.append((s, bucket, value, len(g)))
    return pd.DataFrame(out, columns=["s", "bucket", "twap", "trades"])


def table(s: list[int], t: list[int], r: list[int], price: list[float], batches: int) -> pa.Table:
    whole = pa.table({"s": pa.array(s, pa.int32()), "t": pa.array(t, pa.int64()), "r": pa.array(r, pa.int64()),
                      "price": pa.array(price, pa.float64())})
    size = max(1, -(-len(s) // batches))
    return pa.Table.from_batches(whole.to_batches(max_chunksize=size), schema=whole.schema)  # several batches


@st.composite
def trades(draw):
    n = draw(st.integers(1, 60))
    wide = draw(st.booleans())  # times spanning more than a packed int64 key holds: the lexsort path
    times = st.integers(0, 2**62) if wide else st.integers(0, 40)
    rows = draw(st.lists(st.tuples(st.integers(0, 3), times, st.integers(0, 3),
                                   st.floats(0.5, 100, allow_nan=False)), min_size=n, max_size=n))
    return [list(c) for c in zip(*rows)]


@settings(max_examples=300, deadline=None)
@given(trades(), st.sampled_from([None, 1, 7, 10**18]), st.sampled_from([None, 0, 25, 2**61]),
       st.integers(1, 5), st.integers(1, 4))
def test_time_weighted_equals_a_plain_loop_for_any_chunking(rows, step, end_ns, chunk, batches):
    s, t, r, price = rows
    if end_ns is not None and end_ns < max(t):
        end_ns = max(t)  # `end` bounds the rows it selected
    mp = pytest.MonkeyPatch()
    mp.setattr(tw, "CHUNK", chunk)
    try:
        got = tw.time_weighted(table(s, t, r, price, batches), step, end_ns).to_pandas()
    finally:
        mp.undo()
    want = reference(pd.DataFrame({"s": s, "t": t, "r": r, "price": price}), step, end_ns)
    assert got[["s", "bucket", "trades"]].astype("int64").values.tolist() == want[["s", "bucket", "trades"]].values.tolist()
    np.testing.assert_allclose(got.twap, want.twap, rtol=1e-12)


def test_ties_on_time_are_ordered_by_receipt_across_a_chunk_boundary(monkeypatch):
    # one bucket of 10 ns: price 1 at t=0, then at t=4 two trades received in reverse order of arrival
    monkeypatch.setattr(tw, "CHUNK", 2)
    rows = table([0, 0, 0], [4, 0, 4], [9, 1, 3], [30.0, 1.0, 20.0], 1)
    got = tw.time_weighted(rows, 10, None).to_pandas()
    # 1.0 holds 4 ns; 20.0 (received at 3) holds 0 ns; 30.0 (received at 9) holds until the bucket ends
    assert got.twap.tolist() == [pytest.approx((1.0 * 4 + 30.0 * 6) / 10)]
    assert got.trades.tolist() == [3]


def test_no_rows_give_an_empty_table_of_the_right_types():
    got = tw.time_weighted(table([], [], [], [], 1), 60, None)
    assert got.num_rows == 0
    assert [str(x) for x in got.schema.types] == ["int32", "int64", "double", "int64"]
