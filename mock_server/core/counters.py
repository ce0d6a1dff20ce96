"""Counters every process of one store shares: the settings version, the seeded-draw sequence and the
seeded call-id sequence.

Each prepare_inbound asks "did the scenarios or the policy change?" and, with a
policy, "which draw am I?". Asking SQLite costs a read or a write transaction per
request. Here both live in a 16-byte file mapped into every process: a read is a
memory load, and an increment holds an ``flock`` for a few microseconds, so the
draw sequence stays one sequence across worker processes. An in-memory store
(one process) uses plain integers behind a lock.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading

_SLOT = struct.Struct("<Q")
_VERSION, _DRAWS = 0, 8
_STATUS_BYTES = 496
_STATUS = {"sip": 16, "http": 16 + _STATUS_BYTES}
"""Where each status text lives: the SIP process's, and the last failing HTTP worker's."""
_IDS = 16 + 2 * _STATUS_BYTES
_SIZE = _IDS + 8


class SharedCounters:
    def __init__(self, path: str | None) -> None:
        """``path``: the file to map (made if missing), or None for counters private to this process."""
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._map: mmap.mmap | None = None
        self._pid = -1
        self._local = {_VERSION: 0, _DRAWS: 0, _IDS: 0}
        self._status: dict[str, str | None] = {}
        self._open()

    def _open(self) -> None:
        """Map the file; again after fork, since an inherited descriptor shares its flock with the parent."""
        if self.path is None or self._pid == os.getpid():
            return
        self.close()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < _SIZE:
            os.ftruncate(self._fd, _SIZE)
        self._map = mmap.mmap(self._fd, _SIZE)
        self._pid = os.getpid()

    def version(self) -> int:
        """The settings version: it changes whenever scenarios, the policy or the store's contents are reset."""
        if self._map is None:
            return self._local[_VERSION]
        return _SLOT.unpack_from(self._map, _VERSION)[0]

    def set_status(self, cause: str | None, which: str = "sip") -> None:
        """A process's word on recording (``which``: the SIP process's journal writer, or an HTTP worker):
        None when it records, else why not. Written into the mapped file, so it needs no disk space and
        every HTTP worker's health can read it."""
        data = (cause or "").encode()[:_STATUS_BYTES - 1]
        with self._lock:
            if self._map is None:
                self._status[which] = cause
                return
            start = _STATUS[which]
            self._map[start:start + _STATUS_BYTES] = data.ljust(_STATUS_BYTES, b"\0")

    def status(self, which: str = "sip") -> str | None:
        if self._map is None:
            return self._status.get(which)
        start = _STATUS[which]
        raw = bytes(self._map[start:start + _STATUS_BYTES]).rstrip(b"\0")
        return raw.decode(errors="replace") or None

    def draws(self) -> int:
        """How many draws were taken since the policy was last set."""
        if self._map is None:
            return self._local[_DRAWS]
        return _SLOT.unpack_from(self._map, _DRAWS)[0]

    def bump_version(self) -> None:
        self._add(_VERSION, 1)

    def next_draw(self) -> int:
        """The next number of the seeded draw sequence (1, 2, ...), shared by every process."""
        return self._add(_DRAWS, 1)

    def reset_draws(self) -> None:
        self._add(_DRAWS, None)

    def next_id_number(self) -> int:
        """The next number of the seeded call-id sequence (1, 2, ...), shared by every process, so two
        workers never mint the same seeded id (``calls.IdSource``)."""
        return self._add(_IDS, 1)

    def reset_ids(self) -> None:
        self._add(_IDS, None)

    def _add(self, offset: int, step: int | None) -> int:
        """Add ``step`` (or set to 0 when None) under the locks; returns the new value."""
        with self._lock:
            if self._map is None:
                self._local[offset] = 0 if step is None else self._local[offset] + step
                return self._local[offset]
            self._open()
            assert self._fd is not None and self._map is not None
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                value = 0 if step is None else _SLOT.unpack_from(self._map, offset)[0] + step
                _SLOT.pack_into(self._map, offset, value)
                return value
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._pid = -1
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
