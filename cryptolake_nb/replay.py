"""Offline playback of cryptofeed raw-data captures through cryptofeed's own exchange parsers."""
from __future__ import annotations

import ast
import asyncio
import inspect
import json
import logging
import re
import selectors
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Optional, Union

from cryptofeed.connection import WSAsyncConn
from cryptofeed.exchange import Exchange
from cryptofeed.exchanges import EXCHANGE_MAP

from cryptolake_nb.errors import ReplayError

__all__ = ["ReplayResult", "capture_sets", "replay_capture"]

LOG = logging.getLogger(__name__)

PathLike = Union[str, Path]
Callback = Callable[[Any, float], Optional[Awaitable[None]]]
Progress = Callable[[int, int], None]

_NAME_RE = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*)\.(?:(?P<kind>ws|http)\.(?P<conn>\d+)\.)?(?P<part>\d+)$")
_PROGRESS_EVERY = 500


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
    symbol_responses: dict[str, str]      # URL -> body of the last recorded synchronous GET
    http_responses: dict[str, list[str]]  # URL -> bodies of polled/async GETs, in recorded order
    ws_files: tuple[Path, ...]


def _file_key(path: Path) -> tuple[str, int, int, int]:
    match = _NAME_RE.match(path.name)
    if match is None:
        raise ReplayError(f"{path}: not a cryptofeed capture file name (NAME.0, NAME.ws.N.0, NAME.http.N.0)")
    rank = {None: 0, "http": 1, "ws": 2}[match["kind"]]
    return match["name"], rank, int(match["conn"] or 0), int(match["part"])


def capture_sets(directory: PathLike) -> dict[str, list[Path]]:
    """Group the capture files of a directory by exchange name (NAME.0 first, then http, then ws)."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ReplayError(f"capture directory not found: {folder}")
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in folder.iterdir():
        if path.is_file() and _NAME_RE.match(path.name):
            groups[_file_key(path)[0]].append(path)
    return {name: sorted(paths, key=_file_key) for name, paths in sorted(groups.items())}


def _rest_line(path: Path, number: int, line: str) -> tuple[str, str]:
    """Split `URL -> ts: body` into (URL, body)."""
    url, sep, rest = line.partition(" -> ")
    _, sep2, body = rest.partition(": ")
    if not sep or not sep2:
        raise ReplayError(f"{path} line {number}: malformed REST record")
    return url, body


def _load_capture(files: Iterable[PathLike]) -> _Capture:
    paths = [Path(f) for f in files]
    if not paths:
        raise ReplayError("no capture files given")
    for path in paths:
        if not path.is_file():
            raise ReplayError(f"capture file not found: {path}")
    unique = sorted({p.resolve(): p for p in paths}.values(), key=_file_key)
    names = sorted({_file_key(p)[0] for p in unique})
    if len(names) > 1:
        raise ReplayError(f"capture files of several exchanges given: {', '.join(names)}")
    exchange = names[0]
    if exchange not in EXCHANGE_MAP:
        raise ReplayError(f"{exchange}: not an exchange cryptofeed knows")
    heads = [p for p in unique if _file_key(p)[1] == 0]
    if len(heads) != 1:
        raise ReplayError(f"{exchange}: {exchange}.0 (configuration and symbol responses) is missing")
    config: Optional[dict] = None
    symbols: dict[str, str] = {}
    http: dict[str, list[str]] = defaultdict(list)
    for path in unique:
        kind = _file_key(path)[1]
        if kind == 2:
            continue
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                line = line.rstrip("\n")
                if not line:
                    continue
                if kind == 0 and line.startswith("configuration: "):
                    try:
                        config = json.loads(line.partition(": ")[2])
                    except ValueError as exc:
                        raise ReplayError(f"{path} line {number}: configuration is not JSON") from exc
                    continue
                url, body = _rest_line(path, number, line)
                if kind == 0:
                    symbols[url] = body  # a later run's response supersedes an earlier one
                else:
                    http[url].append(body)
    if not isinstance(config, dict) or not config:
        raise ReplayError(f"{exchange}: {heads[0].name} has no configuration line")
    ws_files = tuple(p for p in unique if _file_key(p)[1] == 2)
    return _Capture(exchange, config, symbols, dict(http), ws_files)


class _RecordedSyncHTTP:
    """Stands in for cryptofeed's HTTPSync: answers GETs from the capture, never the network."""

    def __init__(self, exchange: str, responses: dict[str, str]) -> None:
        self._exchange = exchange
        self._responses = responses

    def read(self, address: str, params: Any = None, headers: Any = None, json: bool = False,
             text: bool = True, uuid: Any = None) -> Any:
        if address not in self._responses:
            known = ", ".join(sorted(self._responses)) or "none"
            raise ReplayError(f"{self._exchange}: cryptofeed requests {address}, which the capture lacks "
                              f"(recorded: {known})")
        body = self._responses[address]
        return _json_loads(body) if json else body

    def write(self, address: str, *args: Any, **kwargs: Any) -> Any:
        raise ReplayError(f"{self._exchange}: cryptofeed tried to POST {address} during replay")


