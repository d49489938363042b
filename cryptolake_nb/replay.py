"""Offline playback of cryptofeed raw-data captures through cryptofeed's own exchange parsers."""
from __future__ import annotations

import ast
import asyncio
import asyncio.futures
import inspect
import logging
import re
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Iterator, Optional, Union

from cryptofeed.connection import WSAsyncConn
from cryptofeed.exchanges import EXCHANGE_MAP
from yapic import json as cf_json  # the JSON parser cryptofeed uses: it turns ISO dates into datetimes

from cryptolake_nb.errors import ReplayError
from cryptolake_nb.feeds import REPLAY_FEED_OPTIONS, PrivateSymbolsExchange, load_symbol_data
from cryptolake_nb.replay_http import RecordedAsyncHTTP, RecordedResponses, RecordedSyncHTTP, Substitution

__all__ = ["Capture", "ReplayResult", "WsLine", "capture_sets", "decode_frame", "iter_ws_lines", "load_capture",
           "replay_capture"]

LOG = logging.getLogger(__name__)

PathLike = Union[str, Path]
Callback = Callable[[Any, float], Optional[Awaitable[None]]]
Progress = Callable[[int, int], None]

_NAME_RE = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*)\.(?:(?P<kind>ws|http)\.(?P<conn>\d+)\.)?(?P<part>\d+)$")
_HEAD, _HTTP, _WS = 0, 1, 2
_PROGRESS_EVERY = 500
_SLEEP_WAKEUP = getattr(asyncio.futures, "_set_result_unless_cancelled", None)


@dataclass(frozen=True)
class ReplayResult:
    """What one replay delivered: exchange id, replayed messages, callbacks per channel, seconds.

    `substitutions` lists the REST requests the capture had no record of and that were answered,
    as cryptofeed's own playback answers them, with another recorded response: (requested URL,
    served URL) pairs in request order (see cryptolake_nb.replay_http). Empty for a faithful replay.
    """

    exchange: str
    messages: int
    callbacks: dict[str, int]
    duration: float
    substitutions: tuple[Substitution, ...] = ()


@dataclass(frozen=True)
class Capture:
    """One exchange's capture files, parsed: configuration, recorded REST responses, websocket files."""

    exchange: str
    config: dict[str, list[str]]
    symbol_responses: tuple[tuple[str, str], ...]  # (URL, body) of the symbol (sync) GETs, file order
    http_responses: tuple[tuple[str, str], ...]    # (URL, body) of the polled (async) GETs, file order
    ws_files: tuple[Path, ...]


def _file_key(path: Path) -> tuple[str, int, int, int]:
    match = _NAME_RE.match(path.name)
    if match is None:
        raise ReplayError(f"{path}: not a cryptofeed capture file name (NAME.0, NAME.ws.N.0, NAME.http.N.0)")
    kind = {None: _HEAD, "http": _HTTP, "ws": _WS}[match["kind"]]
    return match["name"], kind, int(match["conn"] or 0), int(match["part"])


