"""Synthflow talking back: the signed webhooks and the pre-call steps of a call.

- ``signature.py``: the documented signature (HMAC-SHA256 of the call id, base64);
- ``context.py``: what the SIP side knows about a call that its webhooks need;
- ``payloads.py``: the post-call and ``call_inbound`` bodies (``contracts/*-webhook.schema.json``);
- ``templates.py``: variables in pre-call action bodies;
- ``delivery.py``: sending, retrying and journaling, on a thread of its own so no
  HTTP or SIP answer ever waits for an integrator's server.
"""
