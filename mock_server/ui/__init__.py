"""The web ladder at ``/_mock/ui``: one self-contained page (no build step, no CDN, no font download).

It polls the admin API (``/_mock/calls``, ``/_mock/calls/<id>/ladder``) and draws each call
as an SVG sequence diagram from the same steps as ``synthflow-mock ladder``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def page() -> bytes:
    return resources.files(__package__).joinpath("ladder.html").read_bytes()
