"""The call seen three ways (issue #17): the web ladder in a real headless Chromium, the terminal ladder,
and ``/_mock/calls/<id>/sip``; they must agree, retransmissions and CANCEL included."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from examples.flask_app import app as flask_app
from mock_server.testing import free_port, start_server
from mock_server.twilio_sim import simulate_call
from tests.sip_client import SDP, UdpClient, request

pytestmark = pytest.mark.live
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def mock():
    server = start_server("--sip-t1-ms", "100", "--sip-ring-ms", "0", "--quiet")
    yield server
    server.close()


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromium-driver are needed (Debian packages; .ci/install installs them)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1600,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(fn, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def page_steps(browser, mock, call_id):
    """Open the page, click the call, and read the arrows: (label, source, target) in order."""
    from selenium.webdriver.common.by import By

    browser.get(f"{mock.url}/_mock/ui")
    row = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f'tr.call[data-call-id="{call_id}"]'))
    assert row, browser.page_source[:2000]
    row[0].click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#ladder-svg g.step"))
    time.sleep(1.2)  # one more poll, so the ladder holds every message
    return [tuple(step) for step in browser.execute_script(
        "return [...document.querySelectorAll('#ladder-svg g.step')]"
        ".map(g => [g.dataset.label, g.dataset.source, g.dataset.target])")]


def test_a_simulated_call_in_the_browser(mock, browser, monkeypatch):
    from selenium.webdriver.common.by import By

    monkeypatch.setenv("SYNTHFLOW_BASE_URL", mock.url)
    monkeypatch.setenv("SYNTHFLOW_API_KEY", "ui-key")
    monkeypatch.delenv("EXAMPLE_MISTAKE", raising=False)
    server = make_server("127.0.0.1", free_port(), flask_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        report = simulate_call(f"http://127.0.0.1:{server.server_port}/voice", "+15075785607", "+15551234567",
                               mock_url=mock.url, sip_target=("127.0.0.1", mock.sip_port), webhook_wait_s=0)
    finally:
        server.shutdown()
    assert report.ok, report.render()
    call_id = report.twiml.split("S.", 1)[1].split("%3B", 1)[0]
    steps = page_steps(browser, mock, call_id)
    sip = [label for label, source, target in steps if {source, target} == {"caller", "trunk"}]
    assert any(label.startswith("RTP PCMU: in 0") and source == "media" for label, source, _ in steps), steps
    assert sip == ["INVITE", "100 Trying", "180 Ringing", "200 OK", "ACK", "BYE", "200 OK"], steps
    assert steps[0] == ("POST /v2/prepare_inbound", "app", "api")
    assert ("INVITE", "caller", "trunk") in steps and ("200 OK", "trunk", "caller") in steps
    lanes = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#ladder-svg text.lane-title")]
    assert lanes == ["Your app", "Synthflow API (mock)", "Synthflow SIP (mock)", "SIP caller", "Media",
                     "Webhook receiver"]
    # the raw message on click
    browser.find_elements(By.CSS_SELECTOR, '#ladder-svg g.step[data-label="INVITE"] text.label')[0].click()
    raw = wait_for(lambda: browser.find_element(By.ID, "raw").text)
    assert raw.startswith("INVITE") and f"X-EI: S.{call_id};" in raw
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "web-ladder.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_web_page_terminal_and_sip_json_agree_for_retransmissions_and_cancel(mock, browser):
    from mock_server.ladder import text

    # a call that rings for ever (its plan), so the CANCEL finds it unanswered
    requests.post(f"{mock.url}/_mock/scenarios", timeout=5, json={"sip": "ring_forever"}).raise_for_status()
    call_id = requests.post(f"{mock.url}/v2/prepare_inbound", headers={"Authorization": "Bearer k"}, timeout=5,
                            json={"from_number": "+15075785607", "to_number": "+15551234567", "model_id": "m"}
                            ).json()["synthflow_call_id"]
    client = UdpClient(mock.sip_port)
    invite = request("INVITE", mock.sip_port, client.local_port, xei=f"S.{call_id};", call_id="ladder-cancel",
                     branch="z9hG4bKladder1", body=SDP)
    client.send(invite)
    client.recv_until(180)
    client.send(invite)  # a retransmission: answered from the transaction, not decided again
    client.recv_until(180)
    client.send(request("CANCEL", mock.sip_port, client.local_port, call_id="ladder-cancel", branch="z9hG4bKladder1",
                        cseq_method="CANCEL"))
    answers = client.recv_until(487)
    client.ack_for(invite, answers[-1])
    client.close()
    time.sleep(0.5)

    sip_json = requests.get(f"{mock.url}/_mock/calls/{call_id}/sip", timeout=5).json()["messages"]
    expected = [m["first_line"][8:] if m["first_line"].startswith("SIP/2.0 ") else m["first_line"].split(" ")[0]
                for m in sip_json]
    assert expected[:3] == ["INVITE", "100 Trying", "180 Ringing"] and "CANCEL" in expected and "ACK" in expected
    assert [m["decision"] for m in sip_json].count("retransmission") >= 1

    ladder = requests.get(f"{mock.url}/_mock/calls/{call_id}/ladder", timeout=5).json()
    model = [s["label"] for s in ladder["steps"] if s["kind"] == "sip"]
    assert model == expected

    terminal = subprocess.run([sys.executable, "-m", "mock_server", "ladder", call_id, "--mock-url", mock.url],
                              capture_output=True, text=True, timeout=30)
    assert terminal.returncode == 0, terminal.stderr
    assert terminal.stdout.rstrip("\n") == text.render(ladder)
    arrows = [line for line in terminal.stdout.splitlines() if line.startswith("+")]
    assert len(arrows) == len(ladder["steps"])  # one arrow per step, in order
    sip_arrows = [(a, st) for a, st in zip(arrows, ladder["steps"], strict=True) if st["kind"] == "sip"]
    for label, (arrow, step) in zip(expected, sip_arrows, strict=True):
        assert label in arrow
        assert (">|" if step["source"] == "trunk" else "|<") in arrow  # trunk left of caller: out is rightwards

    page = [label for label, source, target in page_steps(browser, mock, call_id) if {source, target} ==
            {"caller", "trunk"}]
    assert page == expected


def test_terminal_ladder_for_an_unknown_call_says_so(mock):
    result = subprocess.run([sys.executable, "-m", "mock_server", "ladder", "nope", "--mock-url", mock.url],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "knows no call nope" in result.stderr


def test_tail_follows_the_journal(mock):
    proc = subprocess.Popen([sys.executable, "-m", "mock_server", "tail", "--mock-url", mock.url, "--interval", "0.1"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        time.sleep(1.0)  # it starts from now
        requests.post(f"{mock.url}/v2/prepare_inbound", headers={"Authorization": "Bearer k"}, timeout=5,
                      json={"from_number": "+15075785607", "to_number": "+15551234567", "model_id": "tail"})
        line = proc.stdout.readline()
        assert " http POST /v2/prepare_inbound -> 200 outcome=registered" in line and "call=" in line, line
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_page_needs_no_token_but_its_data_does():
    server = start_server("--admin-token", "ui-secret", "--no-sip", "--quiet")
    try:
        page = requests.get(f"{server.url}/_mock/ui", timeout=5)
        assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        assert "http://" not in page.text.replace("http://www.w3.org/2000/svg", "")  # nothing from elsewhere
        assert requests.get(f"{server.url}/_mock/calls", timeout=5).status_code == 401
        assert requests.get(f"{server.url}/_mock/calls", timeout=5,
                            headers={"X-Mock-Admin-Token": "ui-secret"}).status_code == 200
        assert requests.get(f"{server.url}/_mock/ui", timeout=5, headers={"Host": "evil.example"}).status_code == 403
    finally:
        server.close()
