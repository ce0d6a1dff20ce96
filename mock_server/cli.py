"""The synthflow-mock command line: serve, call, lint, xei, config."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mock_server import __version__, cli_lint, cli_settings, cli_watch
from mock_server.core.config import MockConfig, config_from_values

DESCRIPTION = ("A local stand-in for Synthflow's inbound SIP-trunk flow: the prepare_inbound API, a SIP trunk "
               "that checks X-EI, contracts, a Twilio simulator and lint. Every serve option can also come from "
               "SYNTHFLOW_MOCK_<OPTION> in the environment or from a TOML file given with --config; a flag wins "
               "over the environment, which wins over the file.")


def _serve_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="run the HTTP mock and the SIP endpoint", allow_abbrev=False,
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Run the HTTP mock and the SIP endpoint until Ctrl-C.")
    add_serve_arguments(p)


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """The options of serve (also taken by 'config show')."""
    p.add_argument("--config", default=None, metavar="FILE",
                   help="TOML file of serve options (keys as the long flags, e.g. http-port = 8081)")
    p.add_argument("--host", default="127.0.0.1", help="HTTP bind address")
    p.add_argument("--log-format", choices=["text", "json"], default="text",
                   help="console lines, one per HTTP request, SIP transaction and call event")
    p.add_argument("--quiet", action="store_true", help="no console line per request or call (problems still)")
    p.add_argument("--http-port", type=int, default=8080, help="HTTP port (0: any free one)")
    p.add_argument("--tls-cert", default=None, metavar="PEM", help="serve the HTTP API over HTTPS with this cert")
    p.add_argument("--tls-key", default=None, metavar="PEM", help="the key for --tls-cert")
    p.add_argument("--sip-host", default=None, help="SIP bind address (none: the same as --host)")
    p.add_argument("--sip-port", type=int, default=32681, help="SIP UDP+TCP port, as Synthflow's trunk")
    p.add_argument("--no-sip", action="store_true", help="HTTP only")
    p.add_argument("--sip-tls-port", type=int, default=None, help="also serve SIP over TLS on this port (e.g. 32682)")
    p.add_argument("--sip-tls-cert", default=None, help="PEM certificate for --sip-tls-port")
    p.add_argument("--sip-tls-key", default=None, help="PEM key for --sip-tls-port")
    p.add_argument("--sip-t1-ms", type=int, default=500, help="SIP timer T1 in ms (RFC 3261)")
    p.add_argument("--sip-max-transactions", type=int, default=20_000,
                   help="INVITE transactions in progress (unanswered) at most; beyond it a stateless 503 with "
                        "Retry-After")
    p.add_argument("--gc-full-s", type=float, default=600.0,
                   help="each server process collects all garbage when idle, or this often at the latest, never on "
                        "Python's own schedule, which pauses it for 0.1-0.4 s under load (0: Python's schedule)")
    p.add_argument("--sip-ring-ms", type=int, default=0, help="delay before 180 Ringing")
    p.add_argument("--sip-answer-ms", type=int, default=0, help="delay between 180 and 200 OK")
    p.add_argument("--sip-require-xei", action="store_true",
                   help="answer an INVITE without X-EI with 400 instead of accepting it as a direct dial")
    p.add_argument("--sip-xei-lenient", action="store_true",
                   help="accept a missing final ';', a lowercase prefix or spaces between tokens (warning only)")
    p.add_argument("--sip-code", dest="sip_codes", action="append", default=[], metavar="CASE=CODE",
                   help="override a SIP answer, e.g. unknown_call=480 (cases: "
                        "unknown_call, failed_call, busy, used_call, bad_xei, missing_xei)")
    p.add_argument("--sip-workers", type=int, default=1,
                   help="SIP processes sharing the SIP ports (SO_REUSEPORT); 1 measures best on 2 cores "
                        "(bench/RESULTS.md), add shards on bigger machines")
    p.add_argument("--workers", type=int, default=2,
                   help="HTTP worker processes, each on its own socket of the port (SO_REUSEPORT spreads "
                        "connections evenly); waiting holds no worker. 2 measures best on 2 cores: about 1.5x the "
                        "zero-latency throughput of one, for 5-21 %% more CPU per request when the load generator "
                        "has a CPU of its own, 17-37 %% when it shares them: the second worker's wake-ups "
                        "serve half-size groups on shared caches (bench/RESULTS.md)")
    p.add_argument("--http-header-timeout-s", type=float, default=10.0,
                   help="a request's headers must arrive within this long, else 408")
    p.add_argument("--http-body-timeout-s", type=float, default=10.0,
                   help="a request's body must arrive within this long of its headers, else 408")
    p.add_argument("--http-idle-timeout-s", type=float, default=75.0,
                   help="close a keep-alive connection idle this long")
    p.add_argument("--http-max-header-bytes", type=int, default=64 * 1024,
                   help="a request's line and headers must end within this many bytes, else 414 (URL) or 431")
    p.add_argument("--token", dest="tokens", action="append", default=[],
                   help="accepted API token (repeatable); with none, any non-empty bearer token is accepted")
    p.add_argument("--admin-token", default=None,
                   help="token for /_mock/* (header X-Mock-Admin-Token); required beyond loopback. Prefer "
                        "$SYNTHFLOW_MOCK_ADMIN_TOKEN or --admin-token-file: a flag shows in ps")
    p.add_argument("--admin-token-file", default=None, metavar="PATH",
                   help="read the admin token from this file (first line)")
    p.add_argument("--allowed-host", dest="allowed_hosts", action="append", default=[], metavar="NAME",
                   help="also accept admin requests whose Host is NAME (the bound address and localhost always are)")
    p.add_argument("--scenarios-limit", type=int, default=1000, help="queued scenarios at most")
    p.add_argument("--outcome", dest="default_outcome", choices=["registered", "failed"], default="registered",
                   help="default prepare_inbound outcome (per request: 'Prefer: outcome=failed')")
    p.add_argument("--failed-status", type=int, choices=[200, 503], default=200,
                   help="HTTP status of the failed (outage) answer")
    p.add_argument("--allow-extra-fields", action="store_true",
                   help="accept unknown fields in the prepare_inbound body instead of 422")
    p.add_argument("--max-body-bytes", type=int, default=64 * 1024, help="request bodies above this get 413")
    p.add_argument("--seed", type=int, default=None,
                   help="reproducible call ids (one sequence for all workers) and fault draws")
    p.add_argument("--outcome-rate", action="append", default=[], metavar="OUTCOME=SHARE",
                   help="seeded global HTTP fault rate, e.g. failed=0.1 (repeatable; see README)")
    p.add_argument("--sip-outcome-rate", action="append", default=[], metavar="PLAN=SHARE",
                   help="seeded global SIP plan rate, e.g. busy=0.05 (repeatable)")
    p.add_argument("--latency", default=None, metavar="DIST",
                   help="HTTP answer latency: fixed:MS, uniform:MIN:MAX or lognormal:MEDIAN_MS:SIGMA")
    p.add_argument("--sip-answer-latency", default=None, metavar="DIST",
                   help="time from 180 to 200 OK, same forms as --latency")
    p.add_argument("--journal-limit", type=int, default=10_000, help="journal entries kept")
    p.add_argument("--calls-limit", type=int, default=100_000, help="prepared calls kept")
    p.add_argument("--journal-max-bytes", type=int, default=256 * 2**20,
                   help="journal text kept, in bytes; the oldest entries go first")
    p.add_argument("--calls-max-bytes", type=int, default=256 * 2**20,
                   help="prepared calls' JSON kept, in bytes; the oldest calls go first")
    p.add_argument("--media", choices=["on", "off"], default="on",
                   help="RTP for answered calls (greeting out, caller recorded); off for pure signalling load")
    p.add_argument("--rtp-ports", default="10000-60000", metavar="LOW-HIGH", help="UDP ports for RTP")
    p.add_argument("--agent-audio", default=None, metavar="FILE.wav",
                   help="what the agent says when a call connects (any common WAV; default: a shipped greeting)")
    p.add_argument("--media-dir", default=None, metavar="DIR",
                   help="where recordings are written (default: beside the store file)")
    p.add_argument("--rtp-timeout-s", type=float, default=None,
                   help="hang up a call whose caller sends no RTP for this long (default: never)")
    p.add_argument("--transfer-to", default="sip:+15550009999@transfer.synthflow-mock.invalid", metavar="URI",
                   help="where the transfer plan REFERs the caller (an agent's transfer.to in --agents wins)")
    p.add_argument("--transfer-header", dest="transfer_headers", action="append", default=[], metavar="X-NAME=VALUE",
                   help="an X-header the REFER carries (repeatable; <call_id> and {X-Header} placeholders)")
    p.add_argument("--agents", default=None, metavar="FILE",
                   help="agents and workspaces (JSON or TOML, contracts/agents.schema.json): webhook URLs and secrets, "
                        "inbound webhook, pre-call actions, concurrency and CAPS limits")
    p.add_argument("--webhook-retries", type=int, default=3,
                   help="post-call webhook retries after a non-2xx or timeout")
    p.add_argument("--webhook-backoff-s", type=float, default=1.0,
                   help="wait before the first webhook retry; doubles for each later one")
    p.add_argument("--webhook-timeout-s", type=float, default=10.0, help="each webhook attempt waits this long")
    p.add_argument("--inbound-disconnect-code", type=int, default=603,
                   help="SIP code when the inbound webhook disconnects the call")
    p.add_argument("--limit-sip-code", type=int, default=503, help="SIP code for an INVITE over a concurrency limit")
    p.add_argument("--limit-hold-s", type=float, default=60.0,
                   help="a prepared call holds its concurrency slot this long waiting for its INVITE")
    p.add_argument("--store", dest="store_path", default=":memory:",
                   help="SQLite file for shared state, kept on exit; :memory: is a temporary file removed on exit; "
                        "redis://HOST:PORT/DB[?prefix=NAME] shares state with every instance using that Redis "
                        "(pip install 'synthflow-mock[redis]')")


def _sip_codes(pairs: list[str]) -> dict[str, int]:
    from mock_server.sip.admission import DEFAULT_CODES

    codes = {}
    for pair in pairs:
        case, _, code = pair.partition("=")
        if case not in DEFAULT_CODES or not code.isdigit() or not 300 <= int(code) <= 699:
            raise SystemExit(f"--sip-code {pair!r}: expected CASE=CODE with CASE in {', '.join(DEFAULT_CODES)} "
                             "and CODE a final SIP code from 300 to 699")
        codes[case] = int(code)
    return codes


def _latency(text: str | None) -> dict[str, object] | None:
    if not text:
        return None
    kind, *nums = text.split(":")
    try:
        values = [float(n) for n in nums]
    except ValueError:
        values = []
    forms = {"fixed": ("ms",), "uniform": ("min_ms", "max_ms"), "lognormal": ("median_ms", "sigma")}
    if kind not in forms or len(values) != len(forms[kind]):
        raise SystemExit(f"latency {text!r}: use fixed:MS, uniform:MIN:MAX or lognormal:MEDIAN_MS:SIGMA")
    return {"dist": kind, **dict(zip(forms[kind], values, strict=True))}


def _rates(pairs: list[str], flag: str) -> dict[str, float]:
    rates = {}
    for pair in pairs:
        name, _, share = pair.partition("=")
        try:
            rates[name] = float(share)
        except ValueError:
            raise SystemExit(f"{flag} {pair!r}: expected NAME=SHARE with SHARE from 0 to 1") from None
    return rates


def _policy(args: argparse.Namespace) -> dict[str, object] | None:
    from mock_server.core import outcomes
    from mock_server.core.errors import ApiError

    http_rates, sip_rates = _rates(args.outcome_rate, "--outcome-rate"), _rates(args.sip_outcome_rate,
                                                                                  "--sip-outcome-rate")
    latency, sip_latency = _latency(args.latency), _latency(args.sip_answer_latency)
    if not (http_rates or sip_rates or latency or sip_latency):
        return None
    policy = {"seed": args.seed or 0, "http": {"rates": http_rates, "latency": latency},
              "sip": {"rates": sip_rates, "latency": sip_latency}}
    try:
        return outcomes.validate_policy(policy)
    except ApiError as exc:
        raise SystemExit(f"policy: {exc.description}") from None


def _admin_token(args: argparse.Namespace) -> str | None:
    """From the flag, else the file, else $SYNTHFLOW_MOCK_ADMIN_TOKEN."""
    if args.admin_token:
        return str(args.admin_token)
    if args.admin_token_file:
        try:
            with open(args.admin_token_file) as f:
                token = f.readline().strip()
        except OSError as exc:
            raise SystemExit(f"--admin-token-file {args.admin_token_file}: {exc.strerror}") from None
        if not token:
            raise SystemExit(f"--admin-token-file {args.admin_token_file}: the file's first line is empty")
        return token
    return os.environ.get("SYNTHFLOW_MOCK_ADMIN_TOKEN") or None


def _scenarios(documents: list[dict[str, object]]) -> list[dict[str, object]]:
    """Scenarios from the config file, each checked against the same contract as POST /_mock/scenarios."""
    from mock_server.core import contracts

    validator = contracts.fast_validator("admin-scenario.schema.json")
    for n, document in enumerate(documents, 1):
        for error in validator.iter_errors(document):
            pointer = "/".join(str(p) for p in error.instance_path)
            raise cli_settings.SettingsError(f"scenarios[{n}]{'/' + pointer if pointer else ''}: {error.message}")
    return documents


def _agents(path: str | None) -> dict[str, object] | None:
    """The --agents file (JSON, or TOML by its .toml suffix), checked against contracts/agents.schema.json."""
    if not path:
        return None
    import json
    import tomllib

    from mock_server.core import contracts

    try:
        with open(path, "rb") as f:
            document = tomllib.load(f) if path.endswith(".toml") else json.load(f)
    except OSError as exc:
        raise SystemExit(f"--agents {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise SystemExit(f"--agents {path}: not valid {'TOML' if path.endswith('.toml') else 'JSON'}: {exc}") from None
    for error in contracts.fast_validator("agents.schema.json").iter_errors(document):
        pointer = "/".join(str(p) for p in error.instance_path)
        raise SystemExit(f"--agents {path}: {'/' + pointer if pointer else '(top)'}: {error.message}")
    return document or None


def _at_least_one(value: int, flag: str) -> int:
    if value < 1:
        raise SystemExit(f"{flag} {value}: use 1 or more")
    return value


def _transfer_headers(pairs: list[str]) -> dict[str, str]:
    headers = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.lower().startswith("x-") or len(name) < 3:
            raise SystemExit(f"--transfer-header {pair!r}: expected X-NAME=VALUE")
        headers[name] = value
    return headers


def _rtp_ports(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    if not (low.isdigit() and high.isdigit()) or not 1024 <= int(low) <= int(high) <= 65535:
        raise SystemExit(f"--rtp-ports {text!r}: expected LOW-HIGH with 1024 <= LOW <= HIGH <= 65535")
    return int(low), int(high)


def _agent_audio(path: str | None) -> str | None:
    if path:
        from mock_server.media.audio import AudioError, read_wav

        try:
            read_wav(path)
        except AudioError as exc:
            raise SystemExit(f"--agent-audio: {exc}") from None
    return path


def _config_from(args: argparse.Namespace) -> MockConfig:
    """Every ``serve`` flag whose destination is a :class:`MockConfig` field, plus the few that need parsing."""
    rtp_ports = _rtp_ports(args.rtp_ports)
    values = vars(args) | {
        "scenarios": tuple(_scenarios(getattr(args, "scenarios", []))),
        "admin_token": _admin_token(args),
        "allowed_hosts": tuple(args.allowed_hosts) or None,
        "policy": _policy(args),
        "tokens": tuple(args.tokens),
        "sip_host": args.sip_host or args.host,
        "sip_codes": _sip_codes(args.sip_codes),
        "agents": _agents(args.agents),
        "transfer_headers": _transfer_headers(args.transfer_headers),
        "sip_workers": _at_least_one(args.sip_workers, "--sip-workers"),
        "media": args.media == "on",
        "rtp_port_min": rtp_ports[0],
        "rtp_port_max": rtp_ports[1],
        "agent_audio": _agent_audio(args.agent_audio),
    }
    return config_from_values(values)


def standalone_serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synthflow-mock serve", allow_abbrev=False,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_serve_arguments(parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synthflow-mock", description=DESCRIPTION, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"synthflow-mock {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    load = sub.add_parser("loadtest", add_help=False,
                          help="run Locust with the package's users (HTTP, SIP, end to end); arguments go to Locust")
    load.add_argument("locust_args", nargs=argparse.REMAINDER)
    config = sub.add_parser("config", help="show the effective serve configuration and where each value came from")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser("show", allow_abbrev=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                 help="print each serve option, its value and its source (flag, env, file, default)")
    add_serve_arguments(show)
    cli_lint.add_parsers(sub)
    call = sub.add_parser("call", help="play Twilio: call your webhook, read its TwiML, dial the SIP trunk",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    call.add_argument("--webhook", required=True, help="your voice webhook URL")
    call.add_argument("--from", dest="from_number", required=True, help="caller number (E.164)")
    call.add_argument("--to", dest="to_number", required=True, help="called number (E.164)")
    call.add_argument("--method", choices=["POST", "GET"], default="POST", help="how your webhook is called")
    call.add_argument("--auth-token", default=None,
                      help="sign the webhook with X-Twilio-Signature (none: $TWILIO_AUTH_TOKEN, if set)")
    call.add_argument("--mock-url", default="http://127.0.0.1:8080", help="the mock's HTTP address")
    call.add_argument("--admin-token", default=None,
                      help="the mock's admin token, if it has one (none: $SYNTHFLOW_MOCK_ADMIN_TOKEN, if set)")
    call.add_argument("--sip-target", default="127.0.0.1:32681",
                      help="where Synthflow's termination host is dialled instead (HOST:PORT)")
    call.add_argument("--hold-ms", type=int, default=300, help="time between ACK and BYE")
    cli_watch.add_parsers(sub)
    return parser


def _loadtest(locust_args: list[str]) -> int:
    """Locust on the package's locustfile, so a load test needs no clone of the repository."""
    import importlib.util
    import subprocess
    from pathlib import Path

    if importlib.util.find_spec("locust") is None:
        print("synthflow-mock: loadtest needs Locust: pip install 'synthflow-mock[load]'", file=sys.stderr)
        return 2
    locustfile = Path(__file__).resolve().parent / "loadtest" / "locustfile.py"
    return subprocess.call([sys.executable, "-m", "locust", "-f", str(locustfile), *locust_args])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["loadtest"]:  # everything after it is Locust's, options included
        return _loadtest(argv[1:])
    args = build_parser().parse_args(argv)
    command = args.command
    if command in ("serve", "config"):
        rest = argv[argv.index(command) + 1:]
        if command == "config":
            rest = rest[rest.index("show") + 1:]
        try:
            args, sources = cli_settings.resolve(standalone_serve_parser(), rest)
            config = _config_from(args)
        except cli_settings.SettingsError as exc:
            print(f"synthflow-mock: {exc}", file=sys.stderr)
            return 2
        if command == "config":
            print(cli_settings.show(args, sources))
            return 0
        from mock_server.server.claims import Clash
        from mock_server.server.serve import serve

        try:
            return serve(config, host=args.host, http_port=args.http_port, workers=args.workers,
                         sip=not args.no_sip)
        except Clash as clash:
            print(clash, file=sys.stderr)
            return 2
    if args.command == "call":
        from mock_server.twilio_sim import simulate_call

        host, _, port = args.sip_target.rpartition(":")
        report = simulate_call(args.webhook, args.from_number, args.to_number, mock_url=args.mock_url,
                               sip_target=(host.strip("[]"), int(port)), method=args.method,
                               auth_token=args.auth_token or os.environ.get("TWILIO_AUTH_TOKEN"),
                               admin_token=args.admin_token or os.environ.get("SYNTHFLOW_MOCK_ADMIN_TOKEN"),
                               hold_s=args.hold_ms / 1000)
        print(report.render())
        return 0 if report.ok else 1
    if args.command in ("ladder", "tail"):
        return cli_watch.run(args)
    return cli_lint.run(args)


if __name__ == "__main__":
    sys.exit(main())
