"""Small helpers every SIP module shares: address text, random tags and branches, quoting."""

from __future__ import annotations

import re

from mock_server.core.entropy import random_hex

BRANCH_COOKIE = "z9hG4bK"
"""RFC 3261 §8.1.1.7: a branch starting with this was made by an RFC 3261 element."""
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def format_addr(addr: tuple[str, int] | tuple[str, int, int, int]) -> str:
    """``host:port``, with IPv6 hosts in brackets."""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def random_token(n_bytes: int = 8) -> str:
    """Hex text from ``n_bytes`` random bytes: for tags, Call-IDs and branches."""
    return random_hex(n_bytes)


def new_branch() -> str:
    return BRANCH_COOKIE + random_token(8)


def reason_phrase(text: str) -> str:
    """A status line's reason phrase: no control characters, at most 160 characters."""
    return _UNSAFE.sub(" ", text)[:160] or "Error"


def quoted(text: str) -> str:
    """A SIP quoted-string (for Warning and Reason headers), control characters removed."""
    return '"' + _UNSAFE.sub(" ", text).replace("\\", "\\\\").replace('"', '\\"')[:400] + '"'
