"""Door 4: end to end. The fixture serves your app, plays Twilio against it, and dials the live trunk;
a failing step fails the test with the simulator's whole report."""

import pytest

from examples.fastapi_app import app as fastapi_app
from examples.flask_app import app as flask_app


@pytest.mark.parametrize("app", [flask_app, fastapi_app], ids=["flask", "fastapi"])
def test_a_whole_inbound_call(synthflow_server, monkeypatch, app):
    monkeypatch.setenv("SYNTHFLOW_BASE_URL", synthflow_server.url)  # your app calls the live mock
    monkeypatch.setenv("SYNTHFLOW_API_KEY", "test-key")
    report = synthflow_server.simulate_call(app, "+15075785607", "+15551234567", path="/voice")
    assert [check.name for check in report.checks][-1] == "SIP answer"
