"""Seeded synthetic market: random-walk books and trades rendered as Binance SPOT payloads."""
from __future__ import annotations

import logging
import math
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cryptolake_nb.errors import ConfigError

__all__ = ["AGG_TRADE", "DEPTH", "Instrument", "Market", "MarketEvent"]

log = logging.getLogger(__name__)

AGG_TRADE = "aggTrade"
DEPTH = "depth"

_SYMBOL_RE = re.compile(r"^([A-Z0-9]{2,12})-([A-Z0-9]{2,12})$")
# reference prices in USD; anything else gets a seeded log-uniform price
_USD_PRICES = {"BTC": 60000.0, "ETH": 3000.0, "BNB": 600.0, "SOL": 150.0, "XRP": 0.5, "DOGE": 0.15,
               "ADA": 0.45, "LTC": 80.0, "USDT": 1.0, "USDC": 1.0, "FDUSD": 1.0, "BUSD": 1.0}


@dataclass(frozen=True)
class Instrument:
    """One listed pair: normalised and exchange names, price tick and quantity step."""

    symbol: str           # cryptofeed normalised, e.g. "BTC-USDT"
    exchange_symbol: str  # Binance, e.g. "BTCUSDT"
    base: str
    quote: str
    tick: Decimal
    lot: Decimal
    start_price: float


@dataclass(frozen=True)
class MarketEvent:
    """One payload for the stream `<exchange_symbol lower>@<kind>`."""

    exchange_symbol: str
    kind: str  # AGG_TRADE or DEPTH
    payload: dict[str, Any]


def _pow10(x: float) -> Decimal:
    return Decimal(1).scaleb(math.floor(math.log10(x)))


def _fmt(units: int, step: Decimal) -> str:
    return f"{units * step:.8f}"


class _Book:
    """Price levels in integer ticks around a random-walk mid, with Binance update ids."""

    def __init__(self, inst: Instrument, rng: random.Random, levels: int) -> None:
        self.inst = inst
        self.rng = rng
        self.levels = levels
        self.mid = max(levels + 2, round(inst.start_price / float(inst.tick)))
        self.update_id = rng.randrange(1_000_000, 9_000_000)
        self.trade_id = rng.randrange(100_000, 900_000)
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self._requote()

    def _level_size(self) -> int:
        notional = self.rng.lognormvariate(math.log(5000.0), 1.0)
        return max(1, round(notional / self.inst.start_price / float(self.inst.lot)))

    def _requote(self) -> list[tuple[str, int, int]]:
        """Re-centre both sides on the mid; return (side, price, size) changes, size 0 = removed."""
        changes: list[tuple[str, int, int]] = []
        for side, book, sign in (("b", self.bids, -1), ("a", self.asks, 1)):
            wanted = {self.mid + sign * i for i in range(1, self.levels + 1)}
            for price in sorted(set(book) - wanted):
                del book[price]
                changes.append((side, price, 0))
            for price in sorted(wanted - set(book)):
                book[price] = self._level_size()
                changes.append((side, price, book[price]))
        return changes

    def depth_event(self, ts_ms: int) -> dict[str, Any]:
        self.mid = max(self.levels + 2, self.mid + round(self.rng.gauss(0.0, 1.5)))
        changes = self._requote()
        for _ in range(self.rng.randint(1, 3)):  # some resting size comes and goes
            side, book = self.rng.choice((("b", self.bids), ("a", self.asks)))
            price = self.rng.choice(list(book))
            book[price] = self._level_size()
            changes.append((side, price, book[price]))
        first = self.update_id + 1
        self.update_id += len(changes)
        tick, lot = self.inst.tick, self.inst.lot
        return {
            "e": "depthUpdate", "E": ts_ms, "s": self.inst.exchange_symbol,
            "U": first, "u": self.update_id,
            "b": [[_fmt(p, tick), _fmt(q, lot)] for s, p, q in changes if s == "b"],
            "a": [[_fmt(p, tick), _fmt(q, lot)] for s, p, q in changes if s == "a"],
        }

    def trade_event(self, ts_ms: int) -> dict[str, Any]:
        buy = self.rng.random() < 0.5
        price = min(self.asks) if buy else max(self.bids)
        notional = self.rng.lognormvariate(math.log(200.0), 1.5)
        qty = max(1, round(notional / self.inst.start_price / float(self.inst.lot)))
        self.trade_id += 1
        return {
            "e": "aggTrade", "E": ts_ms, "s": self.inst.exchange_symbol, "a": self.trade_id,
            "p": _fmt(price, self.inst.tick), "q": _fmt(qty, self.inst.lot),
            "f": self.trade_id, "l": self.trade_id, "T": ts_ms,
            "m": not buy,  # buyer is the maker when the taker sold
            "M": True,
        }

    def snapshot(self, limit: int) -> dict[str, Any]:
        tick, lot = self.inst.tick, self.inst.lot
        bids = sorted(self.bids.items(), reverse=True)[:limit]
        asks = sorted(self.asks.items())[:limit]
        return {
            "lastUpdateId": self.update_id,
            "bids": [[_fmt(p, tick), _fmt(q, lot)] for p, q in bids],
            "asks": [[_fmt(p, tick), _fmt(q, lot)] for p, q in asks],
        }


