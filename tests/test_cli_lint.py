"""The xei and lint-twiml commands, run as a user would (a real subprocess)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CALL_ID = "a29407fb-1bf2-4be6-9d1d-f501c3dd9a2b"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mock_server", *args], input=stdin, capture_output=True,
                          text=True, timeout=30)


def test_xei_check_valid_exits_zero():
    proc = run("xei", "check", f"S.{CALL_ID};E.crm456;")
    assert proc.returncode == 0, proc.stdout
    assert f"S. Synthflow call id: {CALL_ID}" in proc.stdout
    assert "0 error(s), 0 warning(s)" in proc.stdout


def test_xei_check_error_prints_hint_and_exits_one():
    proc = run("xei", "check", "S.abc")
    assert proc.returncode == 1
    assert "missing-terminator" in proc.stdout and "hint: every token ends with ';'" in proc.stdout


def test_xei_check_warning_only_exits_zero():
    proc = run("xei", "check", "S.abc;")
    assert proc.returncode == 0 and "s-not-uuid" in proc.stdout


def test_xei_check_lenient():
    assert run("xei", "check", f"s.{CALL_ID}").returncode == 1
    assert run("xei", "check", "--lenient", f"s.{CALL_ID}").returncode == 0


def test_xei_uri_builds_an_escaped_uri():
    proc = run("xei", "uri", "+15551234567", CALL_ID, "--external-id", "crm 1")
    assert proc.stdout.strip() == f"sip:+15551234567@sip.synthflow.ai:32681?X-EI=S.{CALL_ID}%3BE.crm%201%3B"


@pytest.mark.parametrize("doc, status, fragment", [
    (f"<Response><Dial><Sip>sip:+15551234567@sip.synthflow.ai:32681?X-EI=S.{CALL_ID}%3B</Sip></Dial></Response>",
     0, "0 error(s), 0 warning(s)"),
    (f"<Response><Dial><Sip>sip:+15551234567@sip.synthflow.ai:32681?X-EI=S.{CALL_ID};</Sip></Dial></Response>",
     0, "raw-semicolon"),
    (f"<Response><Dial><Sip>sip:+15551234567@sip.synthflow.ai:5060?X-EI=S.{CALL_ID}%3B</Sip></Dial></Response>",
     1, "wrong-port"),
])
def test_lint_twiml_from_stdin(doc, status, fragment):
    proc = run("lint-twiml", "-", stdin=doc)
    assert proc.returncode == status, proc.stdout
    assert fragment in proc.stdout


def test_lint_twiml_from_file_against_a_local_target(tmp_path):
    path = tmp_path / "answer.xml"
    path.write_text(f"<Response><Dial><Sip>sip:+15551234567@127.0.0.1:5070?X-EI=S.{CALL_ID}%3B</Sip></Dial></Response>")
    assert run("lint-twiml", str(path)).returncode == 1  # not Synthflow's host
    assert run("lint-twiml", str(path), "--host", "127.0.0.1", "--port", "5070").returncode == 0
