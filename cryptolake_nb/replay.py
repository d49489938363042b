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
from collections import defaultdict, deque
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Optional, Union

from cryptofeed.config import Config
from cryptofeed.connection import WSAsyncConn
from cryptofeed.exchange import Exchange
from cryptofeed.exchanges import EXCHANGE_MAP
from yapic import json as cf_json  # the JSON parser cryptofeed uses: it turns ISO dates into datetimes

from cryptolake_nb.errors import ReplayError

__all__ = ["ReplayResult", "capture_sets", "replay_capture"]

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
    """What one replay delivered: exchange id, replayed messages, callbacks per channel, seconds."""

    exchange: str
    messages: int
    callbacks: dict[str, int]
    duration: float


@dataclass(frozen=True)
class _Capture:
    exchange: str
    config: dict[str, list[str]]
    symbol_responses: dict[str, str]      # URL -> body of the last recorded symbol (sync) GET
    http_responses: dict[str, list[str]]  # URL -> bodies of the async GETs (snapshots), in order
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


def _load_capture(files: Iterable[PathLike]) -> _Capture:
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
    symbols: dict[str, str] = {}
    http: dict[str, list[str]] = defaultdict(list)
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
                    if head:
                        symbols[url] = body  # several runs may share NAME.0: the last one fed the ws files
                    else:
                        http[url].append(body)
    if not isinstance(config, dict) or not config:
        raise ReplayError(f"{exchange}: {exchange}.0 has no configuration line")
    ws_files = tuple(p for p in unique if _file_key(p)[1] == _WS)
    if not ws_files:
        raise ReplayError(f"{exchange}: the capture has no websocket file ({exchange}.ws.N.0)")
    return _Capture(exchange, config, symbols, dict(http), ws_files)


def _lacks(exchange: str, address: str, known: Iterable[str]) -> ReplayError:
    recorded = ", ".join(sorted(known)) or "none"
    return ReplayError(f"{exchange}: cryptofeed requests {address}, which the capture lacks (recorded: {recorded})")


class _RecordedSyncHTTP:
    """Stands in for cryptofeed's HTTPSync on the replay class: recorded answers, never the network."""

    def __init__(self, exchange: str, responses: dict[str, str]) -> None:
        self.exchange, self.responses = exchange, responses

    def read(self, address: str, params: Any = None, headers: Any = None, json: bool = False,
             text: bool = True, uuid: Any = None) -> Any:
        if address not in self.responses:
            raise _lacks(self.exchange, address, self.responses)
        body = self.responses[address]
        return cf_json.loads(body, parse_float=Decimal) if json else body

    def write(self, address: str, *args: Any, **kwargs: Any) -> Any:
        raise ReplayError(f"{self.exchange}: cryptofeed tried to POST to {address} during a replay")


class _RecordedAsyncHTTP:
    """Stands in for the feed instance's HTTPAsyncConn: each GET takes the next recorded response."""

    def __init__(self, exchange: str, responses: dict[str, list[str]]) -> None:
        self.exchange, self.id = exchange, f"{exchange}.http.replay"
        self.queues = {url: deque(bodies) for url, bodies in responses.items()}

    async def read(self, address: str, header: Any = None, params: Any = None, return_headers: bool = False,
                   retry_count: int = 0, retry_delay: float = 60) -> Any:
        if not self.queues.get(address):
            raise _lacks(self.exchange, address, [u for u, q in self.queues.items() if q])
        body, _, head = self.queues[address].popleft().partition(" header: ")
        return (body, cf_json.loads(head) if head else {}) if return_headers else body

    async def close(self) -> None:  # no write/delete: anything but a recorded GET fails the replay
        return None


class _ReplayExchangeBase(Exchange):
    """Sits just before Exchange in a replay class's MRO: symbols come from the capture, not Symbols."""

    replay_symbols: dict = {}
    replay_info: dict = {}

    def __init__(self, config: Any = None, sandbox: bool = False, subaccount: Any = None, **kwargs: Any) -> None:
        # Sets what Exchange.__init__ sets, without reading or filling cryptofeed's process-wide
        # Symbols cache, which a live feed in another thread may rely on.
        self.config = Config(config=config)
        self.sandbox, self.subaccount = sandbox, subaccount
        keys = self.config[self.id.lower()]
        keys = keys if subaccount is None else keys[subaccount]
        self.key_id, self.key_secret = keys.key_id, keys.key_secret
        self.key_passphrase, self.account_name = keys.key_passphrase, keys.account_name
        self.ignore_invalid_instruments = self.config.ignore_invalid_instruments
        self.normalized_symbol_mapping = dict(self.replay_symbols)
        self.exchange_symbol_mapping = {v: k for k, v in self.normalized_symbol_mapping.items()}

    @classmethod
    def symbol_mapping(cls, refresh: bool = False, headers: Optional[dict] = None) -> dict:
        return cls.replay_symbols

    @classmethod
    def info(cls) -> dict:
        channels = {"rest": list(getattr(cls, "rest_channels", ())), "websocket": list(cls.websocket_channels)}
        return {**cls.replay_info, "symbols": list(cls.replay_symbols), "channels": channels}


