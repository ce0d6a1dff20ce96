"""Load the JSON Schemas in ``contracts/``: the one source of truth.

The server validates requests with them, builds new call objects from the call
schema's ``default`` keywords, and serves a bundled OpenAPI document made from
them. Tests validate every response against the same files.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs

BASE_URI = "https://synthflow-mock.dev/contracts/"


def _find_contracts_dir() -> Path:
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_contracts", here.parent / "contracts"):
        if (candidate / "openapi.json").is_file():
            return candidate
    raise FileNotFoundError("contracts/ not found beside the package nor inside it")


CONTRACTS_DIR = _find_contracts_dir()


@cache
def load(name: str) -> dict[str, Any]:
    """Return the parsed schema file ``contracts/<name>`` (cached; do not mutate)."""
    with open(CONTRACTS_DIR / name, encoding="utf-8") as f:
        return json.load(f)


def schema_names() -> list[str]:
    return sorted(p.name for p in CONTRACTS_DIR.glob("*.schema.json"))


@cache
def call_template() -> dict[str, Any]:
    """A call object with every property at its schema ``default`` (None where none is given)."""
    props = load("call.schema.json")["properties"]
    # Lifecycle fields (x-lifecycle) appear once the SIP call sets them, not in the prepare answer.
    return {name: copy.deepcopy(spec.get("default")) for name, spec in props.items() if not spec.get("x-lifecycle")}


def _retrieve(uri: str) -> dict[str, Any]:
    if not uri.startswith(BASE_URI):
        raise ValueError(f"unknown schema reference {uri!r}")
    return load(uri[len(BASE_URI):])


@cache
def fast_validator(name: str, allow_extra_fields: bool = False) -> Any:
    """A compiled (Rust) validator for ``name``; used on the server's hot path.

    ``allow_extra_fields`` drops the top-level ``additionalProperties: false`` so
    unknown request fields pass (the ``--allow-extra-fields`` switch).
    """
    schema = copy.deepcopy(load(name))
    if allow_extra_fields:
        schema.pop("additionalProperties", None)
    return jsonschema_rs.validator_for(schema, retriever=_retrieve)


def _component_name(filename: str) -> str:
    stem = filename.removesuffix(".schema.json")
    return "".join(part.capitalize() for part in stem.split("-"))


def _rewrite_refs(node: Any, owner: str) -> Any:
    """Point file references at ``#/components/schemas/...`` and local ones at the owner's copy."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ("$schema", "$id"):
                continue
            if key == "$ref" and isinstance(value, str):
                if value.endswith(".schema.json"):
                    value = f"#/components/schemas/{_component_name(value)}"
                elif value.startswith("#/"):
                    value = f"#/components/schemas/{_component_name(owner)}{value[1:]}"
            out[key] = _rewrite_refs(value, owner)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, owner) for item in node]
    return node


@cache
def openapi_bundle(name: str = "openapi.json") -> dict[str, Any]:
    """An OpenAPI document from ``contracts/`` (the public one, or ``admin-openapi.json``) with every
    schema file inlined under components."""
    doc = _rewrite_refs(load(name), name)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in schema_names():
        schemas[_component_name(name)] = _rewrite_refs(load(name), name)
    return doc
