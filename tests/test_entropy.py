"""The pool of OS random bytes behind request ids, call ids and SIP tags: every byte handed out once."""

from __future__ import annotations

import os
import sys
import threading

from mock_server.core import entropy
from mock_server.core.calls import IdSource


def test_each_draw_has_the_size_asked_for_across_refills():
    sizes = [1, 10, 12, entropy.POOL_BYTES - 5, 7, entropy.POOL_BYTES, 3]
    assert [len(entropy.random_bytes(n)) for n in sizes] == sizes
    assert len(entropy.random_hex(12)) == 24


def test_threads_drawing_at_once_never_get_the_same_bytes():
    drawn: list[list[bytes]] = [[] for _ in range(4)]

    def draw(out: list[bytes]) -> None:
        for _ in range(5000):
            out.append(entropy.random_bytes(10))

    threads = [threading.Thread(target=draw, args=(out,)) for out in drawn]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as the interpreter lets them
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    everything = [b for out in drawn for b in out]
    assert len(set(everything)) == len(everything) == 20_000


def test_a_forked_child_does_not_reuse_its_parents_pool():
    entropy.random_bytes(1)  # the parent holds a pool, most of it not handed out yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send what it draws, then leave without running the parent's cleanup
        os.write(write, entropy.random_bytes(32) + IdSource().new().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 100)
    os.close(read)
    assert child[:32] != entropy.random_bytes(32)
    assert len(child) == 32 + 36
