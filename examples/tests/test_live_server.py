"""Door 3: the live server: real HTTP and a real SIP endpoint on free loopback ports."""

from mock_server import xei
from mock_server.sip.client import SipCaller


def test_prepare_then_dial_the_trunk(synthflow_server):
    call = synthflow_server.prepare({"from_number": "+15075785607", "to_number": "+15551234567",
                                     "model_id": "my-agent"})
    uri = synthflow_server.sip_uri("+15551234567", call["synthflow_call_id"])
    result = SipCaller(synthflow_server.sip_host, synthflow_server.sip_port).call(
        uri.split("?")[0], xei.uri_headers(uri), hold_s=0.1)
    assert result.answered
    invite = synthflow_server.assert_invite(call["synthflow_call_id"])
    assert invite["decision"] == "accepted"
