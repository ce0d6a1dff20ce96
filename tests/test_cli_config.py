"""The command line as a user meets it: --version, help that shows defaults, and settings from flags, the
environment and a TOML file, with flag > environment > file > default."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mock_server import __version__
from mock_server.cli import _config_from, main, standalone_serve_parser
from mock_server.cli_settings import SettingsError, resolve


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "mock_server", *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **(env or {})})


def test_version():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"synthflow-mock {__version__}"


def test_help_shows_every_default_and_no_markup():
    text = " ".join(run("serve", "--help").stdout.split())
    assert "(default: 8080)" in text and "(default: 32681)" in text and "(default: 10.0)" in text
    assert "``" not in run("--help").stdout and "``" not in text
    options = [a for a in standalone_serve_parser()._actions if a.option_strings]
    assert all(a.help for a in options), [a.option_strings for a in options if not a.help]


@pytest.fixture
def toml(tmp_path):
    path = tmp_path / "mock.toml"
    path.write_text('http-port = 9100\nsip_port = 40000\nseed = 7\nsip-xei-lenient = true\n'
                    'token = ["from-file"]\nlatency = "fixed:5"\n')
    return str(path)


def test_precedence_flag_over_environment_over_file_over_default(toml):
    env = {"SYNTHFLOW_MOCK_HTTP_PORT": "9200", "SYNTHFLOW_MOCK_SEED": "8", "SYNTHFLOW_MOCK_TOKEN": "a,b"}
    args, sources = resolve(standalone_serve_parser(), ["--config", toml, "--seed", "9"], env)
    assert (args.seed, sources["seed"]) == (9, "flag")                                   # flag wins
    assert (args.http_port, sources["http_port"]) == (9200, "env SYNTHFLOW_MOCK_HTTP_PORT")  # env over file
    assert (args.tokens, sources["tokens"]) == (["a", "b"], "env SYNTHFLOW_MOCK_TOKEN")
    assert (args.sip_port, sources["sip_port"]) == (40000, f"file {toml}")               # file over default
    assert args.sip_xei_lenient is True and sources["sip_xei_lenient"] == f"file {toml}"
    assert (args.workers, sources["workers"]) == (2, "default")
    config = _config_from(args)
    assert config.seed == 9 and config.tokens == ("a", "b") and config.sip_xei_lenient
    assert config.policy is not None and config.policy["http"]["latency"] == {"dist": "fixed", "ms": 5.0}


def test_the_config_file_can_come_from_the_environment(toml):
    args, sources = resolve(standalone_serve_parser(), [], {"SYNTHFLOW_MOCK_CONFIG": toml})
    assert args.http_port == 9100 and sources["http_port"] == f"file {toml}"


def test_a_repeated_flag_replaces_the_lower_layers_list(toml):
    args, _ = resolve(standalone_serve_parser(), ["--config", toml, "--token", "cli"], {})
    assert args.tokens == ["cli"]


@pytest.mark.parametrize("env, message", [
    ({"SYNTHFLOW_MOCK_HTTP_PORT": "abc"}, "SYNTHFLOW_MOCK_HTTP_PORT='abc': expected an integer"),
    ({"SYNTHFLOW_MOCK_NO_SIP": "maybe"}, "SYNTHFLOW_MOCK_NO_SIP='maybe': expected true or false"),
    ({"SYNTHFLOW_MOCK_OUTCOME": "broken"}, "SYNTHFLOW_MOCK_OUTCOME='broken': expected one of registered, failed"),
])
def test_a_bad_environment_value_is_one_line_naming_it(env, message):
    with pytest.raises(SettingsError, match=message):
        resolve(standalone_serve_parser(), [], env)
    out = run("serve", env=env)
    assert out.returncode == 2 and out.stderr.strip() == f"synthflow-mock: {message}"


@pytest.mark.parametrize("content, message", [
    ("htp-port = 1\n", "unknown key 'htp-port'"),
    ("http-port = 'x'\n", "http-port='x': expected an integer"),
    ("http-port = \n", "not valid TOML"),
    ("token = 5\n", "token=5: expected a list of strings"),
])
def test_a_bad_config_file_is_one_line_naming_the_key(tmp_path, content, message):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    out = run("serve", "--config", str(path))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and message in out.stderr


def test_config_show_prints_each_value_and_its_source(capsys, toml, monkeypatch):
    monkeypatch.setenv("SYNTHFLOW_MOCK_WORKERS", "2")
    monkeypatch.setenv("SYNTHFLOW_MOCK_ADMIN_TOKEN", "never-printed")
    assert main(["config", "show", "--config", toml, "--sip-t1-ms", "40"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["sip-t1-ms"].endswith("flag") and " 40 " in lines["sip-t1-ms"]
    assert lines["workers"].endswith("env SYNTHFLOW_MOCK_WORKERS")
    assert lines["http-port"].endswith(f"file {toml}")
    assert lines["http-idle-timeout-s"].endswith("default")
    assert "never-printed" not in "\n".join(lines.values())


@pytest.mark.live
def test_the_config_file_queues_scenarios_at_start(tmp_path):
    import requests

    from mock_server.testing import start_server
    from tests.data import AUTH, VALID_BODY

    path = tmp_path / "mock.toml"
    path.write_text('seed = 3\n\n[[scenarios]]\noutcome = "rate_limited"\ntimes = 2\n'
                    '[scenarios.match]\nmodel_id = "scenario-model"\n')
    server = start_server("--no-sip", "--config", str(path))
    try:
        body = dict(VALID_BODY, model_id="scenario-model")
        codes = [requests.post(f"{server.url}/v2/prepare_inbound", json=body, headers=AUTH, timeout=5).status_code
                 for _ in range(3)]
        assert codes == [429, 429, 200]
    finally:
        server.kill_group()


def test_a_bad_scenario_in_the_config_file_is_one_line(tmp_path):
    path = tmp_path / "mock.toml"
    path.write_text('[[scenarios]]\noutcome = "nope"\n')
    out = run("serve", "--config", str(path))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "scenarios[1]" in out.stderr and "nope" in out.stderr
