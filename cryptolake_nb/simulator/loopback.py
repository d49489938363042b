"""The loopback server every simulated venue runs on: TLS on 127.0.0.1, aiohttp, its own loop thread."""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from cryptolake_nb.errors import ConfigError, SimulatorError
from cryptolake_nb.simulator.tls import LoopbackTLS, make_loopback_tls

__all__ = ["LoopbackServer", "SymbolReader"]

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class SymbolReader(Protocol):
    """Answers an exchange's symbol-list GET in-process (the shape of cryptofeed's HTTPSync.read)."""

    def read(self, address: str, params: Any = None, headers: Any = None, json: bool = False,
             text: bool = True, uuid: Any = None) -> Any: ...


class LoopbackServer:
    """Base of the simulated venues: lifecycle, addresses and TLS; subclasses add routes and tasks.

    What a feed adapter needs from any venue: `exchange` (the cryptofeed id it speaks),
    `ssl_context`, `local_url(url)` (where this server answers what the exchange serves at `url`)
    and `symbol_reader()` (the exchange's symbol lists, without a request).
    """

    exchange: str = ""
    thread_name = "cryptolake-simulator"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ConfigError(f"the simulator binds loopback only, got host={host!r}")
        self._host, self._port = host, port
        self._tls: LoopbackTLS | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._clients: set[Any] = set()  # connected websocket clients: each has close() and abort()

    # -- for subclasses --------------------------------------------------------------------------
    def _routes(self, app: web.Application) -> None:
        """Add the venue's handlers."""
        raise NotImplementedError

    def _background(self) -> list[Coroutine[Any, Any, None]]:
        """Coroutines to run while serving (cancelled at stop)."""
        return []

    def _reset(self) -> None:
        """Called on the loop thread before each start (e.g. to rewind a recording)."""

    def _describe(self) -> str:
        return self.exchange

    def local_url(self, url: str) -> str:
        """Where this server answers what the exchange serves at `url` (same path by default)."""
        parts = urlsplit(url)
        base = self.ws_url if parts.scheme in ("ws", "wss") else self.rest_url
        return base + parts.path + (f"?{parts.query}" if parts.query else "")

    def symbol_reader(self) -> SymbolReader:
        raise NotImplementedError

    # -- addresses -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port; after stop() it still names where the simulator was (connections are refused)."""
        if self._tls is None:
            raise SimulatorError("the simulator has not been started")
        return self._port

    @property
    def ws_url(self) -> str:
        """Websocket base address (scheme, host and port)."""
        return f"wss://{self._host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"https://{self._host}:{self.port}"

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """Client context trusting only this simulator's freshly made certificate authority."""
        if self._tls is None:
            raise SimulatorError("the simulator has not been started")
        return self._tls.client_context

    @property
    def ca_pem(self) -> bytes:
        """The PEM of the certificate authority this simulator's certificate chains to (to trust it
        from another process: `SimulatorEndpoint(ca_pem=...)` or a file for `cryptolake collect`)."""
        if self._tls is None:
            raise SimulatorError("the simulator has not been started")
        return self._tls.ca_pem

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def connections(self) -> int:
        return len(self._clients)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> Any:
        """Start serving; return self once the socket is listening."""
        if self.running:
            raise SimulatorError("the simulator is already running")
        if self._tls is None:  # kept across restarts, so clients built earlier still trust us
            try:
                self._tls = make_loopback_tls("127.0.0.1" if self._host == "localhost" else self._host)
            except Exception as exc:
                raise SimulatorError(f"could not create the TLS certificate: {exc}") from exc
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(ready, failure), name=self.thread_name, daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise SimulatorError(f"the simulator did not start within {timeout} s")
        if failure:
            self._thread.join(timeout)
            self._thread = None
            raise SimulatorError(f"the simulator could not start: {failure[0]}") from failure[0]
        log.info("simulated %s listening on %s", self._describe(), self.rest_url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection and the listening socket; idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if thread.is_alive() and not loop.is_closed() and self._stopping is not None:
            try:
                loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:  # the loop closed meanwhile
                pass
        thread.join(timeout)
        if thread.is_alive():
            raise SimulatorError(f"the simulator thread did not stop within {timeout} s")
        self._thread = self._loop = self._runner = None
        log.info("simulated %s stopped", self.exchange)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def drop_connections(self, *, abrupt: bool = False, timeout: float = 5.0) -> int:
        """Disconnect every websocket client (close frame, or a reset when abrupt); return how many."""
        loop = self._loop
        if loop is None or not self.running:
            raise SimulatorError("the simulator is not running")
        return asyncio.run_coroutine_threadsafe(self._drop(abrupt), loop).result(timeout)

    # -- the loop thread -------------------------------------------------------------------------
    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as exc:  # reported to start() or logged; never printed
            if not ready.is_set():
                failure.append(exc)
                ready.set()
            else:
                log.error("simulated %s crashed: %r", self.exchange, exc, exc_info=exc)
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        self._reset()
        app = web.Application()
        self._routes(app)
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        self._port = sock.getsockname()[1]
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        assert self._tls is not None
        await web.SockSite(self._runner, sock, ssl_context=self._tls.server_context).start()
        tasks = [asyncio.create_task(c, name=f"simulator-{self.exchange}") for c in self._background()]
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._drop(abrupt=False)
            await self._runner.cleanup()

    async def _drop(self, abrupt: bool) -> int:
        clients = list(self._clients)
        self._clients.clear()
        for client in clients:
            if abrupt:
                client.abort()
            else:
                await client.close()
        return len(clients)
