"""Recorded websocket connections of a capture, and the live connections that replay them: matching
(see cryptolake_nb.simulator.capture) and pacing."""
from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import MutableSequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable, Protocol
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from cryptolake_nb.errors import ReplayError
from cryptolake_nb.replay import CONNECT, FRAME, SENT, decode_frame, iter_ws_lines

__all__ = ["Recording", "ReplayClient", "Target", "Venue", "message_key", "read_recording"]

log = logging.getLogger(__name__)

# cryptofeed names its connections NAME.ws.N; some exchanges echo that id in subscription messages
_CONNECTION_ID = re.compile(r"^[A-Z][A-Z0-9_]*\.ws\.\d+$")


@dataclass(frozen=True)
class Target:
    """Where a websocket points, split for matching: host (with port), path, and the query's parts."""

    netloc: str
    path: str
    query: frozenset[str]

    @classmethod
    def of(cls, url: str) -> Target:
        parts = urlsplit(url)
        query = {f"{key}={item}" for key, value in parse_qsl(parts.query, keep_blank_values=True)
                 for item in value.split("/")}  # Binance: streams=a@aggTrade/b@aggTrade, in any order
        return cls(parts.netloc, parts.path.rstrip("/"), frozenset(query))


def _frozen(value: Any) -> Hashable:
    if isinstance(value, dict):
        return ("{}", tuple(sorted((str(k), _frozen(v)) for k, v in value.items())))
    if isinstance(value, list):  # the order of symbols in a subscription varies between runs
        return ("[]", tuple(sorted((_frozen(v) for v in value), key=repr)))
    if isinstance(value, str) and _CONNECTION_ID.match(value):
        return "<connection id>"
    return value


def message_key(text: str | bytes) -> Hashable:
    """What identifies a client message for matching: its JSON with lists as multisets and
    cryptofeed connection ids blanked; the text itself when it is not JSON."""
    try:
        return _frozen(json.loads(text))
    except ValueError:
        return ("text", text)


@dataclass
class Recording:
    """A recorded connection: where it went, what its client sent, what it received (in order)."""

    name: str                                   # e.g. "KRAKEN.ws.48"
    address: str
    connected_at: float
    sent: list[tuple[float, str]]
    frames: list[tuple[float, str | bytes]]
    target: Target = field(init=False)
    sent_keys: dict[Hashable, float] = field(init=False)  # message key -> when it was first sent
    client: str | None = None                  # the live connection that claimed it
    position: int = 0                          # frames sent so far

    def __post_init__(self) -> None:
        self.target = Target.of(self.address)
        self.sent_keys = {}
        for when, text in self.sent:
            self.sent_keys.setdefault(message_key(text), when)

    @property
    def remaining(self) -> int:
        return len(self.frames) - self.position

    def rewind(self) -> None:
        self.client, self.position = None, 0


def read_recording(path: Path) -> Recording:
    """Parse NAME.ws.N.0 (see cryptolake_nb.replay.iter_ws_lines); ReplayError if it has no connect line."""
    lines = iter_ws_lines(path)
    first = next(lines, None)
    if first is None or first.kind != CONNECT:
        raise ReplayError(f"{path}: a websocket capture file must start with its `<address> <-> <time>` line")
    sent: list[tuple[float, str]] = []
    frames: list[tuple[float, str | bytes]] = []
    for line in lines:
        if line.kind == SENT:
            sent.append((line.time, line.text))
        elif line.kind == FRAME:
            frames.append((line.time, decode_frame(line.text)))
        elif line.kind == CONNECT:
            raise ReplayError(f"{path} line {line.number}: a second connection in one file is not supported")
    return Recording(path.name.rsplit(".", 1)[0], first.address, first.time, sent, frames)


class Venue(Protocol):
    """What a ReplayClient needs from its server (a CaptureServer)."""

    speed: float | None
    received: MutableSequence[tuple[str, str]]

    def candidates(self, target: Target) -> list[Recording]: ...

    def warn(self, message: str, *args: Any) -> None: ...


class _Cursor:
    """A claimed recording and where its timeline is pinned: recorded `anchor` = loop time `start`."""

    def __init__(self, recording: Recording, anchor: float, start: float) -> None:
        self.recording, self.anchor, self.start = recording, anchor, start

    def due(self, speed: float | None) -> float:
        if speed is None:
            return -math.inf
        when = self.recording.frames[self.recording.position][0]
        return self.start + (when - self.anchor) / speed


class ReplayClient:
    """One live websocket connection: the recordings it claimed and the task sending their frames."""

    def __init__(self, server: Venue, request: web.Request, ws: web.WebSocketResponse, name: str,
                 target: Target) -> None:
        self.server, self.ws, self.name, self.target = server, ws, name, target
        self.transport = request.transport
        self.cursors: list[_Cursor] = []
        self.wake = asyncio.Event()

    def claim(self, recording: Recording, anchor: float) -> None:
        recording.client = self.name
        self.cursors.append(_Cursor(recording, anchor, asyncio.get_running_loop().time()))
        self.wake.set()
        log.info("capture server: %s gets %s (%d frames)", self.name, recording.name, len(recording.frames))

    def on_connect(self) -> None:
        candidates = self.server.candidates(self.target)
        if not candidates:
            self.server.warn("%s: no recorded connection left for %s; it stays silent", self.name, self.target)
        elif not candidates[0].sent:  # subscribed by its address
            if candidates[0].target.query != self.target.query:
                self.server.warn("%s asks for %s; serving %s, recorded for %s", self.name, sorted(self.target.query),
                                 candidates[0].name, sorted(candidates[0].target.query))
            self.claim(candidates[0], candidates[0].connected_at)

    def on_message(self, text: str) -> None:
        self.server.received.append((self.name, text))
        log.debug("capture server: %s sent %s", self.name, text)
        key = message_key(text)
        candidates = self.server.candidates(self.target)
        matches = [r for r in candidates if key in r.sent_keys]
        for recording in matches:
            self.claim(recording, recording.sent_keys[key])
        if not matches and not self.cursors and candidates:
            first = candidates[0]
            self.server.warn("%s sent %s, which no recording's client sent; serving %s anyway", self.name,
                             text[:200], first.name)
            self.claim(first, first.sent[0][0] if first.sent else first.connected_at)

    def _next(self) -> _Cursor | None:
        live = [c for c in self.cursors if c.recording.remaining]
        if not live:
            return None
        speed = self.server.speed
        return live[0] if speed is None else min(live, key=lambda c: c.due(speed))

    async def pump(self) -> None:
        """Send the claimed recordings' frames, each at its time, until the socket closes."""
        loop = asyncio.get_running_loop()
        while not self.ws.closed:
            self.wake.clear()
            cursor = self._next()
            if cursor is None:
                await self.wake.wait()
                continue
            delay = cursor.due(self.server.speed) - loop.time()
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await self.wake.wait()  # a new claim may come first
                except TimeoutError:
                    pass
                continue
            recording = cursor.recording
            payload = recording.frames[recording.position][1]
            if isinstance(payload, bytes):
                await self.ws.send_bytes(payload)
            else:
                await self.ws.send_str(payload)
            recording.position += 1

    async def close(self) -> None:
        await self.ws.close(code=1001, message=b"going away")

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
