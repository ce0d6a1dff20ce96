"""The agents and workspaces the mock plays: their webhooks, pre-call actions and limits.

``book.py`` reads the agents document (``--agents FILE``, ``PUT /_mock/agents``);
``limits.py`` enforces concurrency and call attempts per second over the shared store.
"""
