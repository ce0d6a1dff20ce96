"""The in-process door for ``httpx``: its transports answer Synthflow's hosts from the core.

While an :class:`~mock_server.inprocess.InProcessMock` is active, ``httpx.HTTPTransport``
and ``httpx.AsyncHTTPTransport`` (and subclasses, so clients with their own transport
options too) send requests for ``api.synthflow.ai`` and its regional hosts to the
newest active mock; other ``*.synthflow.ai`` hosts raise ``httpx.ConnectError``; every
other host goes to the network as usual. Patching the transports, as respx does,
catches clients created before the mock started.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx

from mock_server.inprocess import is_api_host, is_synthflow_host, not_served

if TYPE_CHECKING:
    from mock_server.inprocess import InProcessMock

_active: list[InProcessMock] = []
_lock = threading.Lock()
_originals: tuple[Any, Any] | None = None


def attach(mock: InProcessMock) -> None:
    global _originals
    with _lock:
        if _originals is None:
            _originals = (httpx.HTTPTransport.handle_request, httpx.AsyncHTTPTransport.handle_async_request)
            httpx.HTTPTransport.handle_request = _handle  # type: ignore[method-assign]
            httpx.AsyncHTTPTransport.handle_async_request = _handle_async  # type: ignore[method-assign]
        _active.append(mock)


def detach(mock: InProcessMock) -> None:
    global _originals
    with _lock:
        if mock in _active:
            _active.remove(mock)
        if not _active and _originals is not None:
            httpx.HTTPTransport.handle_request, httpx.AsyncHTTPTransport.handle_async_request = _originals
            _originals = None


def _mock_for(request: httpx.Request) -> InProcessMock | None:
    host = request.url.host
    if not is_synthflow_host(host):
        return None
    if not is_api_host(host) or not _active:
        raise httpx.ConnectError(not_served(str(request.url)), request=request)
    return _active[-1]


def _exchange(mock: InProcessMock, request: httpx.Request) -> tuple[httpx.Response | None, float, Exception | None]:
    """(response, wait before it, or the error to raise after the wait)."""
    body = request.read()
    response = mock.respond(request.method, str(request.url), {k.lower(): v for k, v in request.headers.items()},
                            body)
    if response.drop:
        read_timeout = (request.extensions.get("timeout") or {}).get("read")
        drop = mock.drop_for(response, read_timeout)
        if drop.kind == "timeout":
            error: Exception = httpx.ReadTimeout(f"synthflow-mock: no answer within {read_timeout} s", request=request)
        elif drop.kind == "reset":
            error = httpx.ReadError("synthflow-mock: the connection was reset", request=request)
        else:
            error = httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        return None, drop.wait_s, error
    answer = httpx.Response(response.status, headers=mock.headers_for(response), content=response.body_bytes(),
                            request=request)
    return answer, response.delay_s if mock.real_time else 0.0, None


def _handle(transport: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
    mock = _mock_for(request)
    if mock is None:
        assert _originals is not None
        return _originals[0](transport, request)
    answer, wait_s, error = _exchange(mock, request)
    if wait_s:
        time.sleep(wait_s)
    if error is not None:
        raise error
    assert answer is not None
    return answer


async def _handle_async(transport: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
    mock = _mock_for(request)
    if mock is None:
        assert _originals is not None
        return await _originals[1](transport, request)
    await request.aread()
    answer, wait_s, error = _exchange(mock, request)
    if wait_s:
        await asyncio.sleep(wait_s)
    if error is not None:
        raise error
    assert answer is not None
    return answer
