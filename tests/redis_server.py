"""A real redis-server (Debian package ``redis-server``) for the Redis store's tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from mock_server.testing import redis_server


def require_redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; .ci/install must install the Debian package redis-server")
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    return path


@contextmanager
def running_redis(port: int | None = None) -> Iterator[str]:
    with redis_server(require_redis_server(), port=port) as url:
        yield url
