"""Naming a Redis store without importing the client (the ``redis`` package is an extra)."""

from __future__ import annotations

from urllib.parse import urlsplit

SCHEMES = ("redis://", "rediss://", "unix://")


def is_redis_url(path: str) -> bool:
    """Whether ``--store`` names a Redis server rather than a SQLite file."""
    return path.startswith(SCHEMES)


def describe(url: str) -> str:
    """The URL without its password, for banners and errors (no secret in logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()
