"""SIP transactions the UAS keeps (RFC 3261 §17, with RFC 6026's Accepted state), sans I/O.

Each is a :class:`~mock_server.sip.machine.Machine` whose table is below, so the
whole life of a transaction reads in one place. The endpoint feeds events and
owns sending; timers live on :class:`~mock_server.sip.timers.Timers`.

INVITE server transaction::

    PROCEEDING --1xx--> PROCEEDING --2xx--> ACCEPTED --Timer L--> TERMINATED
    PROCEEDING --3xx-6xx--> COMPLETED --ACK--> CONFIRMED --Timer I--> TERMINATED
                            COMPLETED --Timer H--> TERMINATED

Non-INVITE server transactions are kept only as their answer, for retransmitted
requests (Timer J): :class:`AnswerCache`. The one client transaction is the
mock's own BYE: TRYING --final response or Timer F--> TERMINATED.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, auto
from typing import TYPE_CHECKING, Any

from mock_server.sip.machine import Machine
from mock_server.sip.message import SipMessage
from mock_server.sip.peer import Peer

if TYPE_CHECKING:
    from mock_server.sip.dialogs import Dialog

TxKey = tuple[str, ...]


class InviteState(IntEnum):
    PROCEEDING = auto()
    COMPLETED = auto()
    CONFIRMED = auto()
    ACCEPTED = auto()
    TERMINATED = auto()


class InviteEvent(IntEnum):
    PROVISIONAL = auto()
    """A 1xx was sent."""
    FINAL_2XX = auto()
    FINAL_NON_2XX = auto()
    ACK = auto()
    """An ACK for a non-2xx final answer arrived."""
    END = auto()
    """Timer H, I or L fired, or the endpoint is closing."""


_P, _C, _F, _A, _T = (InviteState.PROCEEDING, InviteState.COMPLETED, InviteState.CONFIRMED, InviteState.ACCEPTED,
                      InviteState.TERMINATED)
INVITE_TABLE: dict[tuple[InviteState, InviteEvent], InviteState] = {
    (_P, InviteEvent.PROVISIONAL): _P,
    (_P, InviteEvent.FINAL_2XX): _A,
    (_P, InviteEvent.FINAL_NON_2XX): _C,
    (_C, InviteEvent.ACK): _F,
    (_F, InviteEvent.ACK): _F,  # a retransmitted ACK is absorbed
    **{(state, InviteEvent.END): _T for state in InviteState},
}


@dataclass(eq=False)
class InviteTx(Machine[InviteState, InviteEvent]):
    TABLE = INVITE_TABLE

    key: TxKey
    request: SipMessage
    peer: Peer
    reply_to: tuple[str, int]
    to_tag: str
    call_id: str | None
    """The Synthflow call id this INVITE names, when it names one."""
    last_response: bytes | None = None
    dialog: Dialog | None = None
    held: bool = False
    """The answer waits for the inbound webhook and pre-call actions."""
    answer_body: bytes | None = None
    """The SDP answer, kept while ``held``."""
    state: InviteState = field(default=InviteState.PROCEEDING, kw_only=True)


class ClientState(IntEnum):
    TRYING = auto()
    TERMINATED = auto()


class ClientEvent(IntEnum):
    FINAL_RESPONSE = auto()
    TIMEOUT = auto()
    """Timer F."""


CLIENT_TABLE: dict[tuple[ClientState, ClientEvent], ClientState] = {
    (ClientState.TRYING, ClientEvent.FINAL_RESPONSE): ClientState.TERMINATED,
    (ClientState.TRYING, ClientEvent.TIMEOUT): ClientState.TERMINATED,
}


@dataclass(eq=False)
class ClientTx(Machine[ClientState, ClientEvent]):
    """A request the mock sends itself (BYE), retransmitted over UDP until a final answer (Timer E)."""

    TABLE = CLIENT_TABLE

    branch: str
    data: bytes
    peer: Peer
    to: tuple[str, int]
    call_id: str | None
    on_final: Any = None
    """Called with the final response (the REFER's 202, say); None: nothing to do."""
    state: ClientState = field(default=ClientState.TRYING, kw_only=True)


class AnswerCache:
    """Completed non-INVITE server transactions: the answer sent, kept for retransmitted requests."""

    def __init__(self) -> None:
        self._answers: dict[TxKey, bytes] = {}

    def get(self, key: TxKey) -> bytes | None:
        return self._answers.get(key)

    def put(self, key: TxKey, answer: bytes) -> None:
        self._answers[key] = answer

    def forget(self, key: TxKey) -> None:
        self._answers.pop(key, None)

    def __len__(self) -> int:
        return len(self._answers)
