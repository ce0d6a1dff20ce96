"""The live-server helpers live in the package (mock_server.testing); tests import them from here."""

from mock_server.testing import LiveServer, free_port, free_udp_tcp_port, start_server

__all__ = ["LiveServer", "free_port", "free_udp_tcp_port", "start_server"]
