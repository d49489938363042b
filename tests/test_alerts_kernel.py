"""In a real Jupyter kernel, a firing alert is displayed once (an HTML box in the running cell), not
once per monitor round, and a new episode is displayed again."""
from __future__ import annotations

import pytest

import kernels

SETUP = """
import time
from pathlib import Path
import cryptolake_nb as cl
from cryptolake_nb.health import DiskUsage, Monitoring

class Probe:
    free = 2**40
    def __call__(self, path):
        return DiskUsage(2**41, 2**41 - self.free, self.free)

probe = Probe()
lake = cl.Lake(ROOT, monitoring=Monitoring(interval_s=0.05, disk=probe))
"""


@pytest.mark.slow  # starts a kernel: a few seconds
def test_an_alert_is_displayed_once_per_episode_in_the_running_cell(tmp_path):
    nb = kernels.notebook(
        f"ROOT = {str(tmp_path / 'lake')!r}\n" + SETUP,
        "probe.free = 0\ntime.sleep(1.0)",           # fires: one box here, whatever the rounds
        "time.sleep(0.5)",                           # the same episode: nothing
        "probe.free = 2**40\ntime.sleep(0.5)",       # resolved: logged, not shown
        "probe.free = 0\ntime.sleep(1.0)",           # a new episode: shown again
        "lake.close()",
    )
    client = kernels.run(nb, tmp_path)
    shown = {i: client.of(i, "display_data") for i in range(1, 7)}
    assert {i: len(m) for i, m in shown.items()} == {1: 0, 2: 1, 3: 0, 4: 0, 5: 1, 6: 0}
    for i in (2, 5):
        html = shown[i][0]["content"]["data"]["text/html"]
        assert "cryptolake alert</b> (disk_nearly_full)" in html and "0.0 MiB free" in html
    errors = [m for i in range(7) for m in client.of(i, "error")]
    stderr = "".join(m["content"]["text"] for i in range(7) for m in client.of(i, "stream") if m["content"]["name"] == "stderr")
    assert errors == [] and "AlertWarning" not in stderr  # in a kernel: the box, not a warning
