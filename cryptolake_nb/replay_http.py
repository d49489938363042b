"""Recorded REST responses that stand in for cryptofeed's HTTP clients during a replay.

A capture holds two kinds of REST records, each `URL -> <receipt time>: <body>`:

- symbol GETs (in `NAME.0`): the instrument lists cryptofeed's synchronous `HTTPSync` fetches
  when an exchange class loads its symbols;
- polled GETs (in `NAME.http.N.0`): what the feed's `HTTPAsyncConn` fetched while running, mostly
  order-book snapshots, one per symbol.

How a request is answered:

1. By URL. A symbol GET gets the last body recorded for its URL (several runs may append to one
   `NAME.0`; the last of them fed the websocket files), as often as it is asked. A polled GET gets
   the next body recorded for its URL that no earlier request took; asking for a URL more often
   than it was recorded fails the replay.
2. When the capture holds no record at all of the requested URL, cryptofeed's own `playback()`
   rule applies, if that rule can answer: its symbol stand-in ignores URLs and hands out
   `NAME.0`'s records in file order, so a symbol GET gets the first record of that kind, in
   file order, that no request has taken yet. This keeps captures playable when cryptofeed renamed an
   endpoint after the recording. Each such substitution is logged as a WARNING naming the
   requested and the served URL, and reported in `ReplayResult.substitutions`. cryptofeed's
   playback keys polled GETs by URL, so for them it has nothing to fall back on, and neither do we:
   serving another symbol's book snapshot would corrupt the data without a trace.
3. Otherwise the replay fails with a ReplayError naming the URL.

Neither stand-in ever opens a connection; anything but a recorded GET fails the replay.
"""
from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, Iterable, Optional

from yapic import json as cf_json  # the JSON parser cryptofeed uses: it turns ISO dates into datetimes

from cryptolake_nb.errors import ReplayError

__all__ = ["RecordedAsyncHTTP", "RecordedResponses", "RecordedSyncHTTP", "Substitution"]

LOG = logging.getLogger("cryptolake_nb.replay")  # reported as part of the replay

Record = tuple[str, str]          # (URL, body) as recorded
Substitution = tuple[str, str]    # (requested URL, URL whose recorded body was served instead)


class RecordedResponses:
    """One kind of recorded GET (see the module doc), answered by URL, then by cryptofeed's rule.

    `kind` names the records in messages ("symbol" or "polled"); `latest` selects rule 1's
    symbol-GET behaviour (last body per URL, reusable) over the polled-GET queue; `fallback`
    enables rule 2. Substitutions are appended to `substitutions`, which replays share between
    their two kinds so the pairs stay in request order.
    """

    def __init__(self, exchange: str, kind: str, records: Iterable[Record], *, latest: bool, fallback: bool,
                 substitutions: Optional[list[Substitution]] = None) -> None:
        self.exchange, self.kind, self.latest, self.fallback = exchange, kind, latest, fallback
        self.records = list(records)
        self.taken = [False] * len(self.records)
        self.substitutions = substitutions if substitutions is not None else []
        self.by_url: dict[str, list[int]] = {}
        for index, (url, _) in enumerate(self.records):
            self.by_url.setdefault(url, []).append(index)

    def take(self, address: str) -> str:
        """The body that answers a GET of `address`, or a ReplayError naming it."""
        indexes = self.by_url.get(address)
        if indexes:
            return self._by_url(address, indexes)
        if self.fallback:
            index = next((i for i, taken in enumerate(self.taken) if not taken), None)
            if index is not None:
                self.taken[index] = True
                served, body = self.records[index]
                LOG.warning("%s: cryptofeed requests %s, which the capture lacks; serving the next unused "
                            "recorded %s response, from %s, as cryptofeed's playback does",
                            self.exchange, address, self.kind, served)
                self.substitutions.append((address, served))
                return body
        recorded = ", ".join(sorted(self.by_url)) or "none"
        why = "none is left to substitute" if self.fallback else "these are matched by URL only"
        raise ReplayError(f"{self.exchange}: cryptofeed requests {address}, which the capture lacks "
                          f"({self.kind} responses recorded: {recorded}; {why})")

    def _by_url(self, address: str, indexes: list[int]) -> str:
        if self.latest:
            for index in indexes:
                self.taken[index] = True
            return self.records[indexes[-1]][1]
        for index in indexes:
            if not self.taken[index]:
                self.taken[index] = True
                return self.records[index][1]
        raise ReplayError(f"{self.exchange}: cryptofeed requests {address} more often than the capture "
                          f"recorded it ({len(indexes)} time(s))")


class RecordedSyncHTTP:
    """Stands in for cryptofeed's HTTPSync on a replay class: symbol GETs from `NAME.0`."""

    def __init__(self, responses: RecordedResponses) -> None:
        self.responses = responses

    def read(self, address: str, params: Any = None, headers: Any = None, json: bool = False,
             text: bool = True, uuid: Any = None) -> Any:
        body = self.responses.take(address)
        return cf_json.loads(body, parse_float=Decimal) if json else body

    def write(self, address: str, *args: Any, **kwargs: Any) -> Any:
        raise ReplayError(f"{self.responses.exchange}: cryptofeed tried to POST to {address} during a replay")


class RecordedAsyncHTTP:
    """Stands in for the feed instance's HTTPAsyncConn: polled GETs from `NAME.http.N.0`."""

    def __init__(self, responses: RecordedResponses) -> None:
        self.responses, self.id = responses, f"{responses.exchange}.http.replay"

    async def read(self, address: str, header: Any = None, params: Any = None, return_headers: bool = False,
                   retry_count: int = 0, retry_delay: float = 60) -> Any:
        body, _, head = self.responses.take(address).partition(" header: ")
        return (body, cf_json.loads(head) if head else {}) if return_headers else body

    async def close(self) -> None:  # no write/delete: anything but a recorded GET fails the replay
        return None
