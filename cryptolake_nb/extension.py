"""%load_ext / %unload_ext: open the active lake, register the magics, close on unload."""
from __future__ import annotations

import logging
from typing import Any

from .jupysql import JupysqlBridge
from .lake import Lake, active_lake
from .magics import LakeMagics

__all__ = ["load", "unload"]

log = logging.getLogger(__name__)

_MAGIC_NAMES = {"line": ("lakesql", "lake"), "cell": ("lakesql",)}


def load(ipython: Any) -> Lake:
    """Open (or create) the lake at $CRYPTOLAKE_ROOT or ./lake, make it active, expose it as `lake`."""
    lake = Lake().activate()
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
