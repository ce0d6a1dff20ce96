"""The in-process door: ``requests`` calls to Synthflow's API answered by the same core, no server.

    from mock_server.inprocess import synthflow_mock

    with synthflow_mock() as mock:                  # or @synthflow_mock() on a test
        requests.post("https://api.synthflow.ai/v2/prepare_inbound", ...)
        assert mock.calls()[0]["call_status"] == "registered"

Built on ``responses``: every request to ``api.synthflow.ai`` (and the regional
``api.us`` / ``api.eu`` hosts) goes to :meth:`Backend.handle`, so validation,
outcomes and the journal are the ones the HTTP server has. Outcomes that drop
the connection raise ``requests.ConnectionError`` (or ``ReadTimeout`` when the
hold is longer than the client's timeout), as a real socket would.
"""

from __future__ import annotations

import functools
import inspect
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import requests
import responses

from mock_server.core.backend import Backend
from mock_server.core.config import MockConfig
from mock_server.core.exchange import Request

SYNTHFLOW_HOSTS = re.compile(r"https?://api(?:\.us|\.eu)?\.synthflow\.ai(?::\d+)?/.*")
F = TypeVar("F", bound=Callable[..., Any])


class InProcessMock:
    """A live ``responses`` mock routing Synthflow's hosts to one :class:`Backend`."""

    def __init__(self, config: MockConfig | None = None, backend: Backend | None = None,
                 passthru: tuple[str, ...] = ("http://127.0.0.1", "http://localhost")) -> None:
        self.backend = backend or Backend(config)
        self._responses = responses.RequestsMock(assert_all_requests_are_fired=False)
        for prefix in passthru:
            self._responses.add_passthru(prefix)
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"):
            self._responses.add_callback(method, SYNTHFLOW_HOSTS, callback=self._answer)

    def _answer(self, prepared: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        url = urllib.parse.urlsplit(prepared.url or "")
        body = prepared.body or b""
        request = Request(
            method=prepared.method or "GET",
            path=url.path or "/",
            headers={k.lower(): v for k, v in prepared.headers.items()},
            body=body.encode() if isinstance(body, str) else bytes(body),
            query=dict(urllib.parse.parse_qsl(url.query)),
            remote="in-process",
        )
        response = self.backend.handle(request)
        timeout = getattr(prepared, "req_kwargs", {}).get("timeout")
        if response.drop:
            if response.delay_s and timeout is not None:
                read_timeout = timeout[1] if isinstance(timeout, tuple) else timeout
                if read_timeout is not None and read_timeout < response.delay_s:
                    time.sleep(read_timeout)
                    raise requests.ReadTimeout(f"synthflow-mock: no answer within {read_timeout} s")
            time.sleep(response.delay_s)
            raise requests.ConnectionError("synthflow-mock: the outcome dropped the connection")
        if response.delay_s:
            time.sleep(response.delay_s)
        headers = {"Content-Type": "application/json", **response.headers}
        return response.status, headers, response.body_bytes()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> InProcessMock:
        self._responses.start()
        return self

    def stop(self) -> None:
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
