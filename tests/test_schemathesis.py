"""Schemathesis fuzzes the in-process WSGI app from the served /openapi.json with its default checks.

The mock is told which token to accept, so the ignored-auth check can see invalid tokens refused.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings

from mock_server.core.backend import Backend
from mock_server.core.config import MockConfig
from mock_server.http import create_app

app = create_app(backend=Backend(MockConfig(tokens=("schemathesis",), journal_limit=2000, calls_limit=2000)))
schema = schemathesis.openapi.from_wsgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_contract(case):
    case.call_and_validate(headers={"Authorization": "Bearer schemathesis"})
