"""The dialog an accepted INVITE creates (RFC 3261 §12), sans I/O.

::

    EARLY --ACK of the 200--> CONFIRMED
    EARLY, CONFIRMED --BYE either way, CANCEL, a non-2xx final, or no ACK--> TERMINATED
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, auto
from typing import Any

from mock_server.sip.machine import Machine
from mock_server.sip.transactions import InviteTx

DialogKey = tuple[str, str, str]
"""(SIP Call-ID, our tag, their tag)."""


class DialogState(IntEnum):
    EARLY = auto()
    CONFIRMED = auto()
    TERMINATED = auto()


class DialogEvent(IntEnum):
    ACK = auto()
    END = auto()


DIALOG_TABLE: dict[tuple[DialogState, DialogEvent], DialogState] = {
    (DialogState.EARLY, DialogEvent.ACK): DialogState.CONFIRMED,
    (DialogState.EARLY, DialogEvent.END): DialogState.TERMINATED,
    (DialogState.CONFIRMED, DialogEvent.END): DialogState.TERMINATED,
    (DialogState.TERMINATED, DialogEvent.END): DialogState.TERMINATED,
}


@dataclass(eq=False)
class Dialog(Machine[DialogState, DialogEvent]):
    TABLE = DIALOG_TABLE

    key: DialogKey
    tx: InviteTx
    call_id: str | None
    answered_at: float | None = None
    ok_response: bytes | None = None
    local_cseq: int = 0
    hangup_after: float | None = None
    media: Any = None
    """The call's :class:`~mock_server.media.session.MediaSession`, while it has one."""
    hangup_digit: str | None = None
    """The agent hangs up when the caller presses this DTMF digit."""
    rtp_timeout: float | None = None
    transfer_after: float | None = None
    transfer: dict[str, Any] | None = None
    """The REFER in progress: its target and state, for the NOTIFYs that report on it."""
    state: DialogState = field(default=DialogState.EARLY, kw_only=True)
