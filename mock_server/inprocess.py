"""The in-process door: ``requests`` and ``httpx`` calls to Synthflow's API answered by the same core, no server.

    from mock_server.inprocess import synthflow_mock

    with synthflow_mock() as mock:                  # or @synthflow_mock() on a test
        requests.post("https://api.synthflow.ai/v2/prepare_inbound", ...)
        assert mock.calls()[0]["call_status"] == "registered"

Every request to ``api.synthflow.ai`` (and the regional ``api.us`` / ``api.eu``
hosts) goes to :meth:`Backend.handle`, so validation, outcomes and the journal
are the ones the HTTP server has: through ``responses`` for ``requests``, and by
patching httpx's transports for ``httpx`` (sync and async). Outcomes that drop
the connection raise what a real socket gives each client (``ConnectionError``,
or ``ReadTimeout`` when the hold is longer than the client's timeout). Any other
``*.synthflow.ai`` host fails loudly instead of reaching the network.
"""

from __future__ import annotations

import functools
import inspect
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
import responses

from mock_server.core.backend import Backend
from mock_server.core.config import MockConfig
from mock_server.core.exchange import Request, Response

SYNTHFLOW_HOSTS = re.compile(r"https?://api(?:\.us|\.eu)?\.synthflow\.ai(?::\d+)?/.*")
OTHER_SYNTHFLOW_HOSTS = re.compile(r"https?://(?!api(?:\.us|\.eu)?\.synthflow\.ai(?::\d+)?/)"
                                   r"(?:[^/]+\.)?synthflow\.ai(?::\d+)?(?:/.*)?")
"""Every other Synthflow host: refused loudly instead of reaching the network."""
F = TypeVar("F", bound=Callable[..., Any])


def is_api_host(host: str) -> bool:
    return host in ("api.synthflow.ai", "api.us.synthflow.ai", "api.eu.synthflow.ai")


def is_synthflow_host(host: str) -> bool:
    return host == "synthflow.ai" or host.endswith(".synthflow.ai")


def not_served(url: str) -> str:
    return (f"synthflow-mock: {url} is a Synthflow host the in-process mock does not serve (it answers "
            "api.synthflow.ai, api.us.synthflow.ai and api.eu.synthflow.ai); refusing to reach the network")


@dataclass(frozen=True)
class Drop:
    """How a dropped connection looks to a client: ``timeout`` (its read timeout ran out first),
    ``closed`` (the server closed without an answer) or ``reset``; ``wait_s`` before it shows."""

    kind: str
    wait_s: float


