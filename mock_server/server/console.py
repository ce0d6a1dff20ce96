"""What ``serve`` prints while it runs: one line per HTTP request, per SIP transaction and per call event.

Text for people (colour only on a terminal), or JSON lines for tools (``--log-format json``);
``--quiet`` prints nothing but problems. Secrets never reach these lines: they are built from
journal fields, which are redacted already.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

_COLOURS = {"2": "\033[32m", "3": "\033[36m", "4": "\033[33m", "5": "\033[31m", "6": "\033[31m"}
_RESET = "\033[0m"


class Console:
    def __init__(self, fmt: str = "text", quiet: bool = False, stream: TextIO | None = None) -> None:
        self.format, self.quiet = fmt, quiet
        self.stream = stream or sys.stderr
        self.colour = fmt == "text" and bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self, kind: str, *, status: int | str | None = None, call_id: str | None = None,
             what: str = "", outcome: str | None = None, reason: str | None = None,
             latency_ms: float | None = None) -> None:
        if self.quiet:
            return
        now = time.time()
        if self.format == "json":
            record: dict[str, Any] = {"time": round(now, 3), "kind": kind, "what": what, "status": status,
                                      "call_id": call_id, "outcome": outcome, "reason": reason,
                                      "latency_ms": None if latency_ms is None else round(latency_ms, 2)}
            self.stream.write(json.dumps({k: v for k, v in record.items() if v is not None}) + "\n")
        else:
            clock = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
            code = "" if status is None else str(status)
            if self.colour and code[:1] in _COLOURS:
                code = f"{_COLOURS[code[:1]]}{code}{_RESET}"
            parts = [clock, f"{kind:<4}", what, code]
            if outcome:
                parts.append(f"{outcome} ({reason})" if reason else outcome)
            elif reason:
                parts.append(f"({reason})")
            if call_id:
                parts.append(f"call={call_id}")
            if latency_ms is not None:
                parts.append(f"{latency_ms:.1f}ms")
            self.stream.write(" ".join(p for p in parts if p) + "\n")
        self.stream.flush()


def from_config(config: Any) -> Console:
    return Console(config.log_format, config.quiet)
