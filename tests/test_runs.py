"""runs: the stretches a reader calls steady spare the key comparisons and change nothing else;
gathered: a take from a table in many chunks, chunk by chunk, gives what Arrow's take gives."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptolake_nb.runs import gathered, runs

_KEYS = ["exchange", "symbol"]


@st.composite
def _stretches(draw):
    """Stretches of rows, each one stream (steady, as a file) or several interleaved (as live rows),
    with times that may go back anywhere, and NULL symbols among the interleaved ones."""
    out = []
    for _ in range(draw(st.integers(1, 5))):
        n = draw(st.integers(1, 12))
        one = draw(st.booleans())
        streams = [(draw(st.sampled_from("AB")), draw(st.sampled_from(["x", "y", None])))
                   for _ in range(1 if one else n)]
        if one and streams[0][1] is None:
            streams = [(streams[0][0], "x")]
        rows = [streams[0 if one else i] for i in range(n)]
        times = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
        out.append((rows, times, frozenset(_KEYS) if one else frozenset()))
    return out


@settings(max_examples=300, deadline=None)
@given(_stretches())
def test_steady_stretches_give_the_same_runs_plus_their_starts(stretches):
    rows = [r for s, _, _ in stretches for r in s]
    t = np.array([x for _, ts, _ in stretches for x in ts], np.int64)
    table = pa.table({"exchange": [e for e, _ in rows], "symbol": [s for _, s in rows]},
                     schema=pa.schema([("exchange", pa.large_string()), ("symbol", pa.large_string())]))
    steady = [(len(s), same) for s, _, same in stretches]
    starts = np.cumsum([0] + [n for n, _ in steady[:-1]])
    plain = runs(table, _KEYS, t)
    assert runs(table, _KEYS, t, steady).tolist() == sorted(set(plain.tolist()) | set(starts.tolist()))
    # claiming nothing steady is the same as saying nothing, but for the stretches' starts
    unclaimed = [(n, frozenset()) for n, _ in steady]
    assert runs(table, _KEYS, t, unclaimed).tolist() == sorted(set(plain.tolist()) | set(starts.tolist()))


def test_a_stretch_steady_in_one_key_still_compares_the_other():
    table = pa.table({"exchange": ["A"] * 4, "symbol": ["x", "x", "y", "y"]})
    t = np.arange(4, dtype=np.int64)
    assert runs(table, _KEYS, t, [(4, frozenset({"exchange"}))]).tolist() == [0, 2]
    assert runs(table, _KEYS, t, [(4, frozenset(_KEYS))]).tolist() == [0]  # what the claim is trusted to mean


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=0, max_size=6), st.data())
def test_gathered_is_arrows_take_in_one_chunk(sizes, data):
    """Chunks of any size (empty ones too) and columns chunked alike or not; rows in any order,
    repeated, or none."""
    n = sum(sizes)
    values = [data.draw(st.one_of(st.none(), st.text("ab", max_size=3))) for _ in range(n)]
    cuts = np.cumsum([0, *sizes])
    text = pa.chunked_array([pa.array(values[a:b], pa.large_string()) for a, b in zip(cuts[:-1], cuts[1:])],
                            pa.large_string())
    table = pa.table({"s": text, "i": pa.chunked_array([pa.array(np.arange(n, dtype=np.int64))])})
    rows = np.array(data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=10 if n else 0)), np.int64)
    got = gathered(table, rows)
    assert got.equals(table.take(rows))
    assert all(c.num_chunks <= 1 for c in got.columns)
    assert got.column("i").to_pylist() == rows.tolist()
