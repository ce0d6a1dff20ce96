"""The ``synthflow-mock`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mock_server import cli_lint
from mock_server.core.config import MockConfig


def _serve_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="run the HTTP mock and the SIP endpoint")
    p.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--sip-host", default=None, help="SIP bind address (default: --host)")
    p.add_argument("--sip-port", type=int, default=32681, help="SIP UDP+TCP port (default 32681, as Synthflow)")
    p.add_argument("--workers", type=int, default=2, help="HTTP worker processes (default 2)")
    p.add_argument("--token", action="append", default=[],
                   help="accepted API token (repeatable); with none, any non-empty bearer token is accepted")
    p.add_argument("--admin-token", default=os.environ.get("SYNTHFLOW_MOCK_ADMIN_TOKEN"),
                   help="token for /_mock/* (header X-Mock-Admin-Token); required beyond loopback")
    p.add_argument("--outcome", choices=["registered", "failed"], default="registered",
                   help="default prepare_inbound outcome (per request: 'Prefer: outcome=failed')")
    p.add_argument("--failed-status", type=int, choices=[200, 503], default=200,
                   help="HTTP status of the failed (outage) answer (default 200)")
    p.add_argument("--allow-extra-fields", action="store_true",
                   help="accept unknown fields in the prepare_inbound body instead of 422")
    p.add_argument("--max-body-bytes", type=int, default=64 * 1024)
    p.add_argument("--seed", type=int, default=None, help="reproducible call ids")
    p.add_argument("--journal-limit", type=int, default=10_000)
    p.add_argument("--calls-limit", type=int, default=100_000)
    p.add_argument("--store", default=":memory:",
                   help="SQLite file for shared state (default: a temporary file removed on exit)")


def _config_from(args: argparse.Namespace) -> MockConfig:
    return MockConfig(
        tokens=tuple(args.token),
        admin_token=args.admin_token,
        allow_extra_fields=args.allow_extra_fields,
        max_body_bytes=args.max_body_bytes,
        failed_status=args.failed_status,
        default_outcome=args.outcome,
        seed=args.seed,
        journal_limit=args.journal_limit,
        calls_limit=args.calls_limit,
        store_path=args.store,
        sip_host=args.sip_host or args.host,
        sip_port=args.sip_port,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synthflow-mock", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    cli_lint.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from mock_server.serve import serve

        return serve(_config_from(args), host=args.host, http_port=args.http_port, workers=args.workers)
    return cli_lint.run(args)


if __name__ == "__main__":
    sys.exit(main())
