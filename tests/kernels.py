"""Run cells in a real IPython kernel (nbclient, this virtual environment's interpreter) and keep
every message the kernel published, for tests of what a notebook really receives."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

# The kernel is another process: it gets the same loopback-only guard as the test process, and
# jupysql's dependency ploomber-core is told never to phone home.
GUARD = """
import ipaddress as _ip, socket as _so, sys as _sys
def _loopback_only(event, args):
    if event == "socket.connect" and args[0].family in (_so.AF_INET, _so.AF_INET6):
        host = args[1][0]
        try:
            ok = _ip.ip_address(host).is_loopback
        except ValueError:
            ok = host == "localhost"
        if not ok:
            raise ConnectionRefusedError(f"test guard: connection to non-loopback address {host!r} refused")
_sys.addaudithook(_loopback_only)
"""
QUIET_ENV = {"PLOOMBER_STATS_ENABLED": "false", "PLOOMBER_VERSION_CHECK_DISABLED": "1"}


class RecordingClient(NotebookClient):
    """A NotebookClient that keeps (cell index, message) for every iopub message it processes;
    `interrupt_on(msg_type)` interrupts the kernel, as the stop button does, when one first arrives."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.messages: list[tuple[int, dict]] = []
        self.interrupt_after: str | None = None
        self.interrupted = False

    def process_message(self, msg: dict, cell: Any, cell_index: int) -> Any:
        self.messages.append((cell_index, msg))
        if self.interrupt_after and msg["msg_type"] == self.interrupt_after and not self.interrupted:
            self.interrupted = True
            asyncio.ensure_future(self.km.interrupt_kernel())
        return super().process_message(msg, cell, cell_index)

    def of(self, cell_index: int, *msg_types: str) -> list[dict]:
        return [m for i, m in self.messages if i == cell_index and m["msg_type"] in msg_types]


def notebook(*sources: str, raises: tuple[int, ...] = ()) -> nbformat.NotebookNode:
    """Cell 0 is the guard, cell i the i-th source; cells listed in `raises` may end in an error."""
    cells = [nbformat.v4.new_code_cell(GUARD)] + [nbformat.v4.new_code_cell(s) for s in sources]
    for i in raises:
        cells[i].metadata["tags"] = ["raises-exception"]
    return nbformat.v4.new_notebook(cells=cells)


def run(nb: nbformat.NotebookNode, cwd: Path, *, interrupt_after: tuple[int, str] | None = None,
        timeout: int = 120) -> RecordingClient:
    """Execute every cell of `nb` in a fresh kernel with `sys.executable`; cell 0 is the guard.
    `interrupt_after=(i, msg_type)` interrupts the kernel once cell i published such a message."""
    client = RecordingClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.interrupt_after = interrupt_after[1] if interrupt_after and interrupt_after[0] == index else None
            client.execute_cell(cell, index)
    return client


def stdout_json(client: RecordingClient, cell_index: int) -> Any:
    """The last line a cell printed, parsed as JSON (cells report their findings that way)."""
    text = "".join(m["content"]["text"] for m in client.of(cell_index, "stream") if m["content"]["name"] == "stdout")
    return json.loads(text.strip().splitlines()[-1])
