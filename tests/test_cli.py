"""`cryptolake` as a real subprocess: exit codes, one-line errors, sql/status/verify/compact/replay."""
from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys

import pytest

from cryptolake_nb import Lake
from cryptolake_nb.cli import main

import clirun
from feeding import put


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return clirun.cli_env(tmp_path_factory.mktemp("guard"))


def one_error_line(stderr: str) -> str:
    """The only line on stderr: the error."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("cryptolake: error: "), stderr
    return lines[0]


def error_line(stderr: str) -> str:
    """The one error line, last on stderr after the log records (no traceback anywhere)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    errors = [line for line in lines if line.startswith("cryptolake: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    return errors[0]


def test_the_child_runs_the_script_behind_the_loopback_guard(env, tmp_path):
    assert clirun.CLI.is_file(), "pip install -e . makes the console script"
    probe = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection(('10.255.255.1', 9), 1)"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 1 and "test guard: connection to non-loopback address" in probe.stderr
    out = clirun.run(["--help"], env, tmp_path)
    assert out.returncode == 0
    for command in ("collect", "status", "verify", "compact", "replay", "sql"):
        assert command in out.stdout


@pytest.mark.parametrize("args", [[], ["bogus"], ["sql"], ["sql", "--format", "xml", "SELECT 1"],
                                  ["collect", "--status-every", "-1"], ["--log-level", "LOUD", "status"]])
def test_usage_errors_exit_2_with_usage_and_no_traceback(env, tmp_path, args):
    out = clirun.run(args, env, tmp_path)
    assert out.returncode == 2, out
    assert "usage: cryptolake" in out.stderr and "Traceback" not in out.stderr


def test_configuration_errors_exit_2_in_one_line_naming_the_field(env, tmp_path):
    (tmp_path / "cryptolake.yaml").write_text("lake:\n  durability: sometimes\n")  # found in the working directory
    out = clirun.run(["collect"], env, tmp_path)
    assert out.returncode == 2
    line = one_error_line(out.stderr)
    assert "lake.durability = 'sometimes' (cryptolake.yaml line 2)" in line and "'batch'" in line
    (tmp_path / "other.yaml").write_text("lake: {root: lk}\n")
    out = clirun.run(["--config", "other.yaml", "collect"], env, tmp_path)
    assert out.returncode == 2 and "the configuration has no feeds" in one_error_line(out.stderr)
    out = clirun.run(["sql", "SELECT 1"], {**env, "CRYPTOLAKE_CONFIG": str(tmp_path / "other.yaml")}, tmp_path)
    assert out.returncode == 2 and f"no lake at {tmp_path / 'lk'}" in one_error_line(out.stderr)
    out = clirun.run(["--config", "missing.yaml", "status"], env, tmp_path)
    assert out.returncode == 2 and "missing.yaml" in one_error_line(out.stderr)
    out = clirun.run(["--config", "other.yaml", "sql", "SELECT 1"], {**env, "CRYPTOLAKE_LAKE__MAX_ROWS": "-1"}, tmp_path)
    assert out.returncode == 2 and "CRYPTOLAKE_LAKE__MAX_ROWS" in one_error_line(out.stderr)


def test_the_root_comes_from_the_argument_then_the_environment_then_the_file(env, tmp_path):
    for name in ("file", "environment", "argument"):
        Lake(tmp_path / name, autoflush=False).close()
    (tmp_path / "c.yaml").write_text("lake: {root: file}\n")  # relative to the file's directory
    where = tmp_path / "elsewhere"
    where.mkdir()
    query = ["sql", "-f", "json", "SELECT 1 AS one"]
    cases = [([], {}, "file"), ([], {"CRYPTOLAKE_ROOT": str(tmp_path / "environment")}, "environment"),
             (["--root", str(tmp_path / "argument")], {"CRYPTOLAKE_ROOT": str(tmp_path / "environment")}, "argument")]
    for extra, variables, expected in cases:
        out = clirun.run(["--config", tmp_path / "c.yaml", *extra, "status", "-f", "json"], {**env, **variables}, where)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["root"] == str(tmp_path / expected)
    assert clirun.run(["--config", tmp_path / "c.yaml", *query], env, where).returncode == 0


@pytest.fixture(scope="module")
def replayed(env, tmp_path_factory, captures_dir):
    """A lake filled by `cryptolake replay` of the BITSTAMP capture (10 trades, 627 book rows)."""
    where = tmp_path_factory.mktemp("replayed")
    out = clirun.run(["--root", "lk", "replay", "--format", "json", *sorted(captures_dir.glob("BITSTAMP.*"))],
                     env, where)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["exchange"] == "BITSTAMP" and report["rows"]["trades"] == 10 and report["substitutions"] == 0
    return where


@pytest.fixture(scope="module")
def captures_dir():
    from cryptofeed_reference import CAPTURES

    assert CAPTURES.is_dir(), f"recorded captures not found at {CAPTURES}"
    return CAPTURES


def test_sql_prints_a_table_csv_or_json(env, replayed):
    query = "SELECT side, count(*) AS n, min(ts) AS first FROM trades GROUP BY side ORDER BY side"
    with Lake(replayed / "lk", read_only=True) as lake:
        expected = lake.sql(query)
    assert expected["n"].sum() == 10
    table = clirun.run(["--root", "lk", "sql", query], env, replayed)
    assert table.returncode == 0 and table.stderr == ""
    lines = table.stdout.splitlines()
    assert len(expected) == 2  # buys and sells
    assert lines[0].split() == ["side", "n", "first"] and lines[-1] == "(2 rows)"
    assert [line.split()[:2] for line in lines[1:-1]] == [[s, str(n)] for s, n in zip(expected["side"], expected["n"])]
    as_csv = list(csv.DictReader(io.StringIO(clirun.run(["--root", "lk", "sql", "-f", "csv", query], env, replayed).stdout)))
    assert [(r["side"], int(r["n"])) for r in as_csv] == list(zip(expected["side"], expected["n"]))
    assert as_csv[0]["first"].startswith(expected["first"][0].strftime("%Y-%m-%dT%H:%M:%S"))
    as_json = json.loads(clirun.run(["sql", "--root", "lk", "--format", "json", query], env, replayed).stdout)
    assert [(r["side"], r["n"]) for r in as_json] == list(zip(expected["side"], expected["n"]))
    assert as_json[0]["first"].startswith(expected["first"][0].strftime("%Y-%m-%dT%H:%M:%S"))


def test_sql_binds_parameters(env, replayed):
    symbol = json.loads(clirun.run(["--root", "lk", "sql", "-f", "json", "SELECT symbol FROM trades LIMIT 1"],
                                   env, replayed).stdout)[0]["symbol"]
    out = clirun.run(["--root", "lk", "sql", "-f", "json", "-p", f"sym={symbol}", "-p", "n=1",
                      "SELECT count(*) >= $n AS ok, any_value(symbol) AS s FROM trades WHERE symbol = $sym"], env, replayed)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"ok": True, "s": symbol}]
    out = clirun.run(["--root", "lk", "sql", "-p", "no-name", "SELECT 1"], env, replayed)
    assert out.returncode == 2 and "--param must be name=value" in one_error_line(out.stderr)


