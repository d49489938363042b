"""Loopback exchange simulator on 127.0.0.1 with TLS: synthetic Binance spot and USD-M futures markets,
and the replay of recorded cryptofeed captures over the socket."""
from __future__ import annotations

from cryptolake_nb.simulator.capture import CaptureServer
from cryptolake_nb.simulator.faults import Faults, Injected, SkippedIds
from cryptolake_nb.simulator.loopback import LoopbackServer
from cryptolake_nb.simulator.market import Instrument, Market
from cryptolake_nb.simulator.perpetual import PerpetualMarket
from cryptolake_nb.simulator.server import PROTOCOLS, ExchangeSimulator

__all__ = ["PROTOCOLS", "CaptureServer", "ExchangeSimulator", "Faults", "Injected", "SkippedIds", "Instrument", "LoopbackServer", "Market", "PerpetualMarket"]
