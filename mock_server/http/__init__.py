"""The Flask door: a thin adapter from WSGI requests to the core backend."""

from mock_server.http.app import create_app

__all__ = ["create_app"]
