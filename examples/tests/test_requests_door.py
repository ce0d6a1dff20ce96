"""Door 1: requests, in process. No server: the mock answers api.synthflow.ai inside the test."""

import pytest

from examples.integration import answer


def test_webhook_prepares_the_call_and_dials_it(synthflow_mock, monkeypatch):
    monkeypatch.setenv("SYNTHFLOW_API_KEY", "test-key")
    twiml = answer("+15075785607", "+15551234567")  # your code, calling Synthflow with requests
    call_id = synthflow_mock.assert_twiml(twiml)  # the <Sip> lint, and an X-EI id this mock prepared
    call = synthflow_mock.assert_prepared(from_number="+15075785607", to_number="+15551234567")
    assert call["synthflow_call_id"] == call_id
    assert call["call_status"] == "registered"


def test_an_outage_answer_is_handled(synthflow_mock, monkeypatch):
    monkeypatch.setenv("SYNTHFLOW_API_KEY", "test-key")
    synthflow_mock.queue_outcome("failed")  # the next prepare answers call_status "failed"
    with pytest.raises(RuntimeError, match="not taking calls"):
        answer("+15075785607", "+15551234567")
