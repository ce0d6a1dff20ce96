"""Inside an answered call: what the caller's media and in-dialog requests make the agent do.

DTMF (RFC 4733 from the media session, SIP INFO here) goes on the timeline and may be the agent's
cue to hang up; no caller RTP for too long ends the call; the transfer plan REFERs the caller and
follows the NOTIFYs (RFC 3515); when a call ends, its media is summed up on the timeline. The
:class:`~mock_server.sip.uas.SipEndpoint` owns the dialogs and the sending; this holds the agent's
side of the conversation.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from mock_server.metrics import DTMF_DIGITS
from mock_server.sip.common import format_addr
from mock_server.sip.dialogs import Dialog, DialogState
from mock_server.sip.message import SipMessage
from mock_server.sip.peer import Peer
from mock_server.sip.transactions import TxKey
from mock_server.sip.variables import x_headers
from mock_server.webhooks import templates

if TYPE_CHECKING:
    from mock_server.sip.uas import SipEndpoint


def dtmf_of_info(content_type: str, body: bytes) -> str | None:
    """The digit of a SIP INFO DTMF body, or None."""
    kind = content_type.split(";", 1)[0].strip().lower()
    text = body.decode("ascii", "replace").strip()
    if kind == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                text = value.strip()
                break
        else:
            return None
    elif kind != "application/dtmf":
        return None
    return text[:1] if text[:1] and text[:1] in "0123456789*#ABCDabcd" else None


class InCall:
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint

    def on_info(self, msg: SipMessage, data: bytes, peer: Peer, key: TxKey) -> None:
        """SIP INFO inside a call: DTMF by ``application/dtmf-relay`` (``Signal=5``) or ``application/dtmf``."""
        ep = self.endpoint
        dialog = ep.dialogs.get((msg.get("call-id") or "", msg.to_tag or "", msg.from_tag or ""))
        if dialog is None:
            ep.answer_non_invite(msg, data, peer, key, 481, "Call/Transaction Does Not Exist",
                                 decision="INFO matched no dialog")
            return
        digit = dtmf_of_info(msg.get("content-type") or "", msg.body)
        ep.answer_non_invite(msg, data, peer, key, 200, "OK", call_id=dialog.call_id,
                             decision=f"info: dtmf {digit}" if digit else "info")
        if digit:
            if dialog.media is not None:
                dialog.media.note_info_digit(digit)
            self.media_event(dialog, "dtmf", {"digit": digit, "via": "sip-info"})

    def close_media(self, dialog: Dialog) -> None:
        """End the call's RTP: its statistics go on the timeline, its recording into the call object."""
        ep = self.endpoint
        if dialog.media is None or ep.media is None:
            return
        summary, fields = ep.media.close(dialog.media, dialog.call_id)
        dialog.media = None
        ep.change(dialog.call_id, "media", detail=summary, **fields)

    def media_event(self, dialog: Dialog, kind: str, detail: dict[str, Any]) -> None:
        """Something the caller's media did: a DTMF digit (maybe the agent's cue to hang up)."""
        ep = self.endpoint
        ep.change(dialog.call_id, kind, detail=detail)
        if kind != "dtmf":
            return
        DTMF_DIGITS.labels(str(detail.get("via"))).inc()
        if dialog.hangup_digit and detail.get("digit") == dialog.hangup_digit:
            self.agent_hangs_up(dialog, f"hang-up digit {dialog.hangup_digit} pressed", "agent_ended_call")

    def agent_hangs_up(self, dialog: Dialog, why: str, end_call_reason: str) -> None:
        ep = self.endpoint
        if dialog.state is not DialogState.CONFIRMED:
            return
        duration = round(time.time() - dialog.answered_at) if dialog.answered_at else 0
        ep.change(dialog.call_id, "mock-bye", "completed", duration=duration, end_call_reason=end_call_reason,
                  detail={"why": why})
        ep.send_bye(dialog, reason=why)

    def check_rtp(self, dialog: Dialog) -> None:
        """Every second while confirmed: no caller RTP for ``rtp_timeout`` seconds ends the call."""
        ep = self.endpoint
        session = dialog.media
        if dialog.state is not DialogState.CONFIRMED or session is None or dialog.rtp_timeout is None:
            return
        last = session.last_received or session.started
        if time.monotonic() - last >= dialog.rtp_timeout:
            self.agent_hangs_up(dialog, f"no RTP from the caller for {dialog.rtp_timeout:g} s", "timeout")
            return
        dialog.timers.append(ep.timers.call_later(1.0, self.check_rtp, dialog))

    # -- transfer (REFER, RFC 3515) ----------------------------------------------------------------
    def send_refer(self, dialog: Dialog) -> None:
        """The agent transfers the caller: REFER with Refer-To and the configured X-headers."""
        ep = self.endpoint
        if dialog.state is not DialogState.CONFIRMED:
            return
        book = ep.books.get()
        model_id = ep.store.call_parties(dialog.call_id)["model_id"] if dialog.call_id else None
        agent = book.agent(model_id)
        target = (agent.transfer_to if agent and agent.transfer_to else None) or ep.config.transfer_to
        wanted = {**ep.config.transfer_headers, **(agent.transfer_headers if agent else {})}
        request = dialog.tx.request
        variables = {"<call_id>": dialog.call_id or "", **{f"{{{k}}}": v for k, v in x_headers(request).items()}}
        headers = [(name, templates.render(value, variables)) for name, value in wanted.items()]
        dialog.transfer = {"to": target, "state": "requested"}
        ep.change(dialog.call_id, "transfer-requested", detail={"to": target, "headers": dict(headers)})
        ours = f"<sip:synthflow@{format_addr(dialog.tx.peer.local)}>"
        refer = [("Contact", ours), ("Refer-To", f"<{target}>"), ("Referred-By", ours), *headers,
                 ("Content-Length", "0")]
        ep.in_dialog_request(dialog, "REFER", refer, on_final=functools.partial(self.refer_answered, dialog))

    def refer_answered(self, dialog: Dialog, msg: SipMessage) -> None:
        ep = self.endpoint
        code = msg.status or 0
        if 200 <= code < 300:
            if dialog.transfer is not None:
                dialog.transfer["state"] = "accepted"
            ep.change(dialog.call_id, "transfer-accepted", detail={"code": code})
            return
        ep.change(dialog.call_id, "transfer-refused", detail={"code": code, "reason": msg.reason})
        self.agent_hangs_up(dialog, f"transfer refused: {code} {msg.reason}", "error")

    def on_notify(self, msg: SipMessage, data: bytes, peer: Peer, key: TxKey) -> None:
        """The transferee reports on the REFER (``message/sipfrag``): a final 2xx completes the transfer."""
        ep = self.endpoint
        dialog = ep.dialogs.get((msg.get("call-id") or "", msg.to_tag or "", msg.from_tag or ""))
        if dialog is None or dialog.transfer is None:
            ep.answer_non_invite(msg, data, peer, key, 481, "Subscription Does Not Exist",
                                 decision="NOTIFY matched no transfer")
            return
        frag = msg.body.decode("utf-8", "replace").strip().split("\r\n", 1)[0].split("\n", 1)[0]
        parts = frag.split(" ", 2)
        code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        ep.answer_non_invite(msg, data, peer, key, 200, "OK", call_id=dialog.call_id,
                             decision=f"notify: transfer {frag or '(no sipfrag)'}")
        if code < 200:
            return
        if code < 300:
            dialog.transfer["state"] = "done"
            duration = round(time.time() - dialog.answered_at) if dialog.answered_at else 0
            ep.change(dialog.call_id, "transferred", "completed", duration=duration,
                      end_call_reason="agent_ended_call", detail={"to": dialog.transfer["to"], "notify": frag})
            ep.send_bye(dialog, reason=f"transferred to {dialog.transfer['to']}")
        else:
            ep.change(dialog.call_id, "transfer-failed", detail={"notify": frag})
            self.agent_hangs_up(dialog, f"transfer failed: {frag}", "error")
