"""A plain install works on its own, and the HTTP API can be served over HTTPS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

from mock_server.testing import free_port
from tests.data import AUTH, VALID_BODY

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.live
def test_a_plain_install_gives_a_working_cli_and_pytest_plugin(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # no extras: only what a user of the package gets, plus pytest for their own suite
    subprocess.run([*pip, str(ROOT), "pytest"], check=True, timeout=600, capture_output=True)
    cli = str(venv / "bin" / "synthflow-mock")
    version = subprocess.run([cli, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("synthflow-mock ")
    assert subprocess.run([cli, "call", "--help"], capture_output=True, timeout=60).returncode == 0
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_user.py").write_text(textwrap.dedent("""
        import requests

        def test_prepare(synthflow_mock):
            resp = requests.post("https://api.synthflow.ai/v2/prepare_inbound", timeout=5,
                                 json={"from_number": "+15075785607", "to_number": "+15551234567", "model_id": "m"},
                                 headers={"Authorization": "Bearer t"})
            assert resp.json()["call_status"] == "registered"
            synthflow_mock.assert_prepared(from_number="+15075785607")

        def test_unrelated():
            assert 1 + 1 == 2
    """))
    run = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                         cwd=project, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout


@pytest.mark.live
def test_https_with_a_trustme_certificate(tmp_path):
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_pem, key_pem, ca_pem = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mock_server", "serve", "--no-sip", "--http-port", str(port),
                             "--tls-cert", str(cert_pem), "--tls-key", str(key_pem)], stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        banner = proc.stderr.readline()
        assert f"https://127.0.0.1:{port}" in banner, banner
        resp = requests.post(f"https://127.0.0.1:{port}/v2/prepare_inbound", json=VALID_BODY, headers=AUTH,
                             verify=str(ca_pem), timeout=5)
        assert resp.status_code == 200 and resp.json()["call_status"] == "registered"
        with pytest.raises(requests.exceptions.SSLError):  # a client that does not trust the CA refuses
            requests.get(f"https://127.0.0.1:{port}/_mock/health", timeout=5)
        with pytest.raises(requests.exceptions.ConnectionError):  # plain HTTP gets no answer
            requests.get(f"http://127.0.0.1:{port}/_mock/health", timeout=5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        time.sleep(0)