def capture_sets(directory: PathLike) -> dict[str, list[Path]]:
    """Group a directory's capture files by exchange name (NAME.0 first, then http, then ws files)."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ReplayError(f"capture directory not found: {folder}")
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in folder.iterdir():
        if path.is_file() and _NAME_RE.match(path.name):
            groups[_file_key(path)[0]].append(path)
    return {name: sorted(paths, key=_file_key) for name, paths in sorted(groups.items())}


def load_capture(files: Iterable[PathLike]) -> Capture:
    """Parse NAME.0 and NAME.http.N.0 of one exchange's capture; ReplayError if the set is unusable."""
    paths = [Path(f) for f in ([files] if isinstance(files, (str, Path)) else files)]
    missing = [str(p) for p in paths if not p.is_file()]
    if not paths or missing:
        raise ReplayError(f"capture file(s) not found: {', '.join(missing)}" if missing else "no capture files given")
    unique = sorted({p.resolve(): p for p in paths}.values(), key=_file_key)
    names = sorted({_file_key(p)[0] for p in unique})
    if len(names) > 1:
        raise ReplayError(f"capture files of several exchanges given: {', '.join(names)}")
    exchange = names[0]
    if exchange not in EXCHANGE_MAP:
        raise ReplayError(f"{exchange}: not an exchange cryptofeed knows")
    if not any(_file_key(p)[1] == _HEAD for p in unique):
        raise ReplayError(f"{exchange}: {exchange}.0 (configuration line and symbol responses) is missing")
    config: Any = None
    symbols: list[tuple[str, str]] = []
    http: list[tuple[str, str]] = []
    for path in (p for p in unique if _file_key(p)[1] != _WS):
        head = _file_key(path)[1] == _HEAD
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                line = line.rstrip("\r\n")
                if head and line.startswith("configuration: "):
                    try:
                        config = cf_json.loads(line.partition(": ")[2])
                    except ValueError as exc:
                        raise ReplayError(f"{path} line {number}: configuration is not JSON") from exc
                elif line:  # `URL -> <receipt time>: <body>`
                    url, arrow, rest = line.partition(" -> ")
                    _, colon, body = rest.partition(": ")
                    if not arrow or not colon:
                        raise ReplayError(f"{path} line {number}: malformed REST record")
                    (symbols if head else http).append((url, body))
    if not isinstance(config, dict) or not config:
        raise ReplayError(f"{exchange}: {exchange}.0 has no configuration line")
    ws_files = tuple(p for p in unique if _file_key(p)[1] == _WS)
    if not ws_files:
        raise ReplayError(f"{exchange}: the capture has no websocket file ({exchange}.ws.N.0)")
    return Capture(exchange, config, tuple(symbols), tuple(http), ws_files)


@contextmanager
def _failing_as(message: str) -> Iterator[None]:
    """Turn any non-ReplayError raised by cryptofeed code inside the block into a logged ReplayError."""
    try:
        yield
    except ReplayError:
        raise
    except Exception as exc:
        LOG.error("%s: %r", message, exc)
        raise ReplayError(f"{message}: {type(exc).__name__}: {exc}") from exc


class _ReplayExchangeBase(PrivateSymbolsExchange):
    """Sits just before Exchange in a replay class's MRO: symbols come from the capture, not Symbols."""

    replay_info: dict = {}

    @classmethod
    def symbol_mapping(cls, refresh: bool = False, headers: Optional[dict] = None) -> dict:
        return cls.own_symbols

    @classmethod
    def info(cls) -> dict:
        channels = {"rest": list(getattr(cls, "rest_channels", ())), "websocket": list(cls.websocket_channels)}
        return {**cls.replay_info, "symbols": list(cls.own_symbols), "channels": channels}


def _replay_class(capture: Capture, substitutions: list[Substitution]) -> type:
    """A private subclass of the exchange class whose symbol data and sync REST come from the capture."""
    base = EXCHANGE_MAP[capture.exchange]
    recorded = RecordedResponses(capture.exchange, "symbol", capture.symbol_responses, latest=True, fallback=True,
                                 substitutions=substitutions)
    cls = type(f"Replay{base.__name__}", (base, _ReplayExchangeBase), {"http_sync": RecordedSyncHTTP(recorded)})
    with _failing_as(f"{capture.exchange}: cryptofeed cannot parse the recorded symbol data"):
        cls.own_symbols, cls.replay_info = load_symbol_data(cls)
    return cls


class _RecordedSocket:
    """Stands in for one recorded websocket connection: writes are dropped, frames come from its file."""

    conn_type, is_open = "wss", True

    def __init__(self, path: Path, subscription: dict) -> None:
        self.path, self.id, self.subscription = path, path.name.rsplit(".", 1)[0], subscription
        self.sent = 0
        first = next(iter_ws_lines(path), None)
        self.address = first.address if first is not None and first.kind == CONNECT else ""

    uuid = property(lambda self: self.id)

    async def write(self, msg: Any) -> None:
        self.sent += 1

    async def close(self) -> None:
        return None


