from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from mock_server import Backend, MockConfig, create_app

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")

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


@pytest.fixture(scope="session")
def redis_url():
    """One redis-server for the session; each test takes its own key prefix (``redis_store_url``)."""
    from tests.redis_server import running_redis

    with running_redis() as url:
        yield url


@pytest.fixture
def redis_store_url(redis_url, request):
    """A Redis store URL with keys of this test's own."""
    import os

    return f"{redis_url}?prefix=t-{os.urandom(6).hex()}"
