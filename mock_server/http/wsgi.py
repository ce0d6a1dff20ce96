"""WSGI entry point for worker processes started by the production server.

The parent (``synthflow-mock serve``) hands the configuration over in the
``CONFIG_ENV`` environment variable (``core/config.py``); every worker
opens the same store, so all of them see the same calls and journal.
"""

from __future__ import annotations

from flask import Flask

from mock_server.core.config import config_from_env
from mock_server.http.app import create_app


def create_wsgi_app() -> Flask:
    return create_app(config_from_env())
