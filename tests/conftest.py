from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from mock_server.core.backend import Backend
from mock_server.core.config import MockConfig
from mock_server.http import create_app

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")

VALID_BODY = {
    "from_number": "+15075785607",
    "to_number": "+15551234567",
    "model_id": "1744274157255x646200691892837600",
    "workspace_id": "ws_1",
    "custom_variables": {"name": "erfan", "job": "backend"},
}
AUTH = {"Authorization": "Bearer test-token"}


@pytest.fixture
def make_client():
    """Build a Flask test client over a fresh in-memory backend with the given config."""

    def make(**config):
        backend = Backend(MockConfig(**config))
        return create_app(backend=backend).test_client(), backend

    return make


@pytest.fixture
def client(make_client):
    return make_client()[0]
