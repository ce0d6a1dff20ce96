"""Shared state in Redis (``--store redis://HOST:PORT/DB``): several instances act as one mock.

The embedded SQLite store (``core/store.py``) stays the default; ``store.RedisStore`` has the
same interface, so the doors, the SIP endpoint and its writer take either. ``urls`` names a
Redis store without importing the client, which is an extra (``synthflow-mock[redis]``).
"""
