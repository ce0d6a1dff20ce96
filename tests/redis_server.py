"""A real redis-server (Debian package ``redis-server``) for the Redis store's tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mock_server.testing import redis_server
from tests.binaries import require


@contextmanager
def running_redis(port: int | None = None) -> Iterator[str]:
    with redis_server(require("redis-server", "redis-server"), port=port) as url:
        yield url