def test_sql_refused_statement_exits_2_failing_query_exits_1(env, replayed):
    out = clirun.run(["--root", "lk", "sql", "DELETE FROM trades"], env, replayed)
    assert out.returncode == 2 and "SELECT" in one_error_line(out.stderr)
    out = clirun.run(["--root", "lk", "sql", "SELECT no_such_column FROM trades"], env, replayed)
    assert out.returncode == 1 and "no_such_column" in one_error_line(out.stderr)
    debug = clirun.run(["--root", "lk", "--debug", "sql", "SELECT no_such_column FROM trades"], env, replayed)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "cryptolake: error:" in debug.stderr


def test_status_of_a_lake_without_a_collector(env, replayed):
    out = clirun.run(["--root", "lk", "status", "--format", "json"], env, replayed)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["root"] == str((replayed / "lk").resolve())
    assert status["writer"]["running"] is False and status["collector"] is None  # replay's writer has exited
    assert status["committed"]["tables"]["trades"] == {"files": 1, "bytes": status["committed"]["tables"]["trades"]["bytes"],
                                                       "rows": 10}
    assert status["committed"]["gaps"]["total"] >= 0 and status["committed"]["disk"]["free_bytes"] > 0
    text = clirun.run(["--root", "lk", "status"], env, replayed)
    assert text.returncode == 0, text.stderr
    assert "[writer]" in text.stdout and "[committed.tables]" in text.stdout
    assert re.search(r"^trades +1 +\d+ +10$", text.stdout, re.M), text.stdout


