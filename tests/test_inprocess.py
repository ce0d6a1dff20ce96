"""The in-process door: requests to Synthflow's hosts answered by the same core, no server."""

from __future__ import annotations

import pytest
import requests

from mock_server import MockConfig, synthflow_mock
from tests.contract import assert_matches
from tests.data import AUTH, VALID_BODY

API = "https://api.synthflow.ai/v2"


def test_context_manager_answers_from_the_core():
    with synthflow_mock() as mock:
        resp = requests.post(f"{API}/prepare_inbound", json=VALID_BODY, headers=AUTH, timeout=5)
        assert resp.status_code == 200
        assert_matches("prepare-inbound-registered.schema.json", resp.json())
        assert mock.calls()[0]["synthflow_call_id"] == resp.json()["synthflow_call_id"]
        assert mock.journal()[0]["path"] == "/v2/prepare_inbound"
    with pytest.raises(requests.ConnectionError):  # the mock is gone: nothing answers for real
        requests.post(f"{API}/prepare_inbound", json=VALID_BODY, headers=AUTH, timeout=0.5)


@pytest.mark.parametrize("host", ["api.synthflow.ai", "api.us.synthflow.ai", "api.eu.synthflow.ai"])
def test_regional_hosts(host):
    with synthflow_mock():
        resp = requests.post(f"https://{host}/v2/prepare_inbound", json=VALID_BODY, headers=AUTH, timeout=5)
        assert resp.status_code == 200


@synthflow_mock(MockConfig(tokens=("secret",)))
def test_decorator_with_config_and_injected_mock(synthflow):
    bad = requests.post(f"{API}/prepare_inbound", json=VALID_BODY, headers=AUTH, timeout=5)
    assert bad.status_code == 401
    assert_matches("error.schema.json", bad.json())
    good = requests.post(f"{API}/prepare_inbound", json=VALID_BODY, headers={"Authorization": "Bearer secret"},
                         timeout=5)
    call = requests.get(f"{API}/calls/{good.json()['synthflow_call_id']}", headers={"Authorization": "Bearer secret"},
                        timeout=5)
    assert_matches("call-lookup.schema.json", call.json())
    assert len(synthflow.calls()) == 1


def test_validation_and_errors_are_the_servers():
    with synthflow_mock():
        resp = requests.post(f"{API}/prepare_inbound", json={"from_number": "5"}, headers=AUTH, timeout=5)
        assert resp.status_code == 422
        assert {e["pointer"] for e in resp.json()["detail"]["errors"]} >= {"/from_number", "/to_number"}
        assert requests.get(f"{API}/nothing", timeout=5).status_code == 404


def test_dropping_outcomes_raise_like_a_socket():
    with synthflow_mock():
        with pytest.raises(requests.ConnectionError):
            requests.post(f"{API}/prepare_inbound", json=VALID_BODY,
                          headers={**AUTH, "Prefer": "outcome=reset"}, timeout=5)
        with pytest.raises(requests.ReadTimeout):
            requests.post(f"{API}/prepare_inbound", json=VALID_BODY,
                          headers={**AUTH, "Prefer": "outcome=timeout, hold-s=5"}, timeout=0.1)


def test_synthflow_mock_fixture_from_the_plugin(synthflow_mock):
    requests.post(f"{API}/prepare_inbound", json=VALID_BODY, headers=AUTH, timeout=5)
    call = synthflow_mock.assert_prepared(from_number=VALID_BODY["from_number"], model_id=VALID_BODY["model_id"])
    assert call["call_status"] == "registered"
    with pytest.raises(AssertionError, match="no call was prepared with"):
        synthflow_mock.assert_prepared(from_number="+10000000000")
