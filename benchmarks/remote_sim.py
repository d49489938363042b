"""The exchange simulator in its own process, so that generating and sending frames does not share
the collector's interpreter lock (on loopback, as always).

Child: `python -m benchmarks.remote_sim SEED SYMBOL...` starts `ExchangeSimulator(rate=0)`, prints
one JSON line (port, CA certificate), then answers JSON-line commands on stdin: {"rate": r} sets the
rate, {} asks for counters, EOF stops it.
Parent: `RemoteSimulator` is what `lake.subscribe(..., simulator=)` needs from a simulator: the
exchange id, TLS trust, addresses and the symbol lists (answered in-process by an identical,
never-started simulator: they depend only on the symbols and the seed).
"""
from __future__ import annotations

import json
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptolake_nb.simulator import ExchangeSimulator

__all__ = ["RemoteSimulator"]


class RemoteSimulator:
    """A simulator subprocess and the client-side facts a simulated feed is built from."""

    exchange = "BINANCE"

    def __init__(self, symbols: list[str], seed: int = 0) -> None:
        self._local = ExchangeSimulator(symbols, seed=seed, rate=0)  # symbol lists only; never started
        self._proc = subprocess.Popen([sys.executable, "-m", "benchmarks.remote_sim", str(seed), *symbols],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                      cwd=Path(__file__).resolve().parents[1])
        hello = json.loads(self._proc.stdout.readline())
        self.port = hello["port"]
        self.ssl_context = ssl.create_default_context(cadata=hello["ca_pem"])
        self.rest_url, self.ws_url = f"https://127.0.0.1:{self.port}", f"wss://127.0.0.1:{self.port}"

    def local_url(self, url: str) -> str:
        parts = urlsplit(url)
        base = self.ws_url if parts.scheme in ("ws", "wss") else self.rest_url
        return base + parts.path + (f"?{parts.query}" if parts.query else "")

    def symbol_reader(self) -> Any:
        return self._local.symbol_reader()

    def command(self, **cmd: Any) -> dict:
        """Send one command; the child's counters after it."""
        self._proc.stdin.write(json.dumps(cmd) + "\n")
        return json.loads(self._proc.stdout.readline())

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait(10)


def _child(seed: int, symbols: list[str]) -> None:
    sim = ExchangeSimulator(symbols, seed=seed, rate=0).start()
    print(json.dumps({"port": sim.port, "ca_pem": sim._tls.ca_pem.decode()}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if "rate" in cmd:
            sim.rate = cmd["rate"]
        print(json.dumps({"events": sim.events_generated, "trades": sim.trades_sent, "depth": sim.depth_updates_sent,
                          "connections": sim.connections, "rate": sim.rate}), flush=True)
    sim.stop()


if __name__ == "__main__":
    _child(int(sys.argv[1]), sys.argv[2:])
