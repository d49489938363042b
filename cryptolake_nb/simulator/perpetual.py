"""Seeded perpetual-swap market: the spot model's books and trades plus marks, funding, liquidations,
open interest and 1-minute candles, rendered as Binance USD-M futures payloads."""
from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from cryptolake_nb.errors import ConfigError
from cryptolake_nb.simulator.market import AGG_TRADE, DEPTH, Instrument, Market, MarketEvent, _Book, _fmt

__all__ = ["BOOK_TICKER", "FORCE_ORDER", "KLINE", "MARK_PRICE", "PerpetualMarket"]

log = logging.getLogger(__name__)

BOOK_TICKER = "bookTicker"
MARK_PRICE = "markPrice"
FORCE_ORDER = "forceOrder"
KLINE = "kline_1m"

PERP_SUFFIX = "-PERP"
_FUNDING_PERIOD_MS = 8 * 3600 * 1000   # funding at 00:00, 08:00 and 16:00 UTC
_MINUTE_MS = 60_000
_MAX_FUNDING = 0.0075                  # |rate| cap per period


def _dec(value: Decimal) -> str:
    return f"{value:.8f}"


class _Candle:
    """One 1-minute candle built from trades, in Binance kline field names."""

    def __init__(self, start_ms: int, price: Decimal) -> None:
        self.start_ms, self.open = start_ms, price
        self.high = self.low = self.close = price
        self.volume = self.quote_volume = self.buy_volume = self.buy_quote = Decimal(0)
        self.trades, self.first_id, self.last_id = 0, -1, -1

    def add(self, price: Decimal, qty: Decimal, trade_id: int, buy: bool) -> None:
        if self.trades == 0:
            self.open = self.high = self.low = price
            self.first_id = trade_id
        self.high, self.low, self.close = max(self.high, price), min(self.low, price), price
        self.volume += qty
        self.quote_volume += qty * price
        if buy:
            self.buy_volume += qty
            self.buy_quote += qty * price
        self.trades += 1
        self.last_id = trade_id

    def render(self, symbol: str, closed: bool) -> dict[str, Any]:
        return {
            "t": self.start_ms, "T": self.start_ms + _MINUTE_MS - 1, "s": symbol, "i": "1m",
            "f": self.first_id, "L": self.last_id, "o": _dec(self.open), "c": _dec(self.close),
            "h": _dec(self.high), "l": _dec(self.low), "v": _dec(self.volume), "n": self.trades, "x": closed,
            "q": _dec(self.quote_volume), "V": _dec(self.buy_volume), "Q": _dec(self.buy_quote), "B": "0",
        }


