"""Configuration: defaults < YAML < environment < arguments, the file's whereabouts, environment
parsing, the lake's use of it, and the generated reference page and example file."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
import yaml

from cryptolake_nb import ConfigError, Lake
from cryptolake_nb.alerts import AlertRules
from cryptolake_nb.config import LakeConfig, Settings, load_settings
from cryptolake_nb.config_doc import COMMAND, markdown
from cryptolake_nb.config_sections import AlertSettings, ReconnectSettings
from cryptolake_nb.config_sources import env_names
from cryptolake_nb.reconnect import ReconnectPolicy

from config_cases import leaf_paths

DOCS = Path(__file__).resolve().parents[1] / "docs"


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# -- defaults and precedence ----------------------------------------------------------------------
def test_defaults_with_no_file_and_no_environment() -> None:
    s = load_settings(False, env={})
    assert s.lake == LakeConfig()
    assert s.lake.root == Path("lake") and s.lake.max_rows == 500_000 and s.lake.durability == "batch"
    assert s.feeds == () and s.cryptofeed == {}
    assert s.network.proxy is None and s.network.retries == 10
    assert s.monitoring.prometheus.host == "127.0.0.1" and not s.monitoring.prometheus.enabled


def test_defaults_agree_with_the_objects_they_configure() -> None:
    assert ReconnectSettings().policy() == ReconnectPolicy()
    assert AlertSettings().rules() == AlertRules()
    assert {f.name for f in dataclasses.fields(ReconnectPolicy)} == set(ReconnectSettings.model_fields)


def test_each_level_overrides_the_one_below(tmp_path: Path) -> None:
    file = write(tmp_path / "c.yaml", {"lake": {"max_rows": 1, "compression_level": 1, "durability": "none",
                                                "flush_interval": 1.5},
                                       "monitoring": {"prometheus": {"port": 1000, "enabled": True}}})
    env = {"CRYPTOLAKE_LAKE__MAX_ROWS": "2", "CRYPTOLAKE_LAKE__COMPRESSION_LEVEL": "2",
           "CRYPTOLAKE_MONITORING__PROMETHEUS__PORT": "2000"}
    s = load_settings(file, env=env, lake={"max_rows": 3})
    assert s.lake.max_rows == 3                      # argument > environment > file
    assert s.lake.compression_level == 2             # environment > file
    assert s.lake.durability == "none" and s.lake.flush_interval == 1.5  # file > default
    assert s.lake.row_group_size == 1_000_000        # default
    assert s.monitoring.prometheus.port == 2000 and s.monitoring.prometheus.enabled  # nested: merged, not replaced
    assert load_settings(file, env={}).lake.max_rows == 1
    assert load_settings(file, env=env).lake.max_rows == 2


@pytest.mark.parametrize("level", ["file", "environment", "argument"])
def test_any_level_alone_sets_a_value(tmp_path: Path, level: str) -> None:
    file = write(tmp_path / "c.yaml", {"network": {"reconnect": {"jitter": 0.25}}} if level == "file" else {})
    env = {"CRYPTOLAKE_NETWORK__RECONNECT__JITTER": "0.25"} if level == "environment" else {}
    args = {"network": {"reconnect": {"jitter": 0.25}}} if level == "argument" else {}
    s = load_settings(file, env=env, **args)
    assert s.network.reconnect.jitter == 0.25
    assert s.network.reconnect.factor == 2.0  # the rest of the section keeps its defaults


def test_a_section_object_replaces_the_section(tmp_path: Path) -> None:
    file = write(tmp_path / "c.yaml", {"lake": {"max_rows": 5, "silence_s": 7}})
    s = load_settings(file, env={}, lake=LakeConfig(root=tmp_path / "x"))
    assert s.lake.max_rows == 500_000 and s.lake.silence_s == 60.0 and s.lake.root == tmp_path / "x"


# -- which file -----------------------------------------------------------------------------------
def test_cryptolake_config_names_the_file_and_an_explicit_path_wins(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", {"lake": {"max_rows": 11}})
    b = write(tmp_path / "b.yaml", {"lake": {"max_rows": 22}})
    assert load_settings(env={"CRYPTOLAKE_CONFIG": str(a)}).lake.max_rows == 11
    assert load_settings(b, env={"CRYPTOLAKE_CONFIG": str(a)}).lake.max_rows == 22
    with pytest.raises(ConfigError, match=r"missing\.yaml \(\$CRYPTOLAKE_CONFIG\) does not exist"):
        load_settings(env={"CRYPTOLAKE_CONFIG": str(tmp_path / "missing.yaml")})
    with pytest.raises(ConfigError, match="the path given"):
        load_settings(tmp_path / "nope.yaml", env={})


def test_cryptolake_yaml_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "cryptolake.yaml", {"lake": {"root": "data", "max_rows": 33}})
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={})
    assert s.lake.max_rows == 33
    assert s.lake.root == tmp_path.resolve() / "data"  # relative to the file's directory
    assert load_settings(False, env={}).lake.max_rows == 500_000  # False: no file


def test_a_relative_root_in_a_file_is_relative_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    file = write(tmp_path / "etc" / "c.yaml", {"lake": {"root": "../var/lake"}})
    monkeypatch.chdir(tmp_path)
    assert load_settings(file, env={}).lake.root == (tmp_path / "etc").resolve() / "../var/lake"
    assert load_settings(False, env={"CRYPTOLAKE_LAKE__ROOT": "rel"}).lake.root == Path("rel")  # env: the cwd's
    assert load_settings(False, env={}, lake={"root": "~/x"}).lake.root == Path("~/x").expanduser()


# -- environment ----------------------------------------------------------------------------------
def test_environment_values_are_parsed_per_type() -> None:
    s = load_settings(False, env={
        "cryptolake_lake__tables": "trades, l2_book",           # any case; lists as a,b
        "CRYPTOLAKE_LAKE__MAX_BYTES": "64MiB",
        "CRYPTOLAKE_LAKE__AUTOFLUSH": "false",
        "CRYPTOLAKE_LAKE__DUCKDB_THREADS": "2",
        "CRYPTOLAKE_NETWORK__RECONNECT__WATCHDOG_S": "null",   # null sets None
        "CRYPTOLAKE_NETWORK__NO_PROXY": '["localhost", ".internal"]',  # or JSON
        "CRYPTOLAKE_NETWORK__PROXY": "socks5://u:p@127.0.0.1:1080",
        "CRYPTOLAKE_MONITORING__ALERTS__DISK_FREE_BYTES": "2GB",
        "CRYPTOLAKE_CRYPTOFEED__BINANCE__KEY_ID": "abc",
        "CRYPTOLAKE_FEEDS": '[{"exchange": "binance", "symbols": ["BTC-USDT"], "channels": "trades,l2_book"}]',
        "CRYPTOLAKE_LAKE__SILENCE_S": "",                       # empty: unset
    })
    assert s.lake.tables == ("trades", "l2_book") and s.lake.max_bytes == 64 * 2**20 and s.lake.autoflush is False
    assert s.lake.duckdb_threads == 2 and s.lake.silence_s == 60.0
    assert s.network.reconnect.watchdog_s is None and s.network.no_proxy == ("localhost", ".internal")
    assert s.network.proxy.host == "127.0.0.1" and s.network.proxy.password == "p"
    assert s.monitoring.alerts.disk_free_bytes == 2 * 10**9
    assert s.cryptofeed == {"binance": {"key_id": "abc"}}
    assert s.feeds[0].exchange == "BINANCE" and s.feeds[0].channels == ("trades", "l2_book")


def test_cryptolake_root_is_short_for_the_nested_name(tmp_path: Path) -> None:
    assert load_settings(False, env={"CRYPTOLAKE_ROOT": str(tmp_path)}).lake.root == tmp_path
    assert load_settings(False, env={"CRYPTOLAKE_LAKE__ROOT": str(tmp_path)}).lake.root == tmp_path
    both = {"CRYPTOLAKE_ROOT": str(tmp_path), "CRYPTOLAKE_LAKE__ROOT": str(tmp_path)}
    assert load_settings(False, env=both).lake.root == tmp_path
    with pytest.raises(ConfigError, match="CRYPTOLAKE_ROOT.*CRYPTOLAKE_LAKE__ROOT.*disagree"):
        load_settings(False, env={"CRYPTOLAKE_ROOT": "/a", "CRYPTOLAKE_LAKE__ROOT": "/b"})
    assert load_settings(False, env={"CRYPTOLAKE_ROOT": "/a"}, lake={"root": "/c"}).lake.root == Path("/c")


def test_bad_environment_values_name_their_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(False, env={"CRYPTOLAKE_LAKE__MAX_ROWS": "lots"})
    assert "lake.max_rows = 'lots' (environment variable CRYPTOLAKE_LAKE__MAX_ROWS): must be an integer >= 1" in str(info.value)
    with pytest.raises(ConfigError, match=r"lake\.max_rowz: unknown setting \(environment variable "
                                          r"CRYPTOLAKE_LAKE__MAX_ROWZ\); did you mean lake\.max_rows\?"):
        load_settings(False, env={"CRYPTOLAKE_LAKE__MAX_ROWZ": "5"})
    with pytest.raises(ConfigError, match="CRYPTOLAKE_FEEDS is not valid JSON"):
        load_settings(False, env={"CRYPTOLAKE_FEEDS": "[{"})


def test_an_unknown_top_level_variable_is_ignored_with_a_suggestion(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cryptolake_nb"):
        s = load_settings(False, env={"CRYPTOLAKE_MAX_ROWS": "5", "CRYPTOLAKE_CRASH_AT": "x", "CRYPTOLAKE_CONFIG": ""})
    assert s.lake.max_rows == 500_000
    [record] = [r for r in caplog.records if "CRYPTOLAKE_" in r.getMessage()]
    assert "CRYPTOLAKE_MAX_ROWS" in record.getMessage() and "CRYPTOLAKE_LAKE__MAX_ROWS" in record.getMessage()


def test_every_setting_has_an_environment_name() -> None:
    names = env_names(Settings)
    assert {"CRYPTOLAKE_LAKE__MAX_ROWS", "CRYPTOLAKE_NETWORK__RECONNECT__WATCHDOG_S", "CRYPTOLAKE_ROOT",
            "CRYPTOLAKE_MONITORING__PROMETHEUS__PORT", "CRYPTOLAKE_FEEDS", "CRYPTOLAKE_CRYPTOFEED"} <= names


# -- the file itself ------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "match"), [
    ("lake: [1, 2\n", r"line 2 column 1: not valid YAML"),
    ("lake:\n  max_rows: 1\n  max_rows: 2\n", r"line 3: lake\.max_rows is set twice \(first on line 2\)"),
    ("- lake\n", "must be a mapping of sections"),
    ("lake: 5\n", r"lake = 5 \(c\.yaml line 1\): must be a mapping"),
])
def test_broken_files(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=match):
        load_settings(tmp_path / "c.yaml", env={})


def test_an_empty_file_is_all_defaults(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("# nothing\n", encoding="utf-8")
    assert load_settings(tmp_path / "c.yaml", env={}) == load_settings(False, env={})


def test_all_problems_in_one_error_with_their_lines(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("lake:\n  max_rows: 0\n  durability: fast\nmonitering: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "c.yaml", env={"CRYPTOLAKE_LAKE__SILENCE_S": "-1"})
    text = str(info.value)
    assert text.startswith(f"invalid configuration ({tmp_path / 'c.yaml'}, environment): 4 problems\n")
    assert "lake.max_rows = 0 (c.yaml line 2): must be an integer >= 1" in text
    assert "lake.durability = 'fast' (c.yaml line 3): must be one of 'none', 'batch', 'strict'" in text
    assert "lake.silence_s = '-1' (environment variable CRYPTOLAKE_LAKE__SILENCE_S): must be a number > 0" in text
    assert "monitering: unknown setting (c.yaml line 4); did you mean monitoring?" in text


def test_a_password_never_appears_in_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(False, env={}, network={"proxy": "ftp://alice:s3cret@127.0.0.1:21"},
                      monitoring={"alerts": {"webhook_url": "gopher://bob:hunter2@x"}})
    assert "s3cret" not in str(info.value) and "hunter2" not in str(info.value)
    assert "network.proxy = 'ftp://***@127.0.0.1:21'" in str(info.value)
    s = load_settings(False, env={}, monitoring={"alerts": {"webhook_url": "http://bob:hunter2@127.0.0.1:9/a"}})
    assert "hunter2" not in repr(s)


# -- the lake -------------------------------------------------------------------------------------
def test_lake_keywords_are_the_argument_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "c.yaml", {"lake": {"max_rows": 9, "silence_s": 9}, "monitoring": {"alerts": {"silent_s": 5}}})
    monkeypatch.setenv("CRYPTOLAKE_CONFIG", str(tmp_path / "c.yaml"))
    monkeypatch.setenv("CRYPTOLAKE_LAKE__SILENCE_S", "8")
    with Lake(tmp_path / "lk", max_rows=7, autoflush=False) as lake:
        assert (lake.config.max_rows, lake.config.silence_s) == (7, 8.0)
        assert lake.config.root == tmp_path / "lk" and lake.settings.lake is lake.config
        assert lake.monitoring.rules.silent_s == 5
        with pytest.raises(Exception):
            lake.config.max_rows = 1  # frozen
    with pytest.raises(ConfigError, match=r"lake\.max_rowz: unknown setting \(argument\); did you mean lake\.max_rows"):
        Lake(tmp_path / "lk2", max_rowz=7)
    with pytest.raises(ConfigError, match=r"lake\.durability = 'fast' \(argument\)"):
        Lake(tmp_path / "lk2", durability="fast")
    with pytest.raises(ConfigError, match="either config= or root"):
        Lake(config=LakeConfig(root=tmp_path / "lk3"), max_rows=5)
    settings = load_settings(False, env={}, lake={"root": tmp_path / "lk4", "autoflush": False})
    with Lake(settings=settings) as lake:
        assert lake.settings is settings and lake.root == (tmp_path / "lk4").resolve()


def test_lake_config_alone_raises_config_error() -> None:
    with pytest.raises(ConfigError, match=r"lake\.max_rows = 0: must be an integer >= 1"):
        LakeConfig(max_rows=0)
    assert LakeConfig.load("x", max_rows=5).max_rows == 5
    assert LakeConfig(root="r", max_bytes="1KiB").max_bytes == 1024


def test_lake_tables_limit_what_is_stored(tmp_path: Path) -> None:
    with Lake(tmp_path / "lk", autoflush=False, tables=["trades"]) as lake:
        lake.callbacks(["trades"])
        with pytest.raises(ConfigError, match=r"l2_book not stored by this lake: lake\.tables is trades"):
            lake.callbacks(["l2_book"])
    with pytest.raises(ConfigError, match=r"feeds\[0\]\.channels = \['trades', 'l2_book'\].*l2_book not in lake\.tables"):
        load_settings(False, env={}, lake={"tables": "trades"},
                      feeds=[{"exchange": "BINANCE", "symbols": ["BTC-USDT"], "channels": ["trades", "l2_book"]}])


def test_load_ext_uses_the_same_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    write(tmp_path / "cryptolake.yaml", {"lake": {"root": "nb", "max_rows": 123, "autoflush": False}})
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRYPTOLAKE_ROOT", raising=False)
    monkeypatch.setenv("CRYPTOLAKE_LAKE__DURABILITY", "none")
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "cryptolake_nb")
        lake = shell.user_ns["lake"]
        assert lake.root == (tmp_path / "nb").resolve() and lake.config.max_rows == 123
        assert lake.config.durability == "none"
    finally:
        shell.run_line_magic("unload_ext", "cryptolake_nb")
    (tmp_path / "cryptolake.yaml").write_text("lake:\n  max_rows: -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"lake\.max_rows = -1 \(cryptolake\.yaml line 2\)"):
        shell.run_line_magic("load_ext", "cryptolake_nb")
    InteractiveShell.clear_instance()


# -- documents ------------------------------------------------------------------------------------
def test_the_reference_page_is_current() -> None:
    page = DOCS / "configuration.md"
    assert page.read_text(encoding="utf-8") == markdown(), f"docs/configuration.md is out of date: run `{COMMAND}`"


def test_every_setting_is_in_the_reference_page() -> None:
    text = markdown()
    for path in leaf_paths(Settings):
        name = path.rsplit(".", 1)[-1]
        assert f"| `{name}` |" in text or f"## `{path}`" in text, path


def test_the_example_file_loads_and_shows_every_setting() -> None:
    example = DOCS / "cryptolake.example.yaml"
    s = load_settings(example, env={})
    assert s.lake.root == DOCS / "lake" and len(s.feeds) == 2
    assert s.feeds[0].subscribe_kwargs(s.network)["options"] == {"depth_interval": "100ms", "max_depth": 100}
    data = yaml.safe_load(example.read_text(encoding="utf-8"))
    for path in leaf_paths(Settings):
        node = data
        for part in path.replace("[0]", ".0").split("."):
            if isinstance(node, list):
                node = node[int(part)]
            elif part == "reconnect" and "feeds" in path:
                node = data["network"]["reconnect"]  # a feed's reconnect: the same fields as network's
            else:
                assert isinstance(node, dict) and part in node, f"{path} is not in {example.name}"
                node = node[part]
            if node is None:
                break  # e.g. simulator: null, its fields in the comment


@pytest.mark.parametrize("example", sorted(DOCS.glob("*.example.yaml")), ids=lambda p: p.name)
def test_every_example_file_in_docs_validates(example: Path) -> None:
    settings = load_settings(example, env={})
    for feed in settings.feeds:
        feed.subscribe_kwargs(settings.network)  # the feeds' reconnect overrides merge too
