"""Run the mock's server processes and stop them all, exactly once, on Ctrl-C or SIGTERM.

Each child runs in its own session, so a terminal's Ctrl-C (sent to the whole
foreground process group, often twice) reaches only this supervisor, which
forwards a single SIGTERM to each child group and escalates to SIGKILL after a
grace period. Children also ask the kernel to TERM them if the supervisor dies
(PR_SET_PDEATHSIG). A child marked ``restart`` (an HTTP worker) is replaced when
it dies; any other child's death stops the server.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PR_SET_PDEATHSIG = 1
CRASH_LOOP = 5
CRASH_WINDOW_S = 10.0


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent exits (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), sig)


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()
    """Descriptors the child inherits (the HTTP workers' shared listening socket)."""
    restart: bool = False
    """Start a new one when this child dies (HTTP workers); otherwise its death stops the server."""


class Supervisor:
    def __init__(self, specs: Sequence[ChildSpec], grace_s: float = 5.0) -> None:
        self.specs = list(specs)
        self.grace_s = grace_s
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, int] = {}
        self._deaths: dict[str, list[float]] = {}
        """How many times each restartable child was replaced after it died."""
        self._stop_requested = False

    def _on_signal(self, signum: int, _frame: object) -> None:
        # Only set a flag: no locks in a signal handler.
        self._stop_requested = True

    def start(self) -> None:
        for spec in self.specs:
            self._spawn(spec)

    def _spawn(self, spec: ChildSpec) -> None:
        self.children[spec.name] = subprocess.Popen(spec.argv, env=spec.env, start_new_session=True,
                                                    pass_fds=spec.pass_fds)

    def _replace_dead(self) -> None:
        """Start a new process for each restartable child that died, and say so once per death.

        A child that dies again and again (more than ``CRASH_LOOP`` times in ``CRASH_WINDOW_S``) is not
        replaced: its death then stops the server, with its exit status, instead of a restart loop."""
        now = time.monotonic()
        for spec in self.specs:
            proc = self.children[spec.name]
            if spec.restart and proc.poll() is not None:
                recent = [t for t in self._deaths.get(spec.name, []) if now - t < CRASH_WINDOW_S] + [now]
                self._deaths[spec.name] = recent
                if len(recent) > CRASH_LOOP:
                    print(f"synthflow-mock: {spec.name} died {len(recent)} times in {CRASH_WINDOW_S:g} s; "
                          "not starting it again", file=sys.stderr, flush=True)
                    spec.restart = False
                    continue
                count = self.restarts[spec.name] = self.restarts.get(spec.name, 0) + 1
                print(f"synthflow-mock: {spec.name} exited with status {proc.returncode}; started a new one "
                      f"(replacement {count})", file=sys.stderr, flush=True)
                _signal_group(proc, signal.SIGKILL)  # anything it left in its group
                self._spawn(spec)

    def wait_ready(self, probe: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._replace_dead()  # an HTTP worker that dies while the others start is replaced, not fatal
            if self._stop_requested or self.failed():
                return False
            if probe():
                return True
            time.sleep(0.02)
        return False

    def failed(self) -> str | None:
        for name, proc in self.children.items():
            if proc.poll() is not None:
                return f"{name} exited with status {proc.returncode}"
        return None

    def run(self, probe: Callable[[], bool], on_ready: Callable[[], None], ready_timeout_s: float = 30.0) -> int:
        """Start, wait until ``probe`` passes, then supervise until a signal or a child's death."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            if not self.wait_ready(probe, ready_timeout_s):
                if not self._stop_requested:
                    print(f"synthflow-mock: not ready: {self.failed() or 'timed out'}", file=sys.stderr)
                    return 1
                return 0
            on_ready()
            while not self._stop_requested:
                self._replace_dead()
                problem = self.failed()
                if problem:
                    print(f"synthflow-mock: {problem}; stopping", file=sys.stderr)
                    return 1
                time.sleep(0.1)
            return 0
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        for proc in self.children.values():
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for proc in self.children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            # Kill whatever is left in the child's group (workers of a stuck master, say).
            _signal_group(proc, signal.SIGKILL)
            proc.wait()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
