"""Random bytes from the operating system, drawn a page at a time.

Every request takes some: a request id, a call id, SIP tags and branches. Asking the kernel each time
cost two ``getrandom`` system calls per prepare (``strace -c`` of a worker under wrk); a pool of 4 KiB
needs one call per 180 or so. The bytes are the same kind (``os.urandom``); each is handed out once,
also across threads (a lock) and forks (a child forgets the pool its parent drew).
"""

from __future__ import annotations

import os
import threading

POOL_BYTES = 4096
_lock = threading.Lock()
_pool = b""
_at = 0


def random_bytes(n: int) -> bytes:
    """``n`` random bytes (``n`` at most ``POOL_BYTES``) that no other caller gets."""
    global _pool, _at
    with _lock:
        end = _at + n
        if end > len(_pool):
            _pool, _at, end = os.urandom(POOL_BYTES), 0, n
        taken = _pool[_at:end]
        _at = end
    return taken


def random_hex(n: int) -> str:
    """``random_bytes(n)`` as ``2 * n`` hex digits."""
    return random_bytes(n).hex()


def _forget_pool() -> None:
    global _pool, _at
    _pool, _at = b"", 0


os.register_at_fork(after_in_child=_forget_pool)
