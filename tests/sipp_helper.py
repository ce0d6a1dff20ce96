"""Drive the SIP endpoint with the real SIPp binary (Debian package sip-tester)."""

from __future__ import annotations

import csv
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mock_server.testing import free_udp_tcp_port
from tests.binaries import require

SCENARIOS = Path(__file__).parent / "sipp"


def require_sipp() -> str:
    return require("sipp", "sip-tester")


@dataclass
class SippRun:
    returncode: int
    output: str
    stats: dict[str, str]
    errors: str

    def counter(self, name: str) -> int:
        return int(self.stats.get(name, "0") or 0)


def run_sipp(scenario: str, port: int, workdir: Path, *, rows: list[list[str]] | None = None, transport: str = "u1",
             keys: dict[str, str] | None = None, rate: int = 10, timeout_s: int = 30,
             extra: list[str] | None = None) -> SippRun:
    """Run ``scenario`` (a file in tests/sipp) once per row of injection data; wait for SIPp to exit.

    ``keys`` fill ``__NAME__`` placeholders in the scenario (SIPp's own ``-key`` does not reach attributes).
    """
    sipp = require_sipp()
    text = (SCENARIOS / scenario).read_text()
    for key, value in (keys or {}).items():
        text = text.replace(f"__{key.upper()}__", value)
    rendered = workdir / scenario
    rendered.write_text(text)
    rows = rows or [[]]
    inf = workdir / "calls.csv"
    inf.write_text("SEQUENTIAL\n" + "".join(";".join(row) + ";\n" for row in rows))
    stat = workdir / "stat.csv"
    errors = workdir / "errors.log"
    cmd = [sipp, f"127.0.0.1:{port}", "-sf", str(rendered), "-inf", str(inf),
           "-i", "127.0.0.1", "-p", str(free_udp_tcp_port()), "-t", transport, "-s", "+15551234567",
           "-m", str(len(rows)), "-r", str(rate), "-nostdin", "-timeout", f"{timeout_s}s", "-timeout_error",
           "-recv_timeout", "8000", "-trace_stat", "-stf", str(stat), "-fd", "1",
           "-trace_err", "-error_file", str(errors), *(extra or [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s + 15, cwd=workdir)
    stats: dict[str, str] = {}
    if stat.exists():
        rows_read = list(csv.reader(stat.read_text().splitlines(), delimiter=";"))
        if len(rows_read) >= 2:
            stats = dict(zip(rows_read[0], rows_read[-1], strict=False))
    return SippRun(proc.returncode, proc.stdout + proc.stderr, stats,
                   errors.read_text() if errors.exists() else "")
