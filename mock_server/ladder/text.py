"""The ladder drawn as text for a terminal: a column per lane in use, an arrow per step."""

from __future__ import annotations

from typing import Any

WIDTH = 28
"""Characters per lane column."""


def render(ladder: dict[str, Any], *, width: int = WIDTH, raw: bool = False) -> str:
    steps = ladder["steps"]
    used = {s["source"] for s in steps} | {s["target"] for s in steps}
    lanes = [lane for lane in ladder["lanes"] if lane["key"] in used] or ladder["lanes"][:2]
    column = {lane["key"]: i for i, lane in enumerate(lanes)}
    gutter = 10
    total = gutter + width * len(lanes)
    call = ladder.get("call") or {}
    lines = [f"call {ladder['call_id']}" + (f"  status {call.get('call_status')}" if call else "  (no call object)")]
    lines.append(" " * gutter + "".join(lane["title"][:width - 2].center(width) for lane in lanes))
    centre = [gutter + width * i + width // 2 for i in range(len(lanes))]

    def blank() -> list[str]:
        row = [" "] * total
        for c in centre:
            row[c] = "|"
        return row

    for step in steps:
        row = blank()
        a, b = centre[column[step["source"]]], centre[column[step["target"]]]
        left, right = min(a, b), max(a, b)
        for x in range(left + 1, right):
            row[x] = "-"
        if b > a:
            row[right - 1] = ">"
        else:
            row[left + 1] = "<"
        label = step["label"]
        space = right - left - 4
        if len(label) > space:
            label = label[:max(space - 1, 1)] + "~"
        begin = left + 2 + (space - len(label)) // 2
        row[begin:begin + len(label)] = list(f"{label}")
        offset = f"+{step['offset_ms']:.0f}ms"
        row[:len(offset)] = list(offset)
        text = "".join(row).rstrip()
        if step.get("note"):
            text += f"   {'!! ' if step.get('problem') else ''}{step['note']}"
        lines.append(text)
        if raw and step.get("raw"):
            lines += ["          " + line for line in str(step["raw"]).splitlines()]
    return "\n".join(lines)
