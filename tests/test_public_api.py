"""The package's public surface: a sorted __all__ of names that exist, and nothing private leaks."""
from __future__ import annotations

import cryptolake_nb
from cryptolake_nb import errors


def test_all_is_sorted_and_complete():
    names = cryptolake_nb.__all__
    assert names == sorted(names)
    assert all(hasattr(cryptolake_nb, n) for n in names)
    assert not any(n.startswith("_") for n in names)


def test_every_error_is_exported_and_in_the_tree():
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.CryptolakeError)
        assert name in cryptolake_nb.__all__, f"{name} not re-exported"
        assert name in errors.__doc__, f"{name} missing from the tree drawn in errors.py"


def test_helpers_exist_as_lake_methods_too():
    for name in ("vwap", "ohlc", "book_at", "top_of_book", "depth", "compare_candles"):
        assert callable(getattr(cryptolake_nb.Lake, name))
