"""Locust entry point in the repository; the users live in the package (``mock_server.loadtest``).

    .venv/bin/locust -f locustfile.py --host http://127.0.0.1:8080
    synthflow-mock loadtest --host http://127.0.0.1:8080      # the same, from an installed package
"""

from mock_server.loadtest.locustfile import *  # noqa: F403 - Locust finds the user classes here
