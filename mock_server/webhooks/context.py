"""What the SIP side learns about a call that its webhooks and pre-call steps need."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CallContext:
    call_id: str
    model_id: str | None = None
    workspace_id: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    external_id: str | None = None
    """X-EI ``E.``."""
    diversion: str | None = None
    """X-EI ``O.``, else the ``Diversion`` (or ``X-Diversion``) header's number."""
    twilio_call_sid: str | None = None
    x_headers: dict[str, str] = field(default_factory=dict)
    """Every ``X-*`` header of the INVITE, by the name it was sent with."""
    webhook_url: str | None = None
    """The prepare's own ``external_webhook_url``, which wins over the agent's."""

    def variables(self) -> dict[str, str]:
        """The placeholders of an action body (Synthflow's names) and the X-* variables."""
        values = {"<call_id>": self.call_id, "<external_id>": self.external_id or "",
                  "<diversion>": self.diversion or "", "<twilio_call_sid>": self.twilio_call_sid or ""}
        values.update({f"{{{name}}}": value for name, value in self.x_headers.items()})
        return values
