"""SIP over TLS on its own port (Synthflow lists TLS on 32682), with a throwaway CA from trustme."""

from __future__ import annotations

import json
import socket
import ssl

import pytest
import trustme

from mock_server import MockConfig
from mock_server.core.backend import Backend
from mock_server.core.exchange import Request
from mock_server.sip.runner import SipThread
from mock_server.testing import free_port
from tests.data import VALID_BODY
from tests.sip_client import SDP, request
from tests.test_sip_endpoint import read_messages


@pytest.fixture
def tls_trunk(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    config = MockConfig(sip_port=0, sip_tls_port=free_port(), sip_tls_cert=str(cert_path),
                        sip_tls_key=str(key_path), sip_t1_ms=50)
    backend = Backend(config)
    sip = SipThread(backend.store, config, port=0).start()
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    yield backend, sip, config.sip_tls_port, client_ctx
    sip.stop()


def test_invite_over_tls_completes(tls_trunk):
    backend, sip, tls_port, ctx = tls_trunk
    headers = {"authorization": "Bearer t", "content-type": "application/json"}
    call_id = json.loads(backend.handle(Request("POST", "/v2/prepare_inbound", headers,
                                                json.dumps(VALID_BODY).encode())).body)["synthflow_call_id"]
    raw = socket.create_connection(("127.0.0.1", tls_port), timeout=3)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        local_port = sock.getsockname()[1]
        sock.sendall(request("INVITE", tls_port, local_port, xei=f"S.{call_id};", transport="TLS", body=SDP))
        replies = read_messages(sock, 3)
        assert [m.status for m in replies] == [100, 180, 200]
        assert ";transport=tls" in replies[-1].get("contact")
    sip.flush()
    entries = backend.store.journal(kinds=("sip",))
    assert {e["transport"] for e in entries} == {"TLS"}


def test_plain_tcp_to_the_tls_port_is_refused(tls_trunk):
    _, _, tls_port, _ = tls_trunk
    sock = socket.create_connection(("127.0.0.1", tls_port), timeout=3)
    sock.sendall(request("OPTIONS", tls_port, sock.getsockname()[1], transport="TCP"))
    sock.settimeout(3)
    try:
        data = sock.recv(100)
    except ConnectionResetError:
        data = b""
    assert not data.startswith(b"SIP/2.0")
    sock.close()
