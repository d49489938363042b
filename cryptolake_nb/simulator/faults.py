"""A seeded fault plan for the simulated venues, and the record of what was injected.

`Faults` says how often each fault hits a trade frame (probabilities drawn from its own seeded RNG, so
for a given market seed and fault seed the sequence of faults over the trade sequence is the same
every run). Disconnects, silences and bursts are commands on the simulator (`drop_connections()`,
`silence(s)`, `burst(n, rate=)`), since a test wants them at chosen moments. Everything injected is
counted in `Injected` (`sim.injected`), including the skipped trade id ranges and the disconnect times.
"""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from cryptolake_nb.errors import ConfigError

__all__ = ["MALFORMED_KINDS", "Faults", "Injected", "SkippedIds"]

MALFORMED_KINDS = ("invalid_json", "not_combined", "unknown_event", "missing_fields", "not_an_object")
"""What a malformed frame looks like: cut-off JSON; valid JSON that is not a combined-stream frame
(Binance's `{"result":null,"id":1}`); a combined frame of an unknown event type; an aggTrade without
its fields; a JSON array."""


@dataclass(frozen=True)
class Faults:
    """Per-trade-frame fault probabilities; all 0 by default (no faults)."""

    seed: int = 0
    duplicate: float = 0.0      # the trade frame is sent twice in a row
    reorder: float = 0.0        # the trade frame is held back and sent after the symbol's next trade
    skip: float = 0.0           # after this trade, 1..skip_max ids are never sent (the exchange "lost" them)
    skip_max: int = 5
    malformed: float = 0.0      # a malformed frame (one of MALFORMED_KINDS, seeded) goes before this trade

    def __post_init__(self) -> None:
        for name in ("duplicate", "reorder", "skip", "malformed"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"Faults.{name} must be a probability in [0, 1], got {value!r}")
        if not isinstance(self.skip_max, int) or self.skip_max < 1:
            raise ConfigError(f"Faults.skip_max must be an int >= 1, got {self.skip_max!r}")

    @property
    def active(self) -> bool:
        return any((self.duplicate, self.reorder, self.skip, self.malformed))

    def rng(self) -> random.Random:
        return random.Random(self.seed)


@dataclass(frozen=True)
class SkippedIds:
    """Trade ids first..last (inclusive) of `symbol` (normalised) were never sent."""

    symbol: str
    exchange_symbol: str
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass
class Injected:
    """What the simulator injected so far (read it from any thread; lists are appended atomically)."""

    duplicates: int = 0
    reordered: int = 0
    skipped: list[SkippedIds] = field(default_factory=list)
    malformed: dict[str, int] = field(default_factory=dict)   # kind -> frames
    disconnects: list[int] = field(default_factory=list)      # time_ns of each drop_connections() that closed a client
    silences: list[tuple[int, int]] = field(default_factory=list)  # (start_ns, end_ns) asked for
    bursts: list[tuple[int, float]] = field(default_factory=list)  # (events, rate; 0 = at once)
    connections: int = 0                                       # websocket clients accepted
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    @property
    def skipped_ids(self) -> int:
        return sum(s.count for s in self.skipped)

    def count_malformed(self, kind: str) -> None:
        with self._lock:
            self.malformed[kind] = self.malformed.get(kind, 0) + 1


def malformed_frame(kind: str, stream: str, exchange_symbol: str) -> str:
    """The text of one malformed frame of `kind` (see MALFORMED_KINDS)."""
    if kind == "invalid_json":
        return f'{{"stream":"{stream}","data":{{"e":"aggTrade","s":"{exchange_symbol}","a":'
    if kind == "not_combined":
        return '{"result":null,"id":1}'
    if kind == "unknown_event":
        return f'{{"stream":"{stream}","data":{{"e":"mysteryEvent","E":1,"s":"{exchange_symbol}"}}}}'
    if kind == "missing_fields":
        return f'{{"stream":"{stream}","data":{{"e":"aggTrade","s":"{exchange_symbol}"}}}}'
    if kind == "not_an_object":
        return "[1,2,3]"
    raise ValueError(f"unknown malformed frame kind {kind!r}")
