"""The transaction and dialog tables: every legal step, and a loud error for an illegal one."""

from __future__ import annotations

import pytest

from mock_server.sip.dialogs import Dialog, DialogEvent, DialogState
from mock_server.sip.machine import InvalidTransition
from mock_server.sip.message import parse_datagram
from mock_server.sip.peer import Peer
from mock_server.sip.timers import ManualClock, Timers
from mock_server.sip.transactions import (
    ClientEvent,
    ClientState,
    ClientTx,
    InviteEvent,
    InviteState,
    InviteTx,
)

INVITE = (b"INVITE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
          b"From: <sip:b@x>;tag=1\r\nTo: <sip:a@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n")
PEER = Peer("UDP", ("127.0.0.1", 5070), ("127.0.0.1", 5060), lambda data, to: True)


def invite_tx() -> InviteTx:
    return InviteTx(("z9hG4bK1", "127.0.0.1:5070", "INVITE"), parse_datagram(INVITE), PEER, PEER.remote, "tt", None)


def test_invite_rejected_then_acked_then_ended():
    tx = invite_tx()
    assert tx.state is InviteState.PROCEEDING
    assert tx.advance(InviteEvent.PROVISIONAL) is InviteState.PROCEEDING
    assert tx.advance(InviteEvent.FINAL_NON_2XX) is InviteState.COMPLETED
    assert tx.advance(InviteEvent.ACK) is InviteState.CONFIRMED
    assert tx.advance(InviteEvent.ACK) is InviteState.CONFIRMED  # a retransmitted ACK is absorbed
    assert tx.advance(InviteEvent.END) is InviteState.TERMINATED


def test_invite_answered_goes_to_accepted_and_takes_no_ack_of_its_own():
    tx = invite_tx()
    tx.advance(InviteEvent.FINAL_2XX)
    assert tx.state is InviteState.ACCEPTED
    assert not tx.can(InviteEvent.ACK)  # the ACK of a 2xx belongs to the dialog (RFC 6026)
    with pytest.raises(InvalidTransition, match="FINAL_NON_2XX in state ACCEPTED"):
        tx.advance(InviteEvent.FINAL_NON_2XX)


@pytest.mark.parametrize("state", list(InviteState))
def test_every_invite_state_can_end(state):
    tx = invite_tx()
    tx.state = state
    assert tx.advance(InviteEvent.END) is InviteState.TERMINATED


def test_dialog_confirms_once_and_ends_from_any_state():
    dialog = Dialog(("c", "tt", "1"), invite_tx(), None)
    assert dialog.state is DialogState.EARLY
    dialog.advance(DialogEvent.ACK)
    assert dialog.state is DialogState.CONFIRMED
    with pytest.raises(InvalidTransition):
        dialog.advance(DialogEvent.ACK)
    dialog.advance(DialogEvent.END)
    assert dialog.advance(DialogEvent.END) is DialogState.TERMINATED


def test_client_tx_ends_on_a_final_answer_or_timer_f_but_not_both():
    tx = ClientTx("z9hG4bK2", b"BYE", PEER, PEER.remote, None)
    tx.advance(ClientEvent.FINAL_RESPONSE)
    assert tx.state is ClientState.TERMINATED
    assert not tx.can(ClientEvent.TIMEOUT)


def test_cancel_timers_stops_what_a_machine_set():
    clock = ManualClock()
    timers = Timers(clock)
    tx = invite_tx()
    ran: list[str] = []
    tx.timers.append(timers.call_later(1.0, ran.append, "G"))
    tx.timers.append(timers.lane(32.0).call_later(ran.append, "H"))
    tx.cancel_timers()
    clock.advance(60)
    timers.run_due()
    assert ran == [] and tx.timers == []