class _RecordedAsyncHTTP:
    """Stands in for a feed's HTTPAsyncConn: each GET pops the next recorded response for its URL."""

    def __init__(self, exchange: str, responses: dict[str, list[str]]) -> None:
        self.id = f"{exchange}.http.replay"
        self._exchange = exchange
        self._queues = {url: deque(bodies) for url, bodies in responses.items()}

    async def read(self, address: str, header: Any = None, params: Any = None, return_headers: bool = False,
                   retry_count: int = 0, retry_delay: float = 60) -> Any:
        queue = self._queues.get(address)
        if not queue:
            raise ReplayError(f"{self._exchange}: cryptofeed requests {address}, which the capture lacks "
                              "(or it has no more recorded responses for it)")
        body, _, head = queue.popleft().partition(" header: ")
        if return_headers:
            return body, (_json_loads(head) if head else {})
        return body

    async def write(self, address: str, *args: Any, **kwargs: Any) -> Any:
        raise ReplayError(f"{self._exchange}: cryptofeed tried to POST {address} during replay")

    delete = write

    async def close(self) -> None:
        return None


def _json_loads(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


class _ReplayExchangeBase(Exchange):
    """Placed just before Exchange in a replay class's MRO: takes symbols from the capture, not Symbols."""

    _replay_symbols: dict = {}
    _replay_info: dict = {}

    def __init__(self, config: Any = None, sandbox: bool = False, subaccount: Any = None, **kwargs: Any) -> None:
        # Same attributes Exchange.__init__ sets, but without reading or filling the process-wide
        # cryptofeed Symbols cache, which a live feed in another thread may be using.
        from cryptofeed.config import Config
        self.config = Config(config=config)
        self.sandbox = sandbox
        self.subaccount = subaccount
        keys = self.config[self.id.lower()]
        keys = keys if subaccount is None else keys[subaccount]
        self.key_id, self.key_secret = keys.key_id, keys.key_secret
        self.key_passphrase, self.account_name = keys.key_passphrase, keys.account_name
        self.ignore_invalid_instruments = self.config.ignore_invalid_instruments
        self.normalized_symbol_mapping = dict(self._replay_symbols)
        self.exchange_symbol_mapping = {v: k for k, v in self.normalized_symbol_mapping.items()}

    @classmethod
    def symbol_mapping(cls, refresh: bool = False, headers: Optional[dict] = None) -> dict:
        return cls._replay_symbols

    @classmethod
    def info(cls) -> dict:
        data = dict(cls._replay_info)
        data["symbols"] = list(cls._replay_symbols)
        data["channels"] = {"rest": list(getattr(cls, "rest_channels", ())), "websocket": list(cls.websocket_channels)}
        return data


def _replay_class(capture: _Capture) -> type:
    """A private subclass of the exchange whose symbol data and REST answers come from the capture."""
    base = EXCHANGE_MAP[capture.exchange]
    cls = type(f"Replay{base.__name__}", (base, _ReplayExchangeBase),
               {"http_sync": _RecordedSyncHTTP(capture.exchange, capture.symbol_responses)})
    data = []
    try:
        for endpoint in cls.rest_endpoints:
            addresses = cls._symbol_endpoint_prepare(endpoint)
            for address in addresses if isinstance(addresses, list) else [addresses]:
                data.append(cls.http_sync.read(address, json=True, uuid=cls.id))
        cls._replay_symbols, cls._replay_info = cls._parse_symbol_data(data if len(data) > 1 else data[0])
    except ReplayError:
        raise
    except Exception as exc:
        raise ReplayError(f"{capture.exchange}: cryptofeed cannot parse the recorded symbol data: {exc!r}") from exc
    return cls


class _RecordedSocket:
    """Stands in for one recorded websocket connection: writes are dropped, reads come from the file."""

    conn_type = "wss"

    def __init__(self, path: Path, subscription: dict) -> None:
        self.path = path
        self.id = path.name.rsplit(".", 1)[0]
        self.address = ""
        self.subscription = subscription
        self.sent = self.received = 0
        self.last_message: Optional[float] = None
        with open(path, encoding="utf-8") as handle:
            first = handle.readline()
        if first.startswith("wss://"):
            self.address = first.split(" ", 1)[0]

    @property
    def uuid(self) -> str:
        return self.id

    is_open = True

    async def write(self, msg: Any) -> None:
        self.sent += 1

    async def read(self) -> Any:
        raise ReplayError(f"{self.id}: reads are driven by the replay, not by the feed")

    async def close(self) -> None:
        return None


def _decode(message: str) -> Union[str, bytes]:
    """Undo the `b'...'` repr that captures of binary frames (OKX, HUOBI) hold."""
    if message[:2] in ("b'", 'b"'):
        return ast.literal_eval(message)
    return message


class _SkipAheadSelector(selectors.DefaultSelector):  # type: ignore[misc, valid-type]
    """A selector that, when enabled and the loop only waits for a timer, jumps the clock instead."""

    def __init__(self) -> None:
        super().__init__()
        self.enabled = False
        self.skipped = 0.0

    def select(self, timeout: Optional[float] = None) -> list:
        if not self.enabled or timeout is None or timeout <= 0 or len(self.get_map()) > 1:
            return super().select(timeout)
        ready = super().select(0)
        if not ready:
            self.skipped += timeout
        return ready


class _SkipAheadLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.skip = _SkipAheadSelector()
        super().__init__(self.skip)

    def time(self) -> float:
        return super().time() + self.skip.skipped


async def _drive(capture: _Capture, callbacks: dict[str, Callback], config: Any,
                 progress: Optional[Progress], skip_waits: bool) -> ReplayResult:
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
            if user is not None:
                result = user(obj, receipt_timestamp)
                if inspect.isawaitable(result):
                    await result
        return deliver

    for channel in set(capture.config) | set(callbacks):
        feed.callbacks[channel] = [counted(channel, callbacks.get(channel))]
    feed.http_conn = _RecordedAsyncHTTP(capture.exchange, capture.http_responses)
    subscription = {feed.std_channel_to_exchange(chan): [feed.std_symbol_to_exchange_symbol(s) for s in syms]
                    for chan, syms in capture.config.items()}
    sockets = [_RecordedSocket(path, subscription) for path in capture.ws_files]
    if not sockets:
        raise ReplayError(f"{capture.exchange}: the capture has no websocket file ({capture.exchange}.ws.N.0)")
    entries = feed.connect()
    handlers = [h for conn, _, h, _ in entries if isinstance(conn, WSAsyncConn)] or [h for _, _, h, _ in entries]
    if not handlers:
        raise ReplayError(f"{capture.exchange}: cryptofeed opens no connection for the capture's configuration")
    loop = asyncio.get_running_loop()
    try:
        if isinstance(loop, _SkipAheadLoop):
            loop.skip.enabled = skip_waits  # exchange-side pauses (rate limits, snapshot delays) only
        try:
            for index, (_, subscribe, _, _) in enumerate(entries):
                await subscribe(sockets[min(index, len(sockets) - 1)])
        except ReplayError:
            raise
        except Exception as exc:
            LOG.error("%s: subscription step failed: %r", capture.exchange, exc)
            raise ReplayError(f"{capture.exchange}: cryptofeed failed while subscribing: {exc!r}") from exc
        finally:
            if isinstance(loop, _SkipAheadLoop):
                loop.skip.enabled = False
        messages = await _feed_lines(capture, feed, sockets, handlers, progress)
    finally:
        try:
            await feed.shutdown()
        except Exception:  # shutdown problems must not hide the replay's own outcome
            LOG.warning("%s: feed shutdown after replay failed", capture.exchange, exc_info=True)
    return ReplayResult(capture.exchange, messages, dict(counts), time.perf_counter() - started)


async def _feed_lines(capture: _Capture, feed: Any, sockets: list[_RecordedSocket], handlers: list,
                      progress: Optional[Progress]) -> int:
    total = 0
    for sock in sockets:
        with open(sock.path, "rb") as handle:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    done = messages = 0
    for index, sock in enumerate(sockets):
        handler = handlers[min(index, len(handlers) - 1)]
        with open(sock.path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                done += 1
                if progress is not None and done % _PROGRESS_EVERY == 0:
                    progress(done, total)
                line = line.rstrip("\r\n")
                if not line or line.startswith("wss"):
                    continue
                messages += 1
                if line.startswith("htt"):
                    continue
                stamp, sep, payload = line.partition(": ")
                try:
                    if not sep:
                        raise ValueError("no '<receipt time>: ' prefix")
                    receipt = float(stamp)
                    sock.received += 1
                    sock.last_message = receipt
                    await handler(_decode(payload), sock, receipt)
                except Exception as exc:
                    LOG.error("%s: replay failed at %s line %d: %r", capture.exchange, sock.path.name, number, exc)
                    raise ReplayError(f"{capture.exchange}: replay failed at {sock.path} line {number}: "
                                      f"{type(exc).__name__}: {exc}") from exc
    if progress is not None:
        progress(total, total)
    return messages


def replay_capture(files: Iterable[PathLike], callbacks: dict[str, Callback], *, config: Any = None,
                   progress: Optional[Progress] = None, skip_waits: bool = True) -> ReplayResult:
    """Replay one exchange's capture files through cryptofeed's parsers in a private loop and thread.

    `callbacks` maps cryptofeed channel names (TRADES, L2_BOOK, ...) to `(obj, receipt_timestamp)`
    callables, run in the replay thread. `skip_waits` fast-forwards timers the exchange code sleeps
    on while subscribing (Bitstamp's 5 s snapshot delay, Independent Reserve's rate limit).
    """
    capture = _load_capture(files)
    outcome: dict[str, Any] = {}

    def work() -> None:
        loop = _SkipAheadLoop()
        try:
            outcome["result"] = loop.run_until_complete(_drive(capture, dict(callbacks or {}), config,
                                                               progress, skip_waits))
        except BaseException as exc:  # handed to the calling thread below
            outcome["error"] = exc
        finally:
            try:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    worker = threading.Thread(target=work, name=f"cryptolake-replay-{capture.exchange}", daemon=True)
    worker.start()
    worker.join()
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, ReplayError):
            raise error
        raise ReplayError(f"{capture.exchange}: replay failed: {error!r}") from error
    return outcome["result"]
