"""ArcticDB (local LMDB store) as a peer, run in its own virtual environment.

ArcticDB needs pandas < 3 and the project runs pandas 3, so the peer lives in `build/venv-arctic`
(made by `ensure_venv`, which `make bench` calls and the correctness test calls too) and is driven
as a subprocess (`arctic_driver.py`) that reads the same day files every other system gets and
returns timings and answers as JSON.

    python -m benchmarks.peers.arctic     # make (or check) the virtual environment
"""
from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import pandas as pd

__all__ = ["ArcticUnavailable", "VENV", "arctic_answers", "ensure_venv", "run_driver"]

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "arctic-requirements.txt"
DRIVER = HERE / "arctic_driver.py"
VENV = HERE.parents[1] / "build" / "venv-arctic"


class ArcticUnavailable(RuntimeError):
    """The ArcticDB environment could not be made or run here (the message says why)."""


def _python(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def ensure_venv(venv_dir: Path = VENV, *, quiet: bool = True) -> Path:
    """The interpreter of an environment with `arctic-requirements.txt` installed; made if missing
    or if the requirements changed. Concurrent callers wait on a lock; a half-made one is never used."""
    wanted = REQUIREMENTS.read_text()
    stamp = venv_dir / ".requirements"
    venv_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(venv_dir.parent / f".{venv_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == wanted and _python(venv_dir).exists():
            return _python(venv_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{venv_dir.name}-", dir=venv_dir.parent))
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(tmp)
            cmd = [str(_python(tmp)), "-m", "pip", "install", "--disable-pip-version-check", "-r", str(REQUIREMENTS)]
            done = subprocess.run(cmd + (["-q"] if quiet else []), capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                raise ArcticUnavailable(f"pip install of {REQUIREMENTS.name} failed: {done.stderr.strip()[-800:]}")
            (tmp / ".requirements").write_text(wanted)
            shutil.rmtree(venv_dir, ignore_errors=True)
            tmp.rename(venv_dir)  # venv scripts name their own directory: rewrite them below
            _relocate(tmp, venv_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return _python(venv_dir)


def _relocate(old: Path, new: Path) -> None:
    """Point the moved environment's config and scripts at its new directory."""
    for path in [new / "pyvenv.cfg", *(new / "bin").iterdir()]:
        if path.is_file() and not path.is_symlink():
            try:
                text = path.read_text()
            except UnicodeDecodeError:
                continue
            if str(old) in text:
                path.write_text(text.replace(str(old), str(new)))


def run_driver(spec: dict, *, python: Path | None = None, timeout: float = 1800) -> dict:
    """Run arctic_driver.py in the ArcticDB environment with `spec`; its JSON result."""
    python = python or ensure_venv()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    try:
        done = subprocess.run([str(python), str(DRIVER), f.name], capture_output=True, text=True, timeout=timeout)
    finally:
        Path(f.name).unlink(missing_ok=True)
    if done.returncode != 0:
        raise ArcticUnavailable(f"the ArcticDB driver failed: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout)


def arctic_answers(result: dict) -> dict[str, pd.DataFrame]:
    """The driver's answers as DataFrames, comparable with `workload.disagreement`."""
    return {name: pd.DataFrame(cols) for name, cols in result["answers"].items()}


if __name__ == "__main__":
    try:
        print(ensure_venv(quiet=False))
    except ArcticUnavailable as exc:
        print(f"ArcticDB unavailable: {exc}", file=sys.stderr)
        raise SystemExit(1)
