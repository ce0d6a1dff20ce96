"""WSGI entry point for worker processes started by the production server.

The parent (``synthflow-mock serve``) hands the configuration over in the
``SYNTHFLOW_MOCK_CONFIG`` environment variable; every worker opens the same
SQLite store, so all of them see the same calls and journal.
"""

from __future__ import annotations

import os

from flask import Flask

from mock_server.core.config import MockConfig, from_json
from mock_server.http.app import create_app

CONFIG_ENV = "SYNTHFLOW_MOCK_CONFIG"


def create_wsgi_app() -> Flask:
    raw = os.environ.get(CONFIG_ENV)
    return create_app(from_json(raw) if raw else MockConfig())
