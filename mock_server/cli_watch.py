"""``synthflow-mock ladder CALL_ID`` and ``synthflow-mock tail``: a running mock, seen from a terminal."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from mock_server.ladder import text

KINDS = "http,sip,webhook"


def add_parsers(sub: Any) -> None:
    ladder = sub.add_parser("ladder", help="draw one call's ladder (prepare, SIP messages, webhooks) as text",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ladder.add_argument("call_id", help="the synthflow_call_id")
    ladder.add_argument("--raw", action="store_true", help="print each message's raw text under its arrow")
    ladder.add_argument("--json", action="store_true", help="print the ladder's steps as JSON instead")
    _common(ladder)
    tail = sub.add_parser("tail", help="follow the journal: one line per request, SIP message and webhook",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    tail.add_argument("--kind", default=KINDS, help="comma-separated subset of http,sip,admin,webhook")
    tail.add_argument("--call-id", default=None, help="only this call")
    tail.add_argument("--from-start", action="store_true", help="print what is already in the journal first")
    tail.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    _common(tail)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mock-url", default="http://127.0.0.1:8080", help="the mock's HTTP address")
    parser.add_argument("--admin-token", default=None,
                        help="the mock's admin token, if it has one (none: $SYNTHFLOW_MOCK_ADMIN_TOKEN, if set)")


def _headers(args: argparse.Namespace) -> dict[str, str]:
    token = args.admin_token or os.environ.get("SYNTHFLOW_MOCK_ADMIN_TOKEN")
    return {"X-Mock-Admin-Token": token} if token else {}


def run(args: argparse.Namespace) -> int:
    import requests  # here, not at import: the CLI's other commands do not need it

    try:
        return _ladder(args) if args.command == "ladder" else _tail(args)
    except requests.RequestException as exc:
        print(f"synthflow-mock {args.command}: cannot reach the mock at {args.mock_url}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def _ladder(args: argparse.Namespace) -> int:
    import requests

    resp = requests.get(f"{args.mock_url}/_mock/calls/{args.call_id}/ladder", headers=_headers(args), timeout=10)
    if resp.status_code == 404:
        print(f"synthflow-mock ladder: the mock at {args.mock_url} knows no call {args.call_id}", file=sys.stderr)
        return 1
    resp.raise_for_status()
    print(json.dumps(resp.json(), indent=2) if args.json else text.render(resp.json(), raw=args.raw))
    return 0


def line(entry: dict[str, Any]) -> str:
    """One journal entry as one line."""
    when = float(entry.get("time") or 0)
    stamp = time.strftime("%H:%M:%S", time.localtime(when)) + f".{int(when % 1 * 1000):03d}"
    kind = entry.get("kind")
    call = f" call={entry['call_id']}" if entry.get("call_id") else ""
    if kind == "sip":
        arrow = "<-" if entry.get("direction") == "in" else "->"
        why = f" [{entry['decision']}]" if entry.get("decision") else ""
        return f"{stamp} sip  {arrow} {entry.get('remote')} {entry.get('first_line')}{why}{call}"
    if kind == "webhook":
        answer = entry.get("status") if entry.get("status") is not None else entry.get("error")
        return (f"{stamp} hook -> {entry.get('method')} {entry.get('url')} {entry.get('event')} "
                f"#{entry.get('attempt')} -> {answer} ({entry.get('latency_ms')} ms){call}")
    outcome = f" outcome={entry['outcome']}" if entry.get("outcome") else ""
    why = f" ({entry['reason']})" if entry.get("reason") else ""
    return f"{stamp} {kind:<4} {entry.get('method')} {entry.get('path')} -> {entry.get('status')}{outcome}{why}{call}"


def _tail(args: argparse.Namespace) -> int:
    import requests

    params: dict[str, Any] = {"kind": args.kind, "limit": 1000}
    if args.call_id:
        params["call_id"] = args.call_id
    if not args.from_start:  # from now on: the journal filters by time, nothing old is fetched
        params["since"] = time.time()
    after = 0
    while True:
        resp = requests.get(f"{args.mock_url}/_mock/journal", params={**params, "after": after},
                            headers=_headers(args), timeout=10)
        resp.raise_for_status()
        for entry in resp.json()["entries"]:
            print(line(entry), flush=True)
            after = max(after, entry["seq"])
        time.sleep(args.interval)
