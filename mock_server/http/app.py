"""Flask app factory. Views only translate; the core decides.

Routes come from the core's route table (``mock_server.core.routes.ROUTES``),
so the Flask app and the in-process door route identically.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from mock_server.core import exchange
from mock_server.core.backend import Backend
from mock_server.core.config import MockConfig
from mock_server.core.routes import ROUTES, Route
from mock_server.http.front import FRONT_KEY


def _core_request(body_limit: int) -> exchange.Request:
    """Translate the current Flask request. Reads the WSGI environ directly: this is the hot path,
    and each attribute of Flask's request proxy costs a context lookup.

    Under the async front (``front.py``) the store writes are handed to the front, which commits
    them in a group before it answers; under any other WSGI server the core commits them itself."""
    req = request._get_current_object()  # type: ignore[attr-defined]
    environ = req.environ
    front = environ.get(FRONT_KEY)
    headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key[:5] == "HTTP_"}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    if environ.get("CONTENT_LENGTH"):
        headers["content-length"] = environ["CONTENT_LENGTH"]
    # Read one byte past the limit: enough for the core to answer 413, never an unbounded read. The front's
    # input is the whole body, already read and capped, so Werkzeug's guarded stream (6 µs) adds nothing.
    body = (environ["wsgi.input"] if front is not None else req.stream).read(body_limit + 1)
    query = req.args.to_dict() if environ.get("QUERY_STRING") else {}
    return exchange.Request(req.method, req.path, headers, body, query, req.remote_addr,
                            front.writes if front is not None else None)


def _dropped_connection() -> Iterator[bytes]:
    # Raised while the server iterates the body: it closes the connection mid-answer, which the
    # client sees as a reset or an incomplete read (the timeout and reset outcomes).
    raise ConnectionAbortedError("synthflow-mock: outcome drops the connection")
    yield b""  # pragma: no cover - makes this a generator


def _to_flask(resp: exchange.Response) -> Response:
    front = request.environ.get(FRONT_KEY)
    if front is not None:  # the async front waits and drops; nothing blocks here
        front.delay_s, front.drop = resp.delay_s, resp.drop
        if resp.drop:
            return Response(b"", status=200)
    else:
        if resp.delay_s:
            time.sleep(resp.delay_s)
        if resp.drop:
            return Response(_dropped_connection(), status=200, mimetype="application/json")
    mimetype = None if "Content-Type" in resp.headers else "application/json"
    return Response(resp.body_bytes(), status=resp.status, headers=resp.headers, mimetype=mimetype)


def _view(backend: Backend, route: Route) -> Callable[..., Response]:
    limit = backend.config.max_body_bytes

    def view(**args: str) -> Response:
        return _to_flask(backend.dispatch(route, _core_request(limit), args))

    view.__name__ = route.endpoint
    return view


def create_app(config: MockConfig | None = None, backend: Backend | None = None) -> Flask:
    """Build the mock's WSGI app over ``backend`` (or a new one from ``config``)."""
    backend = backend or Backend(config)
    app = Flask("mock_server")
    # The mock answers every byte itself: no size cut-off before the core's own 413.
    app.config["MAX_CONTENT_LENGTH"] = None
    app.extensions["synthflow_mock"] = backend
    for route in ROUTES:
        app.add_url_rule(route.rule, endpoint=route.endpoint, view_func=_view(backend, route),
                         methods=list(route.methods), provide_automatic_options=False)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        """Anything that escapes the core (a bug in this module, say) is still a JSON 500."""
        if isinstance(exc, HTTPException):
            return exc.get_response()  # type: ignore[return-value]
        return _to_flask(backend.crashed(_core_request(backend.config.max_body_bytes), exc))

    @app.errorhandler(NotFound)
    def not_found(_exc: NotFound) -> Response:
        return _to_flask(backend.not_found(_core_request(backend.config.max_body_bytes)))

    @app.errorhandler(MethodNotAllowed)
    def method_not_allowed(exc: MethodNotAllowed) -> Response:
        allowed = list(exc.valid_methods or [])
        return _to_flask(backend.method_not_allowed(_core_request(backend.config.max_body_bytes), allowed))

    return app