class _NoWaitLoop(asyncio.SelectorEventLoop):
    """A private loop on which asyncio.sleep() returns at once (exchange code's rate-limit pauses)."""

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any, context: Any = None) -> Any:
        if callback is _SLEEP_WAKEUP and delay > 0:
            delay = 0
        return super().call_later(delay, callback, *args, context=context)


def decode_frame(payload: str) -> Union[str, bytes]:
    """Undo the `b'...'` repr in which captures hold binary frames (OKX, HUOBI gzip)."""
    return ast.literal_eval(payload) if payload[:2] in ("b'", 'b"') else payload


_decode = decode_frame

CONNECT, SENT, FRAME, OTHER = "connect", "sent", "frame", "other"


@dataclass(frozen=True)
class WsLine:
    """One non-blank line of a NAME.ws.N.0 file.

    kind: CONNECT (`<address> <-> <time>`), SENT (`<address> <- <time>: <message>`), FRAME
    (`<time>: <payload>`, a received frame; `decode_frame(text)` gives str or bytes) or OTHER (a
    line starting `htt`: counted as a message by cryptofeed's playback, not a frame; time is NaN).
    """

    number: int
    kind: str
    time: float
    text: str = ""
    address: str = ""


def _stamp(text: str, path: Path, number: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise ReplayError(f"{path} line {number}: {text[:40]!r} is not a receipt time") from None


def iter_ws_lines(path: PathLike) -> Iterator[WsLine]:
    """The lines of one capture websocket file, parsed, in file order."""
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            if line.startswith("wss"):
                address, _, rest = line.partition(" ")
                arrow, _, rest = rest.partition(" ")
                stamp, _, text = rest.partition(": ")
                yield WsLine(number, CONNECT if arrow == "<->" else SENT, _stamp(stamp, path, number), text, address)
            elif line.startswith("htt"):
                yield WsLine(number, OTHER, float("nan"), line)
            else:
                stamp, _, payload = line.partition(": ")
                yield WsLine(number, FRAME, _stamp(stamp, path, number), payload)


async def _drive(capture: Capture, callbacks: dict[str, Callback], config: Any,
                 progress: Optional[Progress]) -> ReplayResult:
    started = time.perf_counter()
    counts: dict[str, int] = defaultdict(int)
    substitutions: list[Substitution] = []
    with _failing_as(f"{capture.exchange}: cryptofeed rejects the capture's configuration"):
        feed = _replay_class(capture, substitutions)(**REPLAY_FEED_OPTIONS, config=config,
                                                     subscription=capture.config)
    unknown = sorted(set(callbacks) - set(feed.callbacks))
    if unknown:
        raise ReplayError(f"{capture.exchange}: unknown callback channel(s): {', '.join(unknown)}")

    def counted(channel: str, user: Optional[Callback]) -> Callable[[Any, float], Awaitable[None]]:
        async def deliver(obj: Any, receipt_timestamp: float) -> None:
            counts[channel] += 1
            result = user(obj, receipt_timestamp) if user is not None else None
            if inspect.isawaitable(result):
                await result
        return deliver

    for channel in set(capture.config) | set(callbacks):
        feed.callbacks[channel] = [counted(channel, callbacks.get(channel))]
    feed.http_conn = RecordedAsyncHTTP(RecordedResponses(capture.exchange, "polled", capture.http_responses,
                                                         latest=False, fallback=False, substitutions=substitutions))
    subscription = {feed.std_channel_to_exchange(chan): [feed.std_symbol_to_exchange_symbol(s) for s in syms]
                    for chan, syms in capture.config.items()}
    sockets = [_RecordedSocket(path, subscription) for path in capture.ws_files]
    entries = feed.connect()
    handlers = [h for conn, _, h, _ in entries if isinstance(conn, WSAsyncConn)] or [h for _, _, h, _ in entries]
    if not handlers:
        raise ReplayError(f"{capture.exchange}: cryptofeed opens no connection for the capture's configuration")
    try:
        with _failing_as(f"{capture.exchange}: cryptofeed failed while subscribing"):
            for index, (_, subscribe, _, _) in enumerate(entries):
                await subscribe(sockets[min(index, len(sockets) - 1)])
        messages = await _feed_lines(capture, sockets, handlers, progress)
    finally:
        try:
            await feed.shutdown()
        except Exception:  # a shutdown problem must not hide the replay's own outcome
            LOG.warning("%s: feed shutdown after the replay failed", capture.exchange, exc_info=True)
    return ReplayResult(capture.exchange, messages, dict(counts), time.perf_counter() - started,
                        tuple(substitutions))


def _count_lines(path: Path) -> int:
    with open(path, "rb") as raw:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: raw.read(1 << 20), b""))


