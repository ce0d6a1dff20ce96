"""The one route table: each row names its path, methods, handler and kind.

The Flask app registers a view per row and the in-process door matches the same
rows, so the two route identically. Following a request from here to its
handler needs no lookup by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from werkzeug.routing import Map, Rule

from mock_server.core import admin, api

Handler = Callable[..., Any]


@dataclass(frozen=True)
class Route:
    rule: str
    methods: tuple[str, ...]
    handler: Handler
    kind: str = "http"
    """``http`` for Synthflow's API, ``admin`` for ``/_mock/`` (its own token, journaled as admin)."""
    needs_token: bool = True
    """False only for the web page's static shell: the data it then fetches needs the admin token."""

    @property
    def endpoint(self) -> str:
        """A unique name: the kind and the handler's name (``http.prepare_inbound``, ``admin.openapi``)."""
        return f"{self.kind}.{self.handler.__name__}"

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"


ROUTES: tuple[Route, ...] = (
    Route("/v2/prepare_inbound", ("POST",), api.prepare_inbound),
    Route("/v2/calls/<call_id>", ("GET",), api.get_call),
    Route("/openapi.json", ("GET",), api.openapi),
    Route("/_mock/health", ("GET",), admin.health, "admin"),
    Route("/_mock/calls", ("GET",), admin.list_calls, "admin"),
    Route("/_mock/calls/<call_id>/sip", ("GET",), admin.sip_ladder, "admin"),
    Route("/_mock/calls/<call_id>/ladder", ("GET",), admin.call_ladder, "admin"),
    Route("/_mock/recordings/<name>", ("GET",), admin.recording, "admin"),
    Route("/_mock/calls/<call_id>/pcap", ("GET",), admin.call_pcap, "admin"),
    Route("/_mock/ui", ("GET",), admin.ui, "admin", needs_token=False),
    Route("/_mock/", ("GET",), admin.ui_redirect, "admin", needs_token=False),
    Route("/_mock/journal", ("GET",), admin.journal, "admin"),
    Route("/_mock/reset", ("POST",), admin.reset, "admin"),
    Route("/_mock/prepare_bulk", ("POST",), admin.prepare_bulk, "admin"),
    Route("/_mock/scenarios", ("GET", "POST", "DELETE"), admin.scenarios, "admin"),
    Route("/_mock/policy", ("GET", "PUT"), admin.policy, "admin"),
    Route("/_mock/agents", ("GET", "PUT"), admin.agents, "admin"),
    Route("/_mock/verify", ("POST",), admin.verify_journal, "admin"),
    Route("/_mock/openapi.json", ("GET",), admin.openapi, "admin"),
    Route("/_mock/metrics", ("GET",), admin.prometheus, "admin"),
)


def url_map() -> Map:
    """A werkzeug map whose endpoints are the :class:`Route` rows themselves."""
    return Map([Rule(route.rule, methods=list(route.methods), endpoint=route) for route in ROUTES])
