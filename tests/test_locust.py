"""Short headless Locust runs against the harness (a few seconds, a few users)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from mock_server.testing import free_port, start_server

pytestmark = pytest.mark.live
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def harness():
    server = start_server("--workers", "2")
    yield server
    server.kill_group()


def locust(server, tmp_path, *args, users=4, seconds=3, extra_env=None):
    cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "locustfile.py"), "--headless", "-u", str(users),
           "-r", str(users), "-t", f"{seconds}s", "--host", server.url, "--sip-target",
           f"127.0.0.1:{server.sip_port}", "--csv", str(tmp_path / "run"), "--only-summary", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, cwd=tmp_path,
                          env=extra_env)


def stats(tmp_path):
    with open(tmp_path / "run_stats.csv") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def test_http_and_sip_users_run_clean_and_write_reports(harness, tmp_path):
    run = locust(harness, tmp_path, "--html", str(tmp_path / "run.html"), "PrepareInboundUser", "SipCallUser")
    assert run.returncode == 0, run.stderr[-2000:]
    rows = stats(tmp_path)
    for name in ("prepare_inbound", "INVITE -> 200", "BYE -> 200"):
        assert int(rows[name]["Request Count"]) > 0 and int(rows[name]["Failure Count"]) == 0, rows[name]
    assert (tmp_path / "run.html").stat().st_size > 10_000


def test_outcome_mix_answers_are_checked_against_the_contract(harness, tmp_path):
    run = locust(harness, tmp_path, "--outcome-mix", "registered=0.5,failed=0.25,rate_limited=0.25",
                 "PrepareInboundUser", users=2, seconds=2)
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(stats(tmp_path)["prepare_inbound"]["Failure Count"]) == 0


def test_an_answer_off_the_contract_is_a_failure(tmp_path):
    server = start_server("--failed-status", "503")  # the failed outcome now answers 503
    try:
        run = locust(server, tmp_path, "--outcome-mix", "failed=1", "PrepareInboundUser", users=1, seconds=2)
    finally:
        server.kill_group()
    assert run.returncode == 1
    with open(tmp_path / "run_failures.csv") as f:
        assert "expected HTTP 200 for outcome failed, got 503" in f.read()


def test_thresholds_set_the_exit_code(harness, tmp_path):
    run = locust(harness, tmp_path, "--max-p99-ms", "0.001", "--max-fail-ratio", "0.5", "PrepareInboundUser",
                 users=1, seconds=2)
    assert run.returncode == 1
    assert "threshold failed: POST prepare_inbound: p99" in run.stderr


def test_end_to_end_user_plays_twilio_against_a_webhook(harness, tmp_path, monkeypatch):
    from examples.flask_app import app

    monkeypatch.setenv("SYNTHFLOW_BASE_URL", harness.url)
    monkeypatch.setenv("SYNTHFLOW_API_KEY", "k")
    web = make_server("127.0.0.1", free_port(), app, threaded=True)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        run = locust(harness, tmp_path, "--webhook-url", f"http://127.0.0.1:{web.server_port}/voice",
                     "EndToEndUser", users=2, seconds=3, extra_env=dict(os.environ))
    finally:
        web.shutdown()
    assert run.returncode == 0, run.stderr[-2000:]
    rows = stats(tmp_path)
    assert int(rows["SIP answer"]["Request Count"]) > 0 and int(rows["SIP answer"]["Failure Count"]) == 0


def test_distributed_one_master_two_workers(harness, tmp_path):
    port = free_port()
    base = [sys.executable, "-m", "locust", "-f", str(ROOT / "locustfile.py"), "--host", harness.url,
            "--sip-target", f"127.0.0.1:{harness.sip_port}"]
    workers = [subprocess.Popen([*base, "--worker", "--master-port", str(port)], cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        master = subprocess.run([*base, "--master", "--master-bind-port", str(port), "--headless",
                                 "--expect-workers", "2", "--expect-workers-max-wait", "30", "-u", "4", "-r", "4",
                                 "-t", "3s", "--csv", str(tmp_path / "run"), "--only-summary",
                                 "PrepareInboundUser"], capture_output=True, text=True, timeout=90, cwd=tmp_path)
    finally:
        for worker in workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
    # --expect-workers 2 makes the master wait for both workers (and fail after 30 s without them)
    assert master.returncode == 0, master.stderr[-2000:]
    assert int(stats(tmp_path)["prepare_inbound"]["Request Count"]) > 0


def test_a_load_test_runs_from_the_installed_package_outside_the_repository(harness, tmp_path):
    import json
    import shutil

    cli = shutil.which("synthflow-mock") or str(Path(sys.executable).parent / "synthflow-mock")
    run = subprocess.run([cli, "loadtest", "--headless", "-u", "2", "-r", "2", "-t", "2s", "--host", harness.url,
                          "--csv", str(tmp_path / "run"), "--only-summary", "PrepareInboundUser"],
                         capture_output=True, text=True, timeout=90, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert not (tmp_path / "locustfile.py").exists()  # nothing of the repository is here
    assert int(stats(tmp_path)["prepare_inbound"]["Request Count"]) > 0
    assert "synthflow-mock counters" in run.stdout and "outcomes" in run.stdout
    counters = json.loads((tmp_path / "run_mock.json").read_text())
    assert counters["outcomes"]["registered"] >= int(stats(tmp_path)["prepare_inbound"]["Request Count"])
    assert counters["errors"] == 0