async def _feed_lines(capture: Capture, sockets: list[_RecordedSocket], handlers: list,
                      progress: Optional[Progress]) -> int:
    sizes = [_count_lines(sock.path) for sock in sockets]
    total, offset, reported, messages = sum(sizes), 0, 0, 0
    for index, sock in enumerate(sockets):
        handler = handlers[min(index, len(handlers) - 1)]
        for line in iter_ws_lines(sock.path):
            if progress is not None and offset + line.number - reported >= _PROGRESS_EVERY:
                reported = offset + line.number
                progress(reported, total)
            if line.kind in (CONNECT, SENT):
                continue
            messages += 1
            if line.kind == OTHER:  # counted, as cryptofeed's playback does, but not a frame
                continue
            try:
                await handler(decode_frame(line.text), sock, line.time)
            except Exception as exc:
                LOG.error("%s: replay failed at %s line %d: %r", capture.exchange, sock.path.name, line.number, exc)
                raise ReplayError(f"{capture.exchange}: replay failed at {sock.path} line {line.number}: "
                                  f"{type(exc).__name__}: {exc}") from exc
        offset += sizes[index]
    if progress is not None:
        progress(total, total)
    return messages


async def _cancel(tasks: set) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def replay_capture(files: Iterable[PathLike], callbacks: dict[str, Callback], *, config: Any = None,
                   progress: Optional[Progress] = None) -> ReplayResult:
    """Replay one exchange's capture files through cryptofeed's parsers, in a private loop and thread.

    `callbacks` maps cryptofeed channel names (TRADES, L2_BOOK, ...) to `(obj, receipt_timestamp)`
    callables (coroutine functions or plain ones); they run in the replay thread and receive the
    recorded receipt times. asyncio.sleep() inside that thread returns at once (cryptofeed pauses
    for rate limits and snapshot timing, which a recording does not need). Blocks until done.
    REST requests are answered from the capture by URL; a symbol request the capture has no record
    of gets the next unused recorded one, as cryptofeed's playback does, with a WARNING and an
    entry in `ReplayResult.substitutions` (rules in cryptolake_nb.replay_http).
    """
    capture = load_capture(files)
    outcome: dict[str, Any] = {}

    def work() -> None:
        loop = _NoWaitLoop()
        try:
            outcome["result"] = loop.run_until_complete(_drive(capture, dict(callbacks or {}), config, progress))
        except BaseException as exc:  # re-raised in the calling thread below
            outcome["error"] = exc
        finally:
            try:
                loop.run_until_complete(_cancel(asyncio.all_tasks(loop)))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    worker = threading.Thread(target=work, name=f"cryptolake-replay-{capture.exchange}", daemon=True)
    worker.start()
    worker.join()
    error = outcome.get("error")
    if isinstance(error, ReplayError):
        raise error
    if error is not None:
        raise ReplayError(f"{capture.exchange}: replay failed: {error!r}") from error
    return outcome["result"]
