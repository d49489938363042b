"""Every setting, given an invalid value, fails at load with one message naming it: the dotted path,
the value, where it came from and what is allowed; unknown keys get a suggestion."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cryptolake_nb import ConfigError
from cryptolake_nb.config import Settings, load_settings
from cryptolake_nb.config_sections import NetworkSettings
from cryptolake_nb.simulator.tls import make_loopback_tls

from config_cases import BAD, FEED, leaf_paths, nested


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    path.write_bytes(make_loopback_tls().ca_pem)
    return str(path)


def test_every_setting_has_an_invalid_case() -> None:
    assert sorted(BAD) == sorted(leaf_paths(Settings)), "add a case to tests/config_cases.py for each new setting"


def test_the_valid_bases_load(ca_file: str) -> None:
    s = load_settings(False, env={}, feeds=[{**FEED, "simulator": {"url": "https://127.0.0.1:8443", "ca_file": ca_file}}])
    assert s.feeds[0].simulator.url == "https://127.0.0.1:8443"


@pytest.mark.parametrize("source", ["argument", "file"])
@pytest.mark.parametrize("path", sorted(BAD))
def test_an_invalid_value_names_its_field(path: str, source: str, tmp_path: Path, ca_file: str) -> None:
    value, allowed = BAD[path]
    data = nested(path, value, ca_file)
    with pytest.raises(ConfigError) as info:
        if source == "argument":
            load_settings(False, env={}, **data)
        else:
            file = tmp_path / "cryptolake.yaml"
            file.write_text(yaml.safe_dump(data), encoding="utf-8")
            load_settings(file, env={})
    text = str(info.value)
    assert "\n" not in text, f"one problem, one line: {text}"
    origin = r"\(argument\)" if source == "argument" else r"\(cryptolake\.yaml line \d+\)"
    shown = path.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")
    assert re.search(rf"^invalid configuration \(.+\): {shown} = .+ {origin}: ", text), text
    assert allowed in text, text
    if isinstance(value, str) and value.strip():
        assert repr(value) in text, text


@pytest.mark.parametrize(("data", "expected"), [
    ({"lake": {"flush_intreval": 1}}, "lake.flush_intreval: unknown setting (argument); did you mean lake.flush_interval?"),
    ({"network": {"reconnect": {"jiter": 1}}},
     "network.reconnect.jiter: unknown setting (argument); did you mean network.reconnect.jitter?"),
    ({"feeds": [{**FEED, "chanels": ["trades"]}]}, "feeds[0].chanels: unknown setting (argument); did you mean feeds[0].channels?"),
    ({"monitoring": {"prometheus": {"prot": 1}}}, "monitoring.prometheus.prot: unknown setting (argument); did you mean "
                                                  "monitoring.prometheus.port?"),
    ({"lake": {"zzz": 1}}, "lake.zzz: unknown setting (argument) (lake takes: autocompact, autoflush,"),
])
def test_unknown_keys_suggest_the_closest(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(False, env={}, **data)
    assert expected in str(info.value)


def test_a_setting_at_the_top_level_that_is_not_a_section() -> None:
    with pytest.raises(ConfigError, match=r"netwrok: unknown setting .*did you mean network\?"):
        load_settings(False, env={}, netwrok={})


def test_backoff_bounds_after_a_feeds_overrides() -> None:
    ok = load_settings(False, env={}, network={"reconnect": {"initial_delay": 0.1, "max_delay": 0.5}},
                       feeds=[{**FEED, "reconnect": {"max_delay": 0.2}}])
    assert ok.feeds[0].subscribe_kwargs(ok.network)["reconnect"].max_delay == 0.2
    with pytest.raises(ConfigError, match=r"feeds\[0\]\.reconnect\.max_delay = 0\.5 \(argument\): must be at least "
                                          r"feeds\[0\]\.reconnect\.initial_delay \(2\.0\)"):
        load_settings(False, env={}, feeds=[{**FEED, "reconnect": {"initial_delay": 2.0, "max_delay": 0.5}}])
    with pytest.raises(ConfigError, match=r"network\.reconnect\.max_delay = 0\.5 .*initial_delay \(1\.0\)"):
        load_settings(False, env={}, network={"reconnect": {"max_delay": 0.5}})


def test_a_section_built_alone_names_its_path() -> None:
    with pytest.raises(ConfigError, match=r"^invalid configuration: network\.retries = -9: must be an integer >= -1$"):
        NetworkSettings(retries=-9)
    with pytest.raises(ConfigError, match=r"network\.reconnect\.factor = 0: must be a number from 1 to 10"):
        NetworkSettings(reconnect={"factor": 0})


def test_book_depth_and_max_depth_conflict() -> None:
    with pytest.raises(ConfigError, match=r"feeds\[0\]\.cryptofeed = .*max_depth is also set as book_depth"):
        load_settings(False, env={}, feeds=[{**FEED, "book_depth": 5, "cryptofeed": {"max_depth": 5}}])