class InProcessMock:
    """Routes Synthflow's hosts to one :class:`Backend`, for ``requests`` (through ``responses``) and for
    ``httpx`` (sync and async, ``inprocess_httpx.py``).

    ``real_time=False`` (the default): slow answers and held connections do not sleep; an answer
    that would have been delayed says so in ``X-Mock-Delay-Ms``. ``real_time=True`` waits as a
    server would.
    """

    def __init__(self, config: MockConfig | None = None, backend: Backend | None = None,
                 passthru: tuple[str, ...] = ("http://127.0.0.1", "http://localhost"), *,
                 real_time: bool = False) -> None:
        self.backend = backend or Backend(config)
        self.real_time = real_time
        self._responses = responses.RequestsMock(assert_all_requests_are_fired=False)
        for prefix in passthru:
            self._responses.add_passthru(prefix)
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"):
            self._responses.add_callback(method, SYNTHFLOW_HOSTS, callback=self._answer)
            self._responses.add_callback(method, OTHER_SYNTHFLOW_HOSTS, callback=self._refuse)

    # -- the one exchange both doors make ------------------------------------------------------
    def respond(self, method: str, url: str, headers: dict[str, str], body: bytes) -> Response:
        """The core's answer to one request (no waiting)."""
        parts = urllib.parse.urlsplit(url)
        return self.backend.handle(Request(method=method, path=parts.path or "/", headers=headers, body=body,
                                           query=dict(urllib.parse.parse_qsl(parts.query)), remote="in-process"))

    def drop_for(self, response: Response, read_timeout: float | None) -> Drop:
        """What a client with ``read_timeout`` sees of an outcome that drops the connection."""
        if read_timeout is not None and response.delay_s and read_timeout < response.delay_s:
            return Drop("timeout", read_timeout if self.real_time else 0.0)
        return Drop(response.drop or "closed", response.delay_s if self.real_time else 0.0)

    def headers_for(self, response: Response) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **response.headers}
        if response.delay_s and not self.real_time:
            headers["X-Mock-Delay-Ms"] = str(round(response.delay_s * 1000))
        return headers

    # -- requests (responses) ------------------------------------------------------------------
    def _answer(self, prepared: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        body = prepared.body or b""
        response = self.respond(prepared.method or "GET", prepared.url or "",
                                {k.lower(): v for k, v in prepared.headers.items()},
                                body.encode() if isinstance(body, str) else bytes(body))
        if response.drop:
            timeout = getattr(prepared, "req_kwargs", {}).get("timeout")
            read_timeout = timeout[1] if isinstance(timeout, tuple) else timeout
            drop = self.drop_for(response, read_timeout)
            time.sleep(drop.wait_s)
            if drop.kind == "timeout":
                raise requests.ReadTimeout(f"synthflow-mock: no answer within {read_timeout} s")
            raise requests.ConnectionError("synthflow-mock: the outcome dropped the connection")
        if response.delay_s and self.real_time:
            time.sleep(response.delay_s)
        return response.status, self.headers_for(response), response.body_bytes()

    def _refuse(self, prepared: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        raise requests.ConnectionError(not_served(prepared.url or ""))

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> InProcessMock:
        from mock_server import inprocess_httpx

        self._responses.start()
        inprocess_httpx.attach(self)
        return self

    def stop(self) -> None:
        from mock_server import inprocess_httpx

        inprocess_httpx.detach(self)
        self._responses.stop()
        self._responses.reset()

    def __enter__(self) -> InProcessMock:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reading the core ------------------------------------------------------------------------
    def calls(self, status: str | None = None) -> list[dict[str, Any]]:
        """Prepared calls, oldest first."""
        return list(reversed(self.backend.store.list_calls(status=status, limit=100_000)[0]))

    def journal(self, **filters: Any) -> list[dict[str, Any]]:
        filters.setdefault("kinds", ("http", "sip"))
        return self.backend.store.journal(**filters)

    def reset(self) -> None:
        self.backend.store.reset()


@contextmanager
def _active(config: MockConfig | None, **kwargs: Any) -> Iterator[InProcessMock]:
    mock = InProcessMock(config, **kwargs)
    with mock:
        yield mock


class synthflow_mock:
    """Context manager and decorator: ``with synthflow_mock() as mock:`` or ``@synthflow_mock()``.

    A decorated test that takes a ``synthflow`` argument receives the :class:`InProcessMock`.
    """

    def __init__(self, config: MockConfig | None = None, **kwargs: Any) -> None:
        self.config, self.kwargs = config, kwargs
        self._mock: InProcessMock | None = None

    def __enter__(self) -> InProcessMock:
        self._mock = InProcessMock(self.config, **self.kwargs).start()
        return self._mock

    def __exit__(self, *exc: object) -> None:
        if self._mock is not None:
            self._mock.stop()

    def __call__(self, fn: F) -> F:
        signature = inspect.signature(fn)
        inject = "synthflow" in signature.parameters

        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any) -> Any:
            with _active(self.config, **self.kwargs) as mock:
                if inject:
                    kw["synthflow"] = mock
                return fn(*args, **kw)

        if inject:  # hide the injected argument, so pytest does not look for a fixture of that name
            params = [p for name, p in signature.parameters.items() if name != "synthflow"]
            wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]
