"""Variables an INVITE carries for the agent: its ``X-*`` headers, the diversion, Twilio's CallSid.

Synthflow makes every ``X-*`` header a variable named with its ``X-`` prefix
(``{X-Customer-Name}``), and merges ``Diversion`` (or ``X-Diversion``, where carriers
strip ``Diversion``) into the ``O.`` value of X-EI.
"""

from __future__ import annotations

import re

from mock_server.sip.message import SipMessage, display_name

_NUMBER = re.compile(r"(?:sips?|tel):([^@;>]+)", re.IGNORECASE)


def x_headers(msg: SipMessage) -> dict[str, str]:
    """Every X-* header by its conventional spelling (``X-Customer-Name``); repeated ones are comma-joined."""
    found: dict[str, str] = {}
    for name, value in msg.headers:
        if name.startswith("x-") and len(name) > 2:
            key = display_name(name)
            found[key] = f"{found[key]},{value}" if key in found else value
    return found


def diversion(msg: SipMessage, o_token: str | None) -> str | None:
    """The ``O.`` token when X-EI has one, else the number in ``Diversion`` or ``X-Diversion``."""
    if o_token:
        return o_token
    header = msg.get("diversion") or msg.get("x-diversion")
    if not header:
        return None
    found = _NUMBER.search(header)
    return found.group(1) if found else header.strip()
