"""Docs are tests: every example test file is shown in the README exactly as it is (CI runs the files)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "tests").glob("test_*.py"))


def test_there_is_an_example_file_per_door():
    assert [p.name for p in EXAMPLES] == ["test_httpx_door.py", "test_live_server.py", "test_requests_door.py",
                                          "test_simulate_call.py"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_readme_shows_the_file_unchanged(path):
    readme = (ROOT / "README.md").read_text()
    assert f"`examples/tests/{path.name}`\n\n```python\n{path.read_text()}```" in readme
