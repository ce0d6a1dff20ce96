"""Load tests for an integrator's inbound path, with Locust.

    locust -f locustfile.py --host http://127.0.0.1:8080 PrepareInboundUser SipCallUser
    locust -f locustfile.py --headless -u 20 -r 10 -t 30s --host http://127.0.0.1:8080 \\
        --csv out/run --html out/run.html --max-fail-ratio 0.01 --max-p99-ms 250 PrepareInboundUser

Users
  PrepareInboundUser  POST /v2/prepare_inbound; every answer is checked against contracts/
                      (a contract violation or an unexpected status is a failure).
  SipCallUser         prepares a call, then places it over UDP like Twilio: INVITE with
                      X-EI: S.<id>;, 200, ACK, hold, BYE. Each step is a Locust request (type SIP).
  EndToEndUser        plays Twilio against your webhook (--webhook-url) and dials the trunk;
                      each simulator step is a request (type E2E).

Options (also as environment variables): --synthflow-token (SYNTHFLOW_TOKEN), --sip-target
HOST:PORT (SYNTHFLOW_SIP_TARGET, default 127.0.0.1:32681), --webhook-url (SYNTHFLOW_WEBHOOK_URL),
--outcome-mix e.g. "registered=0.9,failed=0.05,rate_limited=0.05" (sent as Prefer: outcome=...),
--sip-hold-ms. Thresholds that set the exit code: --max-fail-ratio, --max-p95-ms, --max-p99-ms
(checked per request name).
"""

from __future__ import annotations

import logging
import os
import random
import time
from typing import Any

from locust import FastHttpUser, User, between, events, task
from locust.exception import StopUser

from mock_server import xei
from mock_server.core import contracts
from mock_server.loadtest import mock_counters
from mock_server.sip.client import SipCaller

BODY = {"from_number": "+15075785607", "to_number": "+15551234567", "model_id": "1744274157255x646200691892837600",
        "workspace_id": "ws_load", "custom_variables": {"source": "locust"}}
EXPECTED_STATUS = {"registered": 200, "failed": 200, "unauthorized": 401, "invalid": 422, "rate_limited": 429,
                   "server_error": 500, "unavailable": 503, "slow": 200}
log = logging.getLogger("synthflow-mock.locust")


# The same compiled contracts the server uses (found beside the installed package or in the repo).
VALIDATORS = {"registered": contracts.fast_validator("prepare-inbound-registered.schema.json"),
              "failed": contracts.fast_validator("prepare-inbound-failed.schema.json"),
              "error": contracts.fast_validator("error.schema.json")}


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--synthflow-token", default=os.environ.get("SYNTHFLOW_TOKEN", "load-test"))
    parser.add_argument("--sip-target", default=os.environ.get("SYNTHFLOW_SIP_TARGET", "127.0.0.1:32681"))
    parser.add_argument("--webhook-url", default=os.environ.get("SYNTHFLOW_WEBHOOK_URL", ""))
    parser.add_argument("--outcome-mix", default=os.environ.get("SYNTHFLOW_OUTCOME_MIX", ""),
                        help='e.g. "registered=0.9,failed=0.1"')
    parser.add_argument("--sip-hold-ms", type=int, default=int(os.environ.get("SYNTHFLOW_SIP_HOLD_MS", "100")))
    parser.add_argument("--max-fail-ratio", type=float, default=None)
    parser.add_argument("--max-p95-ms", type=float, default=None)
    parser.add_argument("--max-p99-ms", type=float, default=None)


def _mix(text: str) -> tuple[list[str], list[float]]:
    if not text:
        return ["registered"], [1.0]
    names, weights = [], []
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in EXPECTED_STATUS:
            raise ValueError(f"--outcome-mix: {name!r} is not one of {', '.join(EXPECTED_STATUS)}")
        names.append(name.strip())
        weights.append(float(weight or 1))
    return names, weights


def check_answer(outcome: str, status: int, body: Any) -> str | None:
    """None when the answer is the contract's for this outcome, else what is wrong."""
    if status != EXPECTED_STATUS[outcome]:
        return f"expected HTTP {EXPECTED_STATUS[outcome]} for outcome {outcome}, got {status}"
    schema = "error" if status >= 400 else ("failed" if outcome == "failed" else "registered")
    errors = [f"{'/'.join(map(str, e.instance_path)) or '/'}: {e.message}" for e in
              VALIDATORS[schema].iter_errors(body)]
    return f"contract violation ({schema}): {'; '.join(errors[:3])}" if errors else None


class PrepareInboundUser(FastHttpUser):
    """POST /v2/prepare_inbound, answers checked against the contract."""

    wait_time = between(0, 0)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.names, self.weights = _mix(getattr(options, "outcome_mix", ""))
        self.auth = {"Authorization": f"Bearer {getattr(options, 'synthflow_token', 'load-test')}"}

    @task
    def prepare(self) -> None:
        outcome = random.choices(self.names, self.weights)[0]
        headers = dict(self.auth)
        if outcome != "registered":
            headers["Prefer"] = f"outcome={outcome}"
        with self.client.post("/v2/prepare_inbound", json=BODY, headers=headers, name="prepare_inbound",
                              catch_response=True) as resp:
            try:
                body = resp.json()
            except ValueError:
                resp.failure(f"not JSON: {resp.text[:80]!r}")
                return
            problem = check_answer(outcome, resp.status_code, body)
            if problem:
                resp.failure(problem)
            else:
                resp.success()


