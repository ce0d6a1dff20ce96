"""synthflow-mock: a local stand-in for Synthflow's inbound SIP-trunk flow.

One core (``mock_server.core``) holds calls, outcomes and the journal; the HTTP
app, the in-process door and the SIP endpoint are thin adapters over it.
"""

__version__ = "0.1.0"
