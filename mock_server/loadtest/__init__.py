"""Load tests with Locust, importable from the installed package.

``mock_server/loadtest/locustfile.py`` holds the users (HTTP, SIP, end to end) and their options;
the repository's top-level ``locustfile.py`` re-exports them, and ``synthflow-mock loadtest``
runs Locust on this file from anywhere. When a run ends, the mock's own counters (outcomes, SIP
codes, retransmissions, errors) are printed beside Locust's report (``mock_counters.py``).
"""
