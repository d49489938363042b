"""Running the `cryptolake` console script as a real subprocess, with the loopback-only guard inside it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI = Path(sys.executable).with_name("cryptolake")

# imported by the child's interpreter at start-up (PYTHONPATH): the same guard as conftest.py's
_GUARD = '''
import ipaddress, socket, sys

def _loopback_only(event, args):
    if event != "socket.connect":
        return
    sock, address = args
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0]
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise ConnectionRefusedError(f"test guard: connection to non-loopback address {host!r} refused")

sys.addaudithook(_loopback_only)
'''


def cli_env(guard_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for a child: the guard on PYTHONPATH, no proxy or lake settings inherited."""
    guard_dir.mkdir(parents=True, exist_ok=True)
    (guard_dir / "sitecustomize.py").write_text(_GUARD)
    env = {k: v for k, v in os.environ.items()
           if not k.upper().endswith("_PROXY") and not k.upper().startswith("CRYPTOLAKE_")}
    env.update(PYTHONPATH=str(guard_dir), NO_PROXY="127.0.0.1,localhost", PYTHONUNBUFFERED="1", **extra)
    return env


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`cryptolake ARGS` to completion; stdout and stderr as text."""
    return subprocess.run([str(CLI), *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def start(args: list[str], env: dict[str, str], cwd: Path, stderr: Path) -> subprocess.Popen:
    """`cryptolake ARGS` in the background: stdout a pipe (JSON lines), stderr to a file."""
    with open(stderr, "w") as err:
        return subprocess.Popen([str(CLI), *map(str, args)], env=env, cwd=cwd, stdout=subprocess.PIPE,
                                stderr=err, text=True, bufsize=1)
