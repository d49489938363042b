"""The deployment files in docs/ stay true: the sample config loads, the systemd unit verifies,
the guide names every command and the exit statuses the code uses."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cryptolake_nb import cli
from cryptolake_nb.config import load_settings

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_sample_collector_config_loads_as_documented():
    settings = load_settings(DOCS / "collector.example.yaml", env={})
    assert settings.lake.root == Path("/var/lib/cryptolake/lake")
    assert settings.network.retries == -1
    assert [(f.exchange, f.channels[0]) for f in settings.feeds] == [("BINANCE", "trades"), ("BINANCE_FUTURES", "trades")]
    prometheus = settings.monitoring.prometheus
    assert prometheus.enabled and prometheus.host == "127.0.0.1"


def unit_lines() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in (DOCS / "cryptolake.service").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_the_systemd_unit_matches_what_collect_does():
    unit = unit_lines()
    (exec_start,) = unit["ExecStart"]
    assert re.fullmatch(r"\S+/bin/cryptolake collect( --status-every \d+)?", exec_start)
    assert unit["KillSignal"] == ["SIGTERM"] and unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == [str(cli.EXIT_USAGE)]
    assert unit["Environment"][0].startswith("CRYPTOLAKE_CONFIG=")
    assert int(unit["TimeoutStopSec"][0]) >= 30  # the final flush needs time


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_systemd_unit_verifies(tmp_path):
    text = (DOCS / "cryptolake.service").read_text()
    text = text.replace("/opt/cryptolake/venv/bin/cryptolake", str(Path(sys.executable).with_name("cryptolake")))
    text = text.replace("User=cryptolake", "User=root").replace("Group=cryptolake", "Group=root")
    unit = tmp_path / "cryptolake.service"
    unit.write_text(text)
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (out.stdout + out.stderr).splitlines() if str(unit) in line]
    assert out.returncode == 0 and not complaints, out.stdout + out.stderr


def test_the_guide_names_every_command_and_exit_status():
    guide = (DOCS / "deployment.md").read_text()
    commands = cli.build_parser()._subparsers._group_actions[0].choices  # the registered subcommands
    for name in commands:
        assert f"cryptolake {name}" in guide or f"`{name}`" in guide, name
    statuses = (rf"Exit statuses of every command: {cli.EXIT_OK} success; {cli.EXIT_FAILURE} a runtime failure"
                rf"[^;]*; {cli.EXIT_USAGE} a usage or configuration error[^;]*; {cli.EXIT_INTERRUPTED} interrupted")
    assert re.search(statuses, " ".join(guide.split())), "the guide's exit statuses differ from cli.py's"
    architecture = (DOCS / "architecture.md").read_text()
    assert "## Headless collector (`cryptolake`)" in architecture and "docs/deployment.md" in architecture
