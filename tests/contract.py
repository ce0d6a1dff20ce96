"""Validate answers against contracts/ with the reference ``jsonschema`` library.

The server validates with a different engine (jsonschema-rs); checking its
answers with the Python reference implementation keeps the two honest.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

CONTRACTS = Path(__file__).resolve().parent.parent / "contracts"
BASE = "https://synthflow-mock.dev/contracts/"


@cache
def registry() -> Registry:
    resources = []
    for path in CONTRACTS.glob("*.schema.json"):
        schema = json.loads(path.read_text())
        resources.append((BASE + path.name, Resource.from_contents(schema)))
    return Registry().with_resources(resources)


@cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((CONTRACTS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, registry=registry())


def assert_matches(name: str, instance: Any) -> None:
    errors = sorted(validator(name).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, f"{name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def assert_error(resp: Any, status: int, category: str) -> dict[str, Any]:
    """The response is a JSON error of ``status`` and ``category`` that matches error.schema.json."""
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True) if hasattr(resp, "get_data")
                                        else resp.text)
    body = resp.json() if callable(resp.json) else resp.json
    assert_matches("error.schema.json", body)
    assert body["detail"]["category"] == category, body
    return body["detail"]
