"""``synthflow-mock serve``: HTTP (the async front over the Flask app) plus the SIP endpoint.

The process started by the command is a small supervisor (``supervisor.py``).
It binds the HTTP port itself, so a busy port fails here in one line and no
second instance can share it, then starts N HTTP workers (each on its own socket of a
SO_REUSEPORT group, so the kernel spreads connections evenly) and the
SIP endpoint as children, waits until they answer, replaces an HTTP worker that
dies, and stops them all on Ctrl-C or SIGTERM. State lives in one SQLite file
(WAL) that every HTTP worker and the SIP process open, or in a Redis that other
instances share too, so a call prepared over HTTP is known to SIP at once.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import ssl
import sys
import tempfile
from dataclasses import replace

from mock_server.core.checks import is_loopback
from mock_server.core.config import CONFIG_ENV, MockConfig, to_json
from mock_server.core.store import Store
from mock_server.redis_store.urls import describe, is_redis_url
from mock_server.server import claims
from mock_server.server.scratch import scratch_parent
from mock_server.server.supervisor import ChildSpec, Supervisor


def check_exposure(host: str, config: MockConfig) -> None:
    """Refuse to expose the admin API beyond loopback without its own token."""
    for bound in (host, config.sip_host):
        if not is_loopback(bound) and not config.admin_token:
            raise SystemExit(
                f"refusing to bind {bound}: beyond loopback the admin API (/_mock/*) needs --admin-token "
                "(or SYNTHFLOW_MOCK_ADMIN_TOKEN)"
            )


LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


def _http_probe(host: str, port: int, tls: bool = False) -> str | None:
    """One health request on a fresh connection: the answering worker's pid, or None when none answered."""
    if tls:  # the supervisor only asks whether it answers; the certificate is the client's business
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=0.5, context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=0.5)
    try:
        conn.request("GET", "/_mock/health", headers={"X-Mock-Internal": "readiness"})
        answer = conn.getresponse()
        return answer.getheader("X-Mock-Worker", "?") if answer.status in (200, 401, 403) else None
    except OSError:
        return None
    finally:
        conn.close()


def _http_ready(host: str, port: int, tls: bool = False, workers: int = 1) -> bool:
    """Every worker has answered: each has its own socket, and one that is still starting would leave the
    connections the kernel hands it waiting."""
    seen: set[str] = set()
    for _ in range(16 * workers):
        worker = _http_probe(host, port, tls)
        if worker is None:
            return False
        seen.add(worker)
        if len(seen) >= workers:
            return True
    return False


def _sip_probe(host: str, port: int) -> bytes | None:
    """One OPTIONS over UDP from a fresh source port; the answer, or None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        try:
            sock.bind((host, 0))
            local_port = sock.getsockname()[1]
            probe = (f"OPTIONS sip:ready@{host}:{port} SIP/2.0\r\n"
                     f"Via: SIP/2.0/UDP {host}:{local_port};branch=z9hG4bK{os.urandom(6).hex()};rport\r\n"
                     "From: <sip:supervisor@localhost>;tag=ready\r\nTo: <sip:ready@localhost>\r\n"
                     "X-Mock-Internal: readiness\r\n"
                     f"Call-ID: ready-{os.urandom(6).hex()}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                     "Content-Length: 0\r\n\r\n")
            sock.sendto(probe.encode(), (host, port))
            answer = sock.recv(65535)
        except OSError:
            return None
    return answer if answer.startswith(b"SIP/2.0 200") else None


def _sip_ready(host: str, port: int, shards: int = 1) -> bool:
    """An OPTIONS gets an answer once the SIP child listens. With shards, every one must have answered:
    the kernel spreads callers over the shards bound so far, and a shard that binds late would move
    callers already in a dialog to another shard."""
    if shards == 1:
        return _sip_probe(host, port) is not None
    seen: set[bytes] = set()
    for _ in range(16 * shards):
        answer = _sip_probe(host, port)
        if answer is None:
            return False
        for line in answer.split(b"\r\n"):
            if line.lower().startswith(b"x-mock-shard:"):
                seen.add(line.split(b":", 1)[1].strip())
        if len(seen) == shards:
            return True
    return False


def queue_scenarios(config: MockConfig) -> None:
    """The config file's scenarios, queued before any request can arrive."""
    if not config.scenarios:
        return
    store = Store.for_config(config)
    try:
        for scenario in config.scenarios:
            spec = dict(scenario)
            match, times = spec.pop("match", {}), int(spec.pop("times", 1))
            store.add_scenario(match, spec, times)
    finally:
        store.close()


