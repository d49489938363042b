"""%load_ext / %unload_ext: open the active lake, register the magics, close on unload."""
from __future__ import annotations

import logging
from typing import Any

from .config import load_settings
from .errors import LakeLockedError
from .jupysql import JupysqlBridge
from .lake import Lake, active_lake
from .magics import LakeMagics

__all__ = ["load", "unload"]

log = logging.getLogger(__name__)

_MAGIC_NAMES = {"line": ("lakesql", "lake"), "cell": ("lakesql",)}


def load(ipython: Any) -> Lake:
    """Open (or create) the configured lake, make it active, expose it as `lake`.

    The settings load as everywhere (config.py): ./cryptolake.yaml or $CRYPTOLAKE_CONFIG, then the
    CRYPTOLAKE_* environment (CRYPTOLAKE_ROOT or CRYPTOLAKE_LAKE__ROOT); the root defaults to ./lake.
    An invalid configuration fails here with one ConfigError naming each field. When another
    process writes the lake (a `cryptolake collect`, say), it opens read-only and follows that
    writer's commits instead of failing."""
    settings = load_settings()
    try:
        lake = Lake(settings=settings)
    except LakeLockedError as exc:
        log.warning("%s; opened read-only: queries see the writer's committed data", exc)
        print(f"cryptolake: {exc}\nopened read-only: queries see what the writer commits (no subscribe/start here)")
        lake = Lake(settings=settings, read_only=True)
    lake.activate()
    ipython.register_magics(LakeMagics(ipython, lake))
    ipython.push({"lake": lake})
    JupysqlBridge(ipython, lake).install()  # %sql / %%sql (jupysql) see the lake's views, in either load order
    return lake


def unload(ipython: Any) -> None:
    """Stop the collector, flush, close DuckDB and drop the magics (and the lake's jupysql connection)."""
    JupysqlBridge.uninstall_all(ipython)
    try:
        lake = active_lake()
    except Exception:
        lake = None
    if lake is not None:
        lake.close()
    magics = ipython.magics_manager.magics
    for kind, names in _MAGIC_NAMES.items():
        for name in names:
            magics[kind].pop(name, None)
    ipython.magics_manager.registry.pop("LakeMagics", None)
    if ipython.user_ns.get("lake") is lake:
        ipython.user_ns.pop("lake", None)