class _Contract:
    """Per-contract state beyond the book: premium, funding rate, open interest, the current candle."""

    def __init__(self, inst: Instrument, book: _Book, rng: random.Random) -> None:
        self.inst, self.book, self.rng = inst, book, rng
        self.premium = 0.0                      # mark / mid - 1, mean-reverting
        self.funding = 0.0001                   # the usual 0.01 % per 8 h
        notional = rng.lognormvariate(math.log(50e6), 0.5)
        self.open_interest = max(1, round(notional / inst.start_price / float(inst.lot)))  # in lots
        self.candle: _Candle | None = None
        self.closed: list[_Candle] = []         # candles that ended and are not yet published

    def mid(self) -> float:
        return self.book.mid * float(self.inst.tick)

    def on_trade(self, trade: dict[str, Any]) -> None:
        price, qty, minute = Decimal(trade["p"]), Decimal(trade["q"]), trade["T"] // _MINUTE_MS * _MINUTE_MS
        self._roll(minute, price)
        assert self.candle is not None
        self.candle.add(price, qty, trade["a"], not trade["m"])
        lots = round(qty / self.inst.lot)
        self.open_interest = max(1, self.open_interest + self.rng.choice((-1, 0, 1)) * lots)  # opens or closes

    def _roll(self, minute: int, price: Decimal) -> None:
        if self.candle is None:
            self.candle = _Candle(minute, price)
        elif minute > self.candle.start_ms:
            self.closed.append(self.candle)
            self.candle = _Candle(minute, self.candle.close)

    def kline(self, ts_ms: int) -> dict[str, Any]:
        self._roll(ts_ms // _MINUTE_MS * _MINUTE_MS, Decimal(f"{self.mid():.8f}"))
        closed = bool(self.closed)
        candle = self.closed.pop(0) if closed else self.candle
        assert candle is not None
        return {"e": "kline", "E": ts_ms, "s": self.inst.exchange_symbol,
                "k": candle.render(self.inst.exchange_symbol, closed)}

    def mark_price(self, ts_ms: int) -> dict[str, Any]:
        self.premium = 0.9 * self.premium + self.rng.gauss(0.0, 2e-4)
        self.funding = min(_MAX_FUNDING, max(-_MAX_FUNDING, self.funding + self.rng.gauss(0.0, 2e-5)))
        index = self.mid() * (1 + self.rng.gauss(0.0, 5e-5))
        return {
            "e": "markPriceUpdate", "E": ts_ms, "s": self.inst.exchange_symbol,
            "p": f"{self.mid() * (1 + self.premium):.8f}", "i": f"{index:.8f}", "P": f"{index:.8f}",
            "r": f"{self.funding:.8f}", "T": (ts_ms // _FUNDING_PERIOD_MS + 1) * _FUNDING_PERIOD_MS,
        }

    def book_ticker(self, ts_ms: int) -> dict[str, Any]:
        book, tick, lot = self.book, self.inst.tick, self.inst.lot
        bid, ask = max(book.bids), min(book.asks)
        return {"e": "bookTicker", "u": book.update_id, "s": self.inst.exchange_symbol,
                "b": _fmt(bid, tick), "B": _fmt(book.bids[bid], lot),
                "a": _fmt(ask, tick), "A": _fmt(book.asks[ask], lot), "T": ts_ms, "E": ts_ms}

    def liquidation(self, ts_ms: int) -> dict[str, Any]:
        sell = self.rng.random() < 0.5          # a long's position is sold off below the bid
        through = self.rng.randint(1, 10)
        price = max(self.book.bids) - through if sell else min(self.book.asks) + through
        notional = self.rng.lognormvariate(math.log(5000.0), 1.0)
        qty = _fmt(max(1, round(notional / self.inst.start_price / float(self.inst.lot))), self.inst.lot)
        p = _fmt(max(1, price), self.inst.tick)
        return {"e": "forceOrder", "E": ts_ms, "o": {
            "s": self.inst.exchange_symbol, "S": "SELL" if sell else "BUY", "o": "LIMIT", "f": "IOC",
            "q": qty, "p": p, "ap": p, "X": "FILLED", "l": qty, "z": qty, "T": ts_ms}}


class PerpetualMarket(Market):
    """USDT-margined perpetuals named 'BASE-QUOTE-PERP'; books and trades as in `Market` (same seed,
    same starting books), plus, per step, with these probabilities: a best bid/ask (`ticker_share`),
    a mark price with funding (`funding_share`), a liquidation (`liquidation_share`) or a 1-minute
    candle update (`candle_share`); the rest is split into trades and depth diffs by `trade_share`."""

    def __init__(self, symbols: Iterable[str], *, seed: int = 0, trade_share: float = 0.5, levels: int = 20,
                 ticker_share: float = 0.1, funding_share: float = 0.05, liquidation_share: float = 0.02,
                 candle_share: float = 0.05) -> None:
        super().__init__(symbols, seed=seed, trade_share=trade_share, levels=levels)
        shares = (ticker_share, funding_share, liquidation_share, candle_share)
        if any(not 0.0 <= s <= 1.0 for s in shares) or sum(shares) > 1.0:
            raise ConfigError(f"ticker/funding/liquidation/candle shares must be in [0, 1] and sum to <= 1, got {shares}")
        self._extras = tuple(zip((BOOK_TICKER, MARK_PRICE, FORCE_ORDER, KLINE), shares))
        self._contracts = {s: _Contract(i, self._books[s], random.Random(self._rng.getrandbits(64)))
                           for s, i in self.instruments.items()}

    def _instrument(self, symbol: str) -> Instrument:
        if not isinstance(symbol, str) or not symbol.endswith(PERP_SUFFIX):
            raise ConfigError(f"perpetual symbol {symbol!r} is not of the form 'BASE-QUOTE-PERP' (e.g. 'BTC-USDT-PERP')")
        try:
            inst = super()._instrument(symbol[: -len(PERP_SUFFIX)])
        except ConfigError:
            raise ConfigError(f"perpetual symbol {symbol!r} is not of the form 'BASE-QUOTE-PERP' "
                              "(e.g. 'BTC-USDT-PERP')") from None
        return dataclasses.replace(inst, symbol=symbol)

    def step(self, ts_ms: int) -> MarketEvent:
        exchange_symbol = self._rng.choice(self._order)
        contract = self._contracts[exchange_symbol]
        draw = self._rng.random()
        for kind, share in self._extras:
            if draw < share:
                return MarketEvent(exchange_symbol, kind, self._render(contract, kind, ts_ms))
            draw -= share
        if self._rng.random() < self.trade_share:
            trade = contract.book.trade_event(ts_ms)
            contract.on_trade(trade)
            return MarketEvent(exchange_symbol, AGG_TRADE, trade)
        diff = contract.book.depth_event(ts_ms)
        diff.update(T=ts_ms, pu=diff["U"] - 1)  # USD-M diffs chain by the previous diff's final id
        return MarketEvent(exchange_symbol, DEPTH, diff)

    @staticmethod
    def _render(contract: _Contract, kind: str, ts_ms: int) -> dict[str, Any]:
        if kind == BOOK_TICKER:
            return contract.book_ticker(ts_ms)
        if kind == MARK_PRICE:
            return contract.mark_price(ts_ms)
        if kind == FORCE_ORDER:
            return contract.liquidation(ts_ms)
        return contract.kline(ts_ms)

    def snapshot(self, exchange_symbol: str, limit: int = 100, ts_ms: int = 0) -> dict[str, Any]:
        """USD-M /fapi/v1/depth body; KeyError for an unlisted symbol."""
        return {**self._books[exchange_symbol].snapshot(limit), "E": ts_ms, "T": ts_ms}

    def open_interest(self, exchange_symbol: str, ts_ms: int) -> dict[str, Any]:
        """USD-M /fapi/v1/openInterest body; KeyError for an unlisted symbol."""
        contract = self._contracts[exchange_symbol]
        return {"openInterest": _fmt(contract.open_interest, contract.inst.lot), "symbol": exchange_symbol,
                "time": ts_ms}

    def exchange_info(self, server_time_ms: int) -> dict[str, Any]:
        """USD-M /fapi/v1/exchangeInfo body, restricted to what clients read."""
        symbols = []
        for i in self.instruments.values():
            precision = max(0, -i.tick.as_tuple().exponent), max(0, -i.lot.as_tuple().exponent)
            symbols.append({
                "symbol": i.exchange_symbol, "pair": i.exchange_symbol, "contractType": "PERPETUAL",
                "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": "TRADING",
                "baseAsset": i.base, "quoteAsset": i.quote, "marginAsset": i.quote,
                "pricePrecision": precision[0], "quantityPrecision": precision[1], "underlyingType": "COIN",
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": _dec(i.tick), "maxPrice": "1000000",
                     "tickSize": _dec(i.tick)},
                    {"filterType": "LOT_SIZE", "minQty": _dec(i.lot), "maxQty": "9000000", "stepSize": _dec(i.lot)},
                ],
                "orderTypes": ["LIMIT", "MARKET"], "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
            })
        quotes = sorted({i.quote for i in self.instruments.values()})
        return {"timezone": "UTC", "serverTime": server_time_ms, "futuresType": "U_MARGINED", "rateLimits": [],
                "exchangeFilters": [], "assets": [{"asset": q, "marginAvailable": True} for q in quotes],
                "symbols": symbols}