def install_agents(config: MockConfig) -> None:
    """The --agents document replaces whatever the store held, before any request can arrive."""
    if not config.agents:
        return
    store = Store.for_config(config)
    try:
        store.set_agents(config.agents)
    finally:
        store.close()


def serve(config: MockConfig, *, host: str = "127.0.0.1", http_port: int = 8080, workers: int = 1,
          sip: bool = True) -> int:
    """Run until SIGINT/SIGTERM; returns the exit status."""
    check_exposure(host, config)
    config = replace(config, allowed_hosts=(*LOCAL_NAMES, host, *(config.allowed_hosts or ())))
    tmpdir = None
    shared_store = is_redis_url(config.store_path)  # other instances may share it: no claim, no file
    # Room for the store at its bounds, with its indexes and write-ahead log.
    scratch = scratch_parent(2 * (config.calls_max_bytes + config.journal_max_bytes) + 2**27)
    if config.store_path == ":memory:":
        tmpdir = tempfile.mkdtemp(prefix="synthflow-mock-", dir=scratch)
        config = replace(config, store_path=os.path.join(tmpdir, "state.sqlite3"))
    elif shared_store and not config.media_dir:  # recordings: one directory for the SIP and HTTP processes
        tmpdir = tempfile.mkdtemp(prefix="synthflow-mock-")
        config = replace(config, media_dir=os.path.join(tmpdir, "media"))
    try:
        store_lock = None if shared_store else claims.claim_store(config.store_path)
        if shared_store:
            claims.check_redis(config.store_path)
        else:
            claims.check_store(config.store_path)
        queue_scenarios(config)
        install_agents(config)
        if sip:
            claims.check_sip_ports(config.sip_host, config.sip_port, config.sip_tls_port)
        listeners = claims.bind_http(host, http_port, workers)
    except claims.Clash:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    http_port = listeners[0].getsockname()[1]
    # prometheus-client's multiprocess files
    metrics_dir = tempfile.mkdtemp(prefix="synthflow-mock-metrics-", dir=scratch)
    made_dirs = [metrics_dir]
    if sip and config.sip_workers > 1:  # the shards' routing sockets
        made_dirs.append(tempfile.mkdtemp(prefix="synthflow-mock-shards-"))
        config = replace(config, sip_shard_dir=made_dirs[-1])
    env = {**os.environ, CONFIG_ENV: to_json(config), "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
           "SYNTHFLOW_MOCK_INSTANCE": f"{socket.gethostname()}:{os.getpid()}"}
    children = [ChildSpec(f"http worker {n}", [sys.executable, "-m", "mock_server.http.worker", str(sock.fileno())],
                          env, pass_fds=(sock.fileno(),), restart=True) for n, sock in enumerate(listeners, 1)]
    sip_text = ""
    if sip:
        for shard in range(config.sip_workers):
            shard_env = {**env, CONFIG_ENV: to_json(replace(config, sip_shard=shard))}
            name = "sip" if config.sip_workers == 1 else f"sip shard {shard + 1}"
            children.append(ChildSpec(name, [sys.executable, "-m", "mock_server.sip.runner"], shard_env))
        tls = f", tls {_fmt(config.sip_host)}:{config.sip_tls_port}" if config.sip_tls_port else ""
        sip_text = f", SIP udp+tcp {_fmt(config.sip_host)}:{config.sip_port}{tls}"
    scheme = "https" if config.tls_cert else "http"
    banner = (f"synthflow-mock ready: HTTP {scheme}://{_fmt(host)}:{http_port} ({workers} worker(s)){sip_text}, "
              f"store {describe(config.store_path) if shared_store else config.store_path}")
    probe_host = _probe_host(host)
    sip_probe_host = _probe_host(config.sip_host)

    def ready() -> bool:
        http_up = _http_ready(probe_host, http_port, tls=bool(config.tls_cert), workers=workers)
        return http_up and (not sip or _sip_ready(sip_probe_host, config.sip_port, config.sip_workers))

    try:
        supervisor = Supervisor(children)
        return supervisor.run(ready, lambda: print(banner, file=sys.stderr, flush=True))
    finally:
        for sock in listeners:
            sock.close()
        if store_lock is not None:
            os.close(store_lock)
        for made in made_dirs:
            shutil.rmtree(made, ignore_errors=True)
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _probe_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)


def _fmt(host: str) -> str:
    return f"[{host}]" if ":" in host else host
