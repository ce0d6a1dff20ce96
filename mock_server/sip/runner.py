"""Run the SIP endpoint: as the standalone server's child process, or in a thread beside a test."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading

from mock_server.agents.book import BookCache
from mock_server.core.config import MockConfig, config_from_env
from mock_server.core.store import Store
from mock_server.server.collector import quiet_collections
from mock_server.server.console import from_config as console_for
from mock_server.server.loops import new_event_loop
from mock_server.sip.shard_routing import ShardRouter
from mock_server.sip.sink import make_sink
from mock_server.sip.transport import SipServer, start_sip_server
from mock_server.sip.uas import SipEndpoint
from mock_server.webhooks.delivery import Webhooks


async def _start(store: Store, config: MockConfig, port: int | None = None, *,
                 writer_process: bool = False) -> SipServer:
    sink = make_sink(store, process=writer_process)
    console = console_for(config) if writer_process else None  # the standalone server prints; tests do not
    webhooks = Webhooks(store, config, BookCache(store))
    endpoint = SipEndpoint(store, config, asyncio.get_running_loop(), sink=sink, console=console, webhooks=webhooks)
    server = await start_sip_server(endpoint, config.sip_host, config.sip_port if port is None else port,
                                    tls_port=config.sip_tls_port, tls_cert=config.sip_tls_cert,
                                    tls_key=config.sip_tls_key, reuse_port=config.sip_workers > 1)
    if config.sip_workers > 1 and config.sip_shard_dir and server.udp_protocol is not None:
        router = ShardRouter(config.sip_shard_dir, config.sip_shard, config.sip_workers)
        router.start(endpoint.loop, endpoint.receive_forwarded, server.udp_protocol.peer_for)
        endpoint.route_through(router)
    return server


class SipThread:
    """The SIP endpoint on its own event loop in a daemon thread, over a given store.

    ``port=0`` binds a port free for both UDP and TCP; read it from ``.port``.
    """

    def __init__(self, store: Store, config: MockConfig, port: int | None = None) -> None:
        self.store, self.config, self._port = store, config, port
        self.loop = new_event_loop()
        self.server: SipServer | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="synthflow-mock-sip", daemon=True)

    def start(self) -> SipThread:
        self._thread.start()
        self.server = asyncio.run_coroutine_threadsafe(_start(self.store, self.config, self._port),
                                                       self.loop).result(10)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    @property
    def endpoint(self) -> SipEndpoint:
        assert self.server is not None
        return self.server.endpoint

    def flush(self) -> None:
        """Wait until everything received so far is journaled."""
        asyncio.run_coroutine_threadsafe(_flush(self.endpoint), self.loop).result(10)

    def stop(self) -> None:
        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def _flush(endpoint: SipEndpoint) -> None:
    await asyncio.sleep(0)  # let datagrams already read be handled first
    await asyncio.wrap_future(endpoint.flush())


async def _serve_forever(config: MockConfig) -> None:
    store = Store.for_config(config)
    try:
        server = await _start(store, config, writer_process=True)
    except OSError as exc:  # a port taken since the supervisor checked it: one line, not a traceback
        print(f"synthflow-mock SIP: cannot listen on {config.sip_host}:{config.sip_port}: "
              f"{os.strerror(exc.errno or 0)}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"synthflow-mock SIP: {server.describe()}", file=sys.stderr, flush=True)
    endpoint = server.endpoint
    with quiet_collections(loop, lambda: endpoint.received, config.gc_full_s):
        await stop.wait()
    await server.close()
    store.close()


def main() -> None:
    from mock_server.server.supervisor import die_with_parent

    die_with_parent()
    # The journal writer thread must not hold the event loop off the GIL for the default 5 ms.
    sys.setswitchinterval(0.0005)
    loop = new_event_loop()
    try:
        loop.run_until_complete(_serve_forever(config_from_env()))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