def _replay_class(capture: _Capture) -> type:
    """A private subclass of the exchange class whose symbol data and sync REST come from the capture."""
    base = EXCHANGE_MAP[capture.exchange]
    cls = type(f"Replay{base.__name__}", (base, _ReplayExchangeBase),
               {"http_sync": _RecordedSyncHTTP(capture.exchange, capture.symbol_responses)})
    data = []
    try:
        for endpoint in cls.rest_endpoints:
            addresses = cls._symbol_endpoint_prepare(endpoint)
            for address in addresses if isinstance(addresses, list) else [addresses]:
                data.append(cls.http_sync.read(address, json=True, uuid=cls.id))
        cls.replay_symbols, cls.replay_info = cls._parse_symbol_data(data if len(data) > 1 else data[0])
    except ReplayError:
        raise
    except Exception as exc:
        raise ReplayError(f"{capture.exchange}: cryptofeed cannot parse the recorded symbol data: {exc!r}") from exc
    return cls


class _RecordedSocket:
    """Stands in for one recorded websocket connection: writes are dropped, frames come from its file."""

    conn_type, is_open = "wss", True

    def __init__(self, path: Path, subscription: dict) -> None:
        self.path, self.id, self.subscription = path, path.name.rsplit(".", 1)[0], subscription
        self.sent, self.received, self.last_message = 0, 0, None
        with open(path, encoding="utf-8") as handle:
            first = handle.readline()
        self.address = first.split(" ", 1)[0] if first.startswith("wss://") else ""

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


def _decode(payload: str) -> Union[str, bytes]:
    """Undo the `b'...'` repr in which captures hold binary frames (OKX, HUOBI gzip)."""
    return ast.literal_eval(payload) if payload[:2] in ("b'", 'b"') else payload


async def _drive(capture: _Capture, callbacks: dict[str, Callback], config: Any,
                 progress: Optional[Progress]) -> ReplayResult:
    started = time.perf_counter()
    counts: dict[str, int] = defaultdict(int)
    try:
        feed = _replay_class(capture)(candle_closed_only=False, config=config, subscription=capture.config)
    except ReplayError:
        raise
    except Exception as exc:
        raise ReplayError(f"{capture.exchange}: cryptofeed rejects the capture's configuration: {exc!r}") from exc
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
    feed.http_conn = _RecordedAsyncHTTP(capture.exchange, capture.http_responses)
    subscription = {feed.std_channel_to_exchange(chan): [feed.std_symbol_to_exchange_symbol(s) for s in syms]
                    for chan, syms in capture.config.items()}
    sockets = [_RecordedSocket(path, subscription) for path in capture.ws_files]
    entries = feed.connect()
    handlers = [h for conn, _, h, _ in entries if isinstance(conn, WSAsyncConn)] or [h for _, _, h, _ in entries]
    if not handlers:
        raise ReplayError(f"{capture.exchange}: cryptofeed opens no connection for the capture's configuration")
    try:
        for index, (_, subscribe, _, _) in enumerate(entries):
            try:
                await subscribe(sockets[min(index, len(sockets) - 1)])
            except Exception as exc:
                LOG.error("%s: subscribing failed: %r", capture.exchange, exc)
                raise ReplayError(f"{capture.exchange}: cryptofeed failed while subscribing: {exc}") from exc
        messages = await _feed_lines(capture, sockets, handlers, progress)
    finally:
        try:
            await feed.shutdown()
        except Exception:  # a shutdown problem must not hide the replay's own outcome
            LOG.warning("%s: feed shutdown after the replay failed", capture.exchange, exc_info=True)
    return ReplayResult(capture.exchange, messages, dict(counts), time.perf_counter() - started)


async def _feed_lines(capture: _Capture, sockets: list[_RecordedSocket], handlers: list,
                      progress: Optional[Progress]) -> int:
    total = 0
    for sock in sockets:
        with open(sock.path, "rb") as raw:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: raw.read(1 << 20), b""))
    done = messages = 0
    for index, sock in enumerate(sockets):
        handler = handlers[min(index, len(handlers) - 1)]
        with open(sock.path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                done += 1
                if progress is not None and done % _PROGRESS_EVERY == 0:
                    progress(done, total)
                line = line.rstrip("\r\n")
                if not line or line.startswith("wss"):  # blank, `<->` connect and `<-` sent lines
                    continue
                messages += 1
                if line.startswith("htt"):  # counted, as cryptofeed's playback does, but not a frame
                    continue
                stamp, _, payload = line.partition(": ")
                try:
                    receipt = float(stamp)
                    sock.received, sock.last_message = sock.received + 1, receipt
                    await handler(_decode(payload), sock, receipt)
                except Exception as exc:
                    LOG.error("%s: replay failed at %s line %d: %r", capture.exchange, sock.path.name, number, exc)
                    raise ReplayError(f"{capture.exchange}: replay failed at {sock.path} line {number}: "
                                      f"{type(exc).__name__}: {exc}") from exc
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
    """
    capture = _load_capture(files)
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
