"""Loopback exchange simulator: Binance SPOT's public protocol over TLS on 127.0.0.1."""
from __future__ import annotations

from cryptolake_nb.simulator.market import Instrument, Market
from cryptolake_nb.simulator.server import ExchangeSimulator

__all__ = ["ExchangeSimulator", "Instrument", "Market"]
