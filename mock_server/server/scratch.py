"""Where ``serve`` keeps the files it makes for itself: the temporary state file and the metrics files.

Under load the state file's write-ahead log takes about 100 MB of page writes a second (each request
dirties a few random index pages). On a disk the kernel writes all of that back, and its writeback
stalls the writers: under ``wrk -c16`` the p99 was 24-41 ms on ext4 against 6-9 ms with the file
in RAM (bench/RESULTS.md). The state is thrown away on exit anyway, so it goes to a RAM-backed
directory when there is one with room for the store's bounds.
"""

from __future__ import annotations

import os

RAM_DIR = "/dev/shm"


def scratch_parent(needed_bytes: int, ram_dir: str = RAM_DIR) -> str | None:
    """The directory to make temporary files in: ``ram_dir`` when it is writable and has ``needed_bytes``
    free; None (the system's temporary directory) otherwise, or when ``TMPDIR`` names one."""
    if os.environ.get("TMPDIR"):
        return None
    try:
        stat = os.statvfs(ram_dir)
    except OSError:
        return None
    if not os.access(ram_dir, os.W_OK | os.X_OK) or stat.f_bavail * stat.f_frsize < needed_bytes:
        return None
    return ram_dir
