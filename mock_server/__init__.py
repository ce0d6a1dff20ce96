"""synthflow-mock: a local stand-in for Synthflow's inbound SIP-trunk flow.

One core (``mock_server.core``) holds calls, outcomes and the journal; the HTTP
app, the in-process door and the SIP endpoint are thin adapters over it.

The public face is :data:`__all__`. Names load on first use, so importing the
package (as every server process does) costs nothing and needs none of the
test-only libraries that the in-process door and the pytest helpers use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, tuple[str, str]] = {
    # the in-process door (requests to Synthflow's hosts answered by the core)
    "synthflow_mock": ("mock_server.inprocess", "synthflow_mock"),
    "InProcessMock": ("mock_server.inprocess", "InProcessMock"),
    # configuration, the core and the Flask app
    "MockConfig": ("mock_server.core.config", "MockConfig"),
    "Backend": ("mock_server.core.backend", "Backend"),
    "Request": ("mock_server.core.exchange", "Request"),
    "create_app": ("mock_server.http.app", "create_app"),
    # the live server
    "start_server": ("mock_server.testing", "start_server"),
    "LiveServer": ("mock_server.testing", "LiveServer"),
    # pytest helpers (the fixtures themselves come through the pytest11 entry point)
    "InProcessFixture": ("mock_server.pytest_plugin", "InProcessFixture"),
    "LiveMock": ("mock_server.pytest_plugin", "LiveMock"),
    "simulate_call": ("mock_server.twilio_sim", "simulate_call"),
    # X-EI helpers
    "parse_xei": ("mock_server.xei", "parse"),
    "format_call_id": ("mock_server.xei", "format_call_id"),
    "build_sip_uri": ("mock_server.xei", "build_sip_uri"),
    "lint_twiml": ("mock_server.lint", "lint_twiml"),
}
__all__ = [
    "Backend", "InProcessFixture", "InProcessMock", "LiveMock", "LiveServer", "MockConfig", "Request",
    "__version__", "build_sip_uri", "create_app", "format_call_id", "lint_twiml", "parse_xei", "simulate_call",
    "start_server", "synthflow_mock",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'mock_server' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from mock_server.core.backend import Backend
    from mock_server.core.config import MockConfig
    from mock_server.core.exchange import Request
    from mock_server.http.app import create_app
    from mock_server.inprocess import InProcessMock, synthflow_mock
    from mock_server.lint import lint_twiml
    from mock_server.pytest_plugin import InProcessFixture, LiveMock
    from mock_server.testing import LiveServer, start_server
    from mock_server.twilio_sim import simulate_call
    from mock_server.xei import build_sip_uri, format_call_id
    from mock_server.xei import parse as parse_xei
