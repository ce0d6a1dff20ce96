"""Configuration: from parsed flags through the field list, and across processes through the environment."""

from __future__ import annotations

import dataclasses

import pytest

from mock_server.cli import _config_from, build_parser
from mock_server.core.config import CONFIG_ENV, MockConfig, config_from_env, config_from_values, from_json, to_json


def test_every_serve_flag_that_names_a_field_reaches_the_config():
    args = build_parser().parse_args([
        "serve", "--token", "a", "--token", "b", "--outcome", "failed", "--store", "/tmp/x.sqlite3",
        "--sip-code", "busy=480", "--seed", "7", "--max-body-bytes", "99", "--sip-t1-ms", "40",
        "--sip-xei-lenient", "--journal-limit", "12", "--failed-status", "503"])
    config = _config_from(args)
    assert config.tokens == ("a", "b") and config.default_outcome == "failed"
    assert config.store_path == "/tmp/x.sqlite3" and config.sip_codes == {"busy": 480}
    assert (config.seed, config.max_body_bytes, config.sip_t1_ms, config.journal_limit) == (7, 99, 40, 12)
    assert config.sip_xei_lenient and config.failed_status == 503
    assert config.sip_host == "127.0.0.1"  # defaults to --host


def test_defaults_of_serve_equal_the_dataclass_defaults():
    config = _config_from(build_parser().parse_args(["serve"]))
    assert config == MockConfig()


def test_unknown_keys_are_ignored_and_known_ones_kept():
    assert config_from_values({"seed": 3, "not_a_field": 1}).seed == 3


def test_json_round_trip_and_the_environment(monkeypatch):
    config = MockConfig(tokens=("t",), seed=5, sip_codes={"busy": 480})
    assert from_json(to_json(config)) == config
    monkeypatch.setenv(CONFIG_ENV, to_json(config))
    assert config_from_env() == config
    monkeypatch.delenv(CONFIG_ENV)
    assert config_from_env() == MockConfig()


@pytest.mark.parametrize("bad", ["busy=99", "nonsense=480", "busy"])
def test_a_bad_sip_code_names_the_flag(bad):
    with pytest.raises(SystemExit, match="--sip-code"):
        _config_from(build_parser().parse_args(["serve", "--sip-code", bad]))


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        MockConfig().seed = 1  # type: ignore[misc]