class Market:
    """Deterministic for a given seed and call sequence; not thread-safe (one loop owns it)."""

    def __init__(self, symbols: Iterable[str], *, seed: int = 0, trade_share: float = 0.5, levels: int = 20) -> None:
        symbols = tuple(symbols)
        if not symbols:
            raise ConfigError("the simulator needs at least one symbol")
        if not 0.0 <= trade_share <= 1.0:
            raise ConfigError(f"trade_share must be within [0, 1], got {trade_share!r}")
        if levels < 1:
            raise ConfigError(f"levels must be >= 1, got {levels!r}")
        self._rng = random.Random(seed)
        self.trade_share = trade_share
        self.instruments: dict[str, Instrument] = {}
        self._books: dict[str, _Book] = {}
        for symbol in symbols:
            inst = self._instrument(symbol)
            if inst.exchange_symbol in self.instruments:
                raise ConfigError(f"duplicate simulator symbol {symbol!r}")
            self.instruments[inst.exchange_symbol] = inst
            self._books[inst.exchange_symbol] = _Book(inst, random.Random(self._rng.getrandbits(64)), levels)
        self._order = list(self.instruments)

    def _instrument(self, symbol: str) -> Instrument:
        match = _SYMBOL_RE.match(symbol) if isinstance(symbol, str) else None
        if match is None:
            raise ConfigError(f"simulator symbol {symbol!r} is not of the form 'BASE-QUOTE' (e.g. 'BTC-USDT')")
        base, quote = match.groups()
        if base == quote:
            raise ConfigError(f"simulator symbol {symbol!r} has the same base and quote")
        base_usd = _USD_PRICES.get(base) or math.exp(self._rng.uniform(math.log(0.5), math.log(500.0)))
        quote_usd = _USD_PRICES.get(quote, 1.0)
        price = base_usd / quote_usd
        return Instrument(symbol=symbol, exchange_symbol=base + quote, base=base, quote=quote,
                          tick=_pow10(price * 1e-5), lot=_pow10(0.1 / price), start_price=price)

    @property
    def symbol_map(self) -> dict[str, str]:
        """Normalised symbol -> exchange symbol."""
        return {i.symbol: i.exchange_symbol for i in self.instruments.values()}

    def step(self, ts_ms: int) -> MarketEvent:
        """Advance one event: a trade (probability trade_share) or a depth diff, on a random symbol."""
        exchange_symbol = self._rng.choice(self._order)
        book = self._books[exchange_symbol]
        if self._rng.random() < self.trade_share:
            return MarketEvent(exchange_symbol, AGG_TRADE, book.trade_event(ts_ms))
        return MarketEvent(exchange_symbol, DEPTH, book.depth_event(ts_ms))

    def skip_trade_ids(self, exchange_symbol: str, count: int) -> tuple[int, int]:
        """Advance `exchange_symbol`'s trade ids by `count` unsent ids; return the (first, last) skipped."""
        book = self._books[exchange_symbol]
        first = book.trade_id + 1
        book.trade_id += count
        return first, book.trade_id

    def snapshot(self, exchange_symbol: str, limit: int = 100) -> dict[str, Any]:
        """Binance /api/v3/depth body; KeyError for an unlisted symbol."""
        return self._books[exchange_symbol].snapshot(limit)

    def exchange_info(self, server_time_ms: int) -> dict[str, Any]:
        """Binance /api/v3/exchangeInfo body, restricted to what clients read."""
        return {
            "timezone": "UTC",
            "serverTime": server_time_ms,
            "rateLimits": [],
            "exchangeFilters": [],
            "symbols": [
                {
                    "symbol": i.exchange_symbol, "status": "TRADING",
                    "baseAsset": i.base, "quoteAsset": i.quote,
                    "baseAssetPrecision": 8, "quotePrecision": 8, "quoteAssetPrecision": 8,
                    "isSpotTradingAllowed": True, "permissions": ["SPOT"],
                    "filters": [
                        {"filterType": "PRICE_FILTER", "minPrice": f"{i.tick:.8f}",
                         "maxPrice": "1000000.00000000", "tickSize": f"{i.tick:.8f}"},
                        {"filterType": "LOT_SIZE", "minQty": f"{i.lot:.8f}",
                         "maxQty": "9000000.00000000", "stepSize": f"{i.lot:.8f}"},
                    ],
                }
                for i in self.instruments.values()
            ],
        }