@pytest.mark.parametrize("damage", ["flip", "delete"])
def test_verify_exits_1_when_it_moved_damaged_files(env, tmp_path, make_trade, damage):
    with Lake(tmp_path / "lk", autoflush=False, autocompact=False) as lake:
        for f in range(3):
            put(lake, [make_trade(100 + i, 1, 1_700_000_000.0 + f * 50 + i, id=str(f * 50 + i)) for i in range(50)])
            lake.flush()
        victim = lake.root / lake.committed_files("trades")[1].path
    ok = clirun.run(["--root", "lk", "verify", "-f", "json"], env, tmp_path)
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"checked": 3, "damaged": 0, "bad": [], "quarantined": []}
    if damage == "flip":
        data = bytearray(victim.read_bytes())
        data[len(data) // 3] ^= 0x40
        victim.write_bytes(bytes(data))
    else:
        victim.unlink()
    bad = clirun.run(["--root", "lk", "verify", "-f", "json"], env, tmp_path)
    assert bad.returncode == 1
    assert "verify found 1 damaged file(s)" in error_line(bad.stderr)
    assert "ERROR cryptolake_nb.verify" in bad.stderr  # the log names the file and the reason
    report = json.loads(bad.stdout)
    assert [b["path"] for b in report["bad"]] == [str(victim.relative_to(tmp_path / "lk"))]
    count = clirun.run(["--root", "lk", "sql", "-f", "json", "SELECT count(*) AS n FROM trades"], env, tmp_path)
    assert json.loads(count.stdout) == [{"n": 100}]
    assert clirun.run(["--root", "lk", "verify"], env, tmp_path).returncode == 0


def test_compact_merges_small_files_and_keeps_every_row(env, tmp_path, make_trade):
    with Lake(tmp_path / "lk", autoflush=False, autocompact=False) as lake:
        for f in range(10):
            put(lake, [make_trade(100 + i, 1, 1_700_000_000.0 + f * 20 + i, id=str(f * 20 + i)) for i in range(20)])
            lake.flush()
        assert len(lake.committed_files("trades")) == 10
    summary = "SELECT count(*) AS n, count(DISTINCT trade_id) AS d, sum(price) AS p FROM trades"
    before = clirun.run(["--root", "lk", "sql", "-f", "json", summary], env, tmp_path).stdout
    out = clirun.run(["--root", "lk", "compact", "-f", "json", "trades"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    merged = json.loads(out.stdout)["merged"]
    assert [(m["table"], m["files_in"], m["rows"]) for m in merged] == [("trades", 10, 200)]
    assert clirun.run(["--root", "lk", "sql", "-f", "json", summary], env, tmp_path).stdout == before
    with Lake(tmp_path / "lk", read_only=True) as lake:
        assert len(lake.committed_files("trades")) == 1
    again = clirun.run(["--root", "lk", "compact", "-f", "json"], env, tmp_path)
    assert again.returncode == 0 and json.loads(again.stdout)["merged"] == []


def test_replay_of_a_missing_file_is_a_usage_error(env, tmp_path):
    out = clirun.run(["--root", "lk", "replay", "nope.0"], env, tmp_path)
    assert out.returncode == 2 and "capture file(s) not found: nope.0" in one_error_line(out.stderr)


def test_main_in_process_returns_the_exit_status(tmp_path, capsys):
    """main() returns codes rather than exiting (only argparse's own usage errors raise SystemExit)."""
    assert main(["--root", str(tmp_path / "none"), "sql", "SELECT 1"], setup_logging=False) == 2
    assert "no lake at" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["sql"], setup_logging=False)
    assert exc.value.code == 2
