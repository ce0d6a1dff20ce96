"""What both example apps share: settings, the prepare_inbound call and the TwiML.

Follows Synthflow's guide "Forward calls to the SIP trunk": create the call with
POST /v2/prepare_inbound, then answer Twilio with <Dial><Sip> to the trunk with
X-EI=S.<synthflow_call_id>; (escaped as %3B inside the SIP URI).

``EXAMPLE_MISTAKE`` plants one of the typical integration mistakes, so the
harness's tests can show each is caught: raw-semicolon, missing-prefix,
wrong-port, skip-prepare.
"""

from __future__ import annotations

import os

import requests
from twilio.twiml.voice_response import VoiceResponse


def settings() -> dict[str, str]:
    return {
        "base_url": os.environ.get("SYNTHFLOW_BASE_URL", "https://api.synthflow.ai"),
        "api_key": os.environ.get("SYNTHFLOW_API_KEY", ""),
        "model_id": os.environ.get("SYNTHFLOW_MODEL_ID", "1744274157255x646200691892837600"),
        "termination": os.environ.get("SYNTHFLOW_TERMINATION", "sip.synthflow.ai:32681"),
        "mistake": os.environ.get("EXAMPLE_MISTAKE", ""),
    }


def prepare_inbound(from_number: str, to_number: str, conf: dict[str, str]) -> str:
    resp = requests.post(
        f"{conf['base_url']}/v2/prepare_inbound",
        headers={"Authorization": f"Bearer {conf['api_key']}", "Content-Type": "application/json"},
        json={"from_number": from_number, "to_number": to_number, "model_id": conf["model_id"],
              "custom_variables": {"caller": from_number}},
        timeout=10,
    )
    resp.raise_for_status()
    call = resp.json()
    if call["call_status"] != "registered":
        raise RuntimeError(f"Synthflow is not taking calls: {call.get('error_message')}")
    return call["synthflow_call_id"]


def answer(from_number: str, to_number: str) -> str:
    """The TwiML for Twilio's voice webhook."""
    conf = settings()
    mistake = conf["mistake"]
    call_id = "a29407fb-1bf2-4be6-9d1d-f501c3dd9a2b" if mistake == "skip-prepare" else prepare_inbound(
        from_number, to_number, conf)
    termination = conf["termination"]
    if mistake == "wrong-port":
        termination = termination.rsplit(":", 1)[0] + ":5060"
    token = call_id if mistake == "missing-prefix" else f"S.{call_id}"
    terminator = ";" if mistake == "raw-semicolon" else "%3B"
    response = VoiceResponse()
    response.dial().sip(f"sip:{to_number}@{termination}?X-EI={token}{terminator}")
    return str(response)
