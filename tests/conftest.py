"""Shared fixtures: a lake in tmp_path, a trade factory, the captures folder, a loopback-only guard."""
from __future__ import annotations

import ipaddress
import socket
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from cryptofeed.types import Trade

from cryptolake_nb import Lake

from cryptofeed_reference import CAPTURES  # noqa: E402  (one definition of where the captures live)


def _loopback_only(event: str, args: tuple) -> None:
    """Tests may talk to 127.0.0.0/8 and ::1 only: fail any other connection attempt."""
    if event != "socket.connect":
        return
    sock, address = args
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0]
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise ConnectionRefusedError(f"test guard: connection to non-loopback address {host!r} refused")


sys.addaudithook(_loopback_only)


@pytest.fixture
def captures() -> Path:
    """The real recorded captures beside the checkout; missing means a broken set-up, not a skip."""
    if not CAPTURES.is_dir():
        pytest.fail(f"recorded captures not found at {CAPTURES}: ../shared/data must sit beside the checkout")
    return CAPTURES


@pytest.fixture
def lake(tmp_path: Path):
    """A lake with no background flusher: tests flush explicitly."""
    with Lake(tmp_path / "lake", autoflush=False) as lk:
        yield lk


@pytest.fixture
def make_trade():
    """Build a real cryptofeed Trade: make_trade(price, amount, ts, symbol=..., id=...)."""

    def make(price, amount, ts, *, symbol="BTC-USDT", exchange="BINANCE", side="buy", id=None):
        return Trade(exchange, symbol, side, Decimal(str(amount)), Decimal(str(price)), ts, id=id, type=None, raw=None)

    return make