def _fire(user: User, request_type: str, name: str, started: float, length: int = 0,
          exception: Exception | None = None) -> None:
    user.environment.events.request.fire(request_type=request_type, name=name,
                                         response_time=(time.perf_counter() - started) * 1000,
                                         response_length=length, exception=exception, context={})


class SipCallUser(FastHttpUser):
    """Prepare a call over HTTP, then place it over SIP (UDP) like Twilio does."""

    wait_time = between(0, 0)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        host, _, port = getattr(options, "sip_target", "127.0.0.1:32681").rpartition(":")
        self.sip = SipCaller(host.strip("[]"), int(port), timeout=5)
        self.hold_s = getattr(options, "sip_hold_ms", 100) / 1000
        self.auth = {"Authorization": f"Bearer {getattr(options, 'synthflow_token', 'load-test')}"}

    @task
    def call(self) -> None:
        resp = self.client.post("/v2/prepare_inbound", json=BODY, headers=self.auth, name="prepare_inbound")
        if resp.status_code != 200:
            return
        call_id = resp.json()["synthflow_call_id"]
        started = time.perf_counter()
        result = self.sip.call(f"sip:{BODY['to_number']}@{self.sip.host}:{self.sip.port}",
                               [("X-EI", xei.format_call_id(call_id))], hold_s=self.hold_s)
        invite = next((s for s in result.steps if s.name.startswith("INVITE") and (s.status or 0) >= 200), None)
        if invite is None or not result.answered:
            reason = result.error or (f"{result.final.status} {result.final.reason}" if result.final else "no answer")
            _fire(self, "SIP", "INVITE -> 200", started, exception=RuntimeError(reason))
            return
        self.environment.events.request.fire(request_type="SIP", name="INVITE -> 200", response_time=invite.ms,
                                             response_length=0, exception=None, context={})
        bye = next((s for s in result.steps if s.name.startswith("BYE")), None)
        if bye is None or bye.status != 200:
            _fire(self, "SIP", "BYE -> 200", started, exception=RuntimeError(result.error or "BYE not answered 200"))
            return
        self.environment.events.request.fire(request_type="SIP", name="BYE -> 200", response_time=bye.ms,
                                             response_length=0, exception=None, context={})


class EndToEndUser(User):
    """Play Twilio against the integrator's webhook, then dial the trunk (twilio_sim)."""

    wait_time = between(0.1, 0.3)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.webhook = getattr(options, "webhook_url", "")
        if not self.webhook:
            log.error("EndToEndUser needs --webhook-url (or SYNTHFLOW_WEBHOOK_URL); stopping this user")
            raise StopUser()
        host, _, port = getattr(options, "sip_target", "127.0.0.1:32681").rpartition(":")
        self.sip_target = (host.strip("[]"), int(port))

    @task
    def inbound_call(self) -> None:
        from mock_server.twilio_sim import simulate_call

        started = time.perf_counter()
        report = simulate_call(self.webhook, BODY["from_number"], BODY["to_number"], mock_url=self.host or "",
                               sip_target=self.sip_target, hold_s=0.05)
        for check in report.checks:
            self.environment.events.request.fire(
                request_type="E2E", name=check.name, response_time=(time.perf_counter() - started) * 1000,
                response_length=0, exception=None if check.ok else RuntimeError(check.detail), context={})


@events.quitting.add_listener
def _thresholds(environment: Any, **_: Any) -> None:
    """Turn the thresholds into Locust's exit code, and say which one failed."""
    options = environment.parsed_options
    if options is None:
        return
    stats = environment.stats
    problems = []
    max_fail = getattr(options, "max_fail_ratio", None)
    if max_fail is not None and stats.total.fail_ratio > max_fail:
        problems.append(f"failure ratio {stats.total.fail_ratio:.4f} > {max_fail}")
    for pct, limit in ((0.95, getattr(options, "max_p95_ms", None)), (0.99, getattr(options, "max_p99_ms", None))):
        if limit is None:
            continue
        for entry in stats.entries.values():
            value = entry.get_response_time_percentile(pct)
            if entry.num_requests and value > limit:
                problems.append(f"{entry.method} {entry.name}: p{int(pct * 100)} {value:.0f} ms > {limit:g} ms")
    if problems:
        for problem in problems:
            log.error("threshold failed: %s", problem)
        environment.process_exit_code = 1


@events.quitting.add_listener
def _mock_counters(environment: Any, **_: Any) -> None:
    """Print the mock's own counters beside Locust's report (and write them next to its CSV files)."""
    options = environment.parsed_options
    if options is None or not environment.host or getattr(options, "worker", False):
        return
    print(mock_counters.report(environment.host, getattr(options, "csv_prefix", None)), flush=True)
