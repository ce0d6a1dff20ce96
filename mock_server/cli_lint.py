"""``synthflow-mock xei check`` and ``synthflow-mock lint-twiml``: print diagnostics, exit 1 on errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from mock_server import lint, xei
from mock_server.xei import Diagnostic


def print_diagnostics(diags: Sequence[Diagnostic], out: TextIO) -> int:
    """Print each diagnostic with its hint; return the exit status (1 if any error)."""
    for d in diags:
        print(f"{d.severity:7} {d.code}: {d.message}", file=out)
        print(f"        hint: {d.hint}", file=out)
    errors = sum(d.severity == "error" for d in diags)
    warnings = len(diags) - errors
    print(f"{errors} error(s), {warnings} warning(s)", file=out)
    return 1 if errors else 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("xei", help="X-EI header tools")
    xsub = p.add_subparsers(dest="xei_command", required=True)
    check = xsub.add_parser("check", help="check an X-EI header value")
    check.add_argument("value", nargs="+", help="the header value (several: one per X-EI header)")
    check.add_argument("--lenient", action="store_true", help="accept what a forgiving receiver would")
    uri = xsub.add_parser("uri", help="build the <Sip> URI for a call id")
    uri.add_argument("number")
    uri.add_argument("call_id")
    uri.add_argument("--host", default=lint.SYNTHFLOW_HOSTS[0])
    uri.add_argument("--port", type=int, default=32681)
    uri.add_argument("--external-id", default=None)

    lt = sub.add_parser("lint-twiml", help="lint the <Dial><Sip> of a TwiML document")
    lt.add_argument("file", help="TwiML file, or - for standard input")
    lt.add_argument("--host", action="append", default=None,
                    help="accepted SIP host (repeatable; default: Synthflow's hosts)")
    lt.add_argument("--port", type=int, default=None, help="expected SIP port for UDP/TCP (default 32681)")


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    if args.command == "xei":
        if args.xei_command == "uri":
            tokens = xei.format_call_id(args.call_id, **({"E": args.external_id} if args.external_id else {}))
            print(xei.build_sip_uri(args.number, args.host, args.port, xei=tokens), file=out)
            return 0
        value = args.value[0] if len(args.value) == 1 else args.value
        result = xei.parse(value, strict=not args.lenient)
        for token in result.tokens:
            print(f"token   {token.prefix}. {xei.PREFIXES[token.prefix]}: {token.value}", file=out)
        return print_diagnostics(result.diagnostics, out)
    if args.file == "-":
        text = sys.stdin.read()
    else:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
    target = lint.Target()
    if args.host or args.port:
        port = args.port or 32681
        target = lint.Target(hosts=tuple(args.host or lint.SYNTHFLOW_HOSTS),
                             ports={"udp": port, "tcp": port, "tls": port + 1})
    return print_diagnostics(lint.lint_twiml(text, target), out)
