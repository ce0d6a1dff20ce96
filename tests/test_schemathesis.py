"""Schemathesis fuzzes the in-process WSGI app from the served /openapi.json with its default checks.

The mock is told which token to accept, so the ignored-auth check can see invalid tokens refused.
"""

from __future__ import annotations

import json

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from mock_server import MockConfig
from mock_server.core import contracts
from mock_server.core.backend import Backend
from mock_server.http import create_app

app = create_app(backend=Backend(MockConfig(tokens=("schemathesis",), journal_limit=2000, calls_limit=2000)))
schema = schemathesis.openapi.from_wsgi("/openapi.json", app)


DECLARED = {(path, method.upper()): {int(code) for code in op["responses"]}
            for path, item in contracts.openapi_bundle()["paths"].items() for method, op in item.items()}


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_contract(case):
    # call_and_validate raises on any failed default check (server errors, schema, status, headers, auth)
    response = case.call_and_validate(headers={"Authorization": "Bearer schemathesis"})
    declared = DECLARED[case.operation.path, case.operation.method.upper()]
    if case.method.upper() != case.operation.method.upper():  # the unsupported-method phase
        assert response.status_code == 405
    else:
        assert response.status_code in declared


admin_schema = schemathesis.openapi.from_wsgi("/_mock/openapi.json", app)
ADMIN_DECLARED = {(path, method.upper()): {int(code) for code in op["responses"]}
                  for path, item in contracts.openapi_bundle("admin-openapi.json")["paths"].items()
                  for method, op in item.items()}


@admin_schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_admin_api_conforms_to_its_contract(case):
    # One rule of PUT /_mock/policy is beyond JSON Schema (a side's rates sum to at most 1): the mock
    # refuses such a body with a 422 naming it, which the positive-data check would count against it.
    excluded = [positive_data_acceptance] if case.operation.path == "/_mock/policy" else []
    response = case.call()
    if response.status_code == 413:
        # A valid agents document can be larger than the body cap (--max-body-bytes): a 413 is right then,
        # and only then.
        assert len(case.as_transport_kwargs().get("data") or b"") > 64 * 1024 or \
            len(json.dumps(case.body).encode()) > 64 * 1024
        return
    case.validate_response(response, excluded_checks=excluded)
    if case.method.upper() != case.operation.method.upper():
        assert response.status_code == 405
    else:
        assert response.status_code in ADMIN_DECLARED[case.operation.path, case.operation.method.upper()]
        assert response.status_code < 500
