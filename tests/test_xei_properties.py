"""Hypothesis properties of the X-EI grammar (mock_server.xei) and its JSON Schema."""

from __future__ import annotations

import re
import uuid

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from mock_server import xei
from tests.contract import validator

GRAMMAR = re.compile(r"(?:[SEO]\.[^;]+;)+")
PREFIX = st.sampled_from("SEO")
# Any text allowed in a token value: non-empty, no ';', no CR/LF/NUL, and not reading as escaped twice.
VALUE = st.text(min_size=1, max_size=40).filter(
    lambda v: not (set(v) & set(";\r\n\x00")) and "%3b" not in v.lower())
TOKENS = st.lists(st.tuples(PREFIX, VALUE), min_size=1, max_size=3, unique_by=lambda t: t[0])
# Text biased towards the grammar's alphabet, so generated headers are often near-valid.
NEAR = st.text(alphabet=st.sampled_from([*list("SEOseoZ.;%3Bb -_x+ \t"), "a", "1", "\n"]), max_size=30)


def schema_accepts(value: str) -> bool:
    return validator("x-ei.schema.json").is_valid(value.strip(xei.LWS))


@given(TOKENS)
def test_format_then_parse_round_trips(tokens):
    header = xei.format_tokens(tokens)
    result = xei.parse(header)
    assert result.ok, result.diagnostics
    assert [(t.prefix, t.value) for t in result.tokens] == tokens


SPACE = st.text(alphabet=" \t", max_size=2)
ACCEPTABLE = st.one_of(
    st.tuples(SPACE, TOKENS.map(xei.format_tokens), SPACE).map("".join),
    # lenient-only shapes: lowercase prefix, no final ';', spaces between tokens
    TOKENS.map(lambda ts: " ".join(f"{p.lower()}.{v};" for p, v in ts)[:-1]),
    NEAR,
)


@given(ACCEPTABLE, st.booleans())
def test_parse_format_parse_is_stable(value, strict):
    first = xei.parse(value, strict=strict)
    assume(first.ok)
    again = xei.parse(xei.format_tokens(first.tokens), strict=True)
    assert again.ok and again.tokens == first.tokens


@given(PREFIX, st.text(max_size=20), st.text(max_size=20))
def test_values_with_semicolon_or_empty_cannot_be_formatted(prefix, left, right):
    bad_value = f"{left};{right}"
    with pytest.raises(xei.XeiError):
        xei.format_tokens([(prefix, bad_value)])
    with pytest.raises(xei.XeiError):
        xei.format_tokens([(prefix, "")])


@given(PREFIX, VALUE, VALUE)
def test_raw_semicolon_in_a_value_is_named(prefix, left, right):
    assume(not (len(right) >= 2 and right[1] == ".") and not right[:1].isspace())
    result = xei.parse(f"{prefix}.{left};{right};")
    assert not result.ok
    assert "raw-semicolon" in {d.code for d in result.errors}


@given(PREFIX)
def test_empty_value_is_named(prefix):
    assert [d.code for d in xei.parse(f"{prefix}.;").errors] == ["empty-value"]


@given(st.one_of(st.text(max_size=300), NEAR, st.binary(max_size=50), st.integers(), st.none(),
                 st.lists(st.text(max_size=20), max_size=3)))
def test_parsing_anything_raises_only_xei_error(value):
    try:
        result = xei.parse(value)
    except xei.XeiError:
        return
    assert isinstance(result.ok, bool)
    for d in result.diagnostics:
        assert d.code and d.message and d.hint and d.severity in ("error", "warning")


@given(st.one_of(NEAR, st.text(max_size=60)))
@example("S.a;S.b;")
@example("S.a%3B;")
@example(" S.a; ")
@example("S.a;\n")
@example("S.a\nb;")
@example("S.S.x;")
def test_strict_equals_the_grammar_apart_from_documented_divergences(value):
    strict_ok = xei.parse(value, strict=True).ok
    trimmed = value.strip(xei.LWS)
    grammar_ok = GRAMMAR.fullmatch(trimmed) is not None
    duplicated = grammar_ok and len({t[0] for t in re.findall(r"([SEO])\.[^;]+;", trimmed)}) < len(
        re.findall(r"[SEO]\.[^;]+;", trimmed))
    escaped_twice = "%3b" in trimmed.lower()
    control = bool(set(trimmed) & set("\r\n\x00"))
    # Divergences: surrounding whitespace is trimmed; duplicates, a leftover %3B and CR/LF/NUL are rejected.
    assert strict_ok == (grammar_ok and not duplicated and not escaped_twice and not control)
    if value == trimmed:
        assert GRAMMAR.fullmatch(value) is not None or not strict_ok


@given(st.one_of(NEAR, st.text(max_size=60), TOKENS.map(xei.format_tokens)))
@example("S.a;S.b;")
@example("S.S.x;")
@example("S.a%3b;")
@example("S.a\rb;")
@example("E.x;S.y;O.z;")
def test_json_schema_accepts_exactly_what_strict_mode_accepts(value):
    assert schema_accepts(value) == xei.parse(value, strict=True).ok


@given(TOKENS)
def test_uri_encode_then_twilio_decode_round_trips(tokens):
    header = xei.format_tokens(tokens)
    uri = xei.build_sip_uri("+15551234567", xei=header)
    assert ";" not in uri.partition("?")[2]  # every ';' was escaped as %3B
    assert xei.uri_headers(uri) == [("X-EI", header)]


@given(st.uuids(version=4))
def test_a_prepared_call_id_parses_without_warnings(call_id):
    result = xei.parse(f"S.{call_id};")
    assert result.ok and not result.warnings and result.call_id == str(call_id)


def test_non_uuid_call_id_is_only_a_warning():
    result = xei.parse("S.abc123;")
    assert result.ok and [d.code for d in result.warnings] == ["s-not-uuid"]


@pytest.mark.parametrize("value, code", [
    ("S.abc", "missing-terminator"),
    ("S.;", "empty-value"),
    ("s.abc;", "lowercase-prefix"),
    ("Z.abc;", "unknown-prefix"),
    ("S.a;S.b;", "duplicate-prefix"),
    ("S.a; E.b;", "whitespace-between-tokens"),
    ("S.abc%3B", "escaped-twice"),
    ("S.ab;c;", "raw-semicolon"),
    ("abc;", "missing-prefix"),
    ("", "empty-header"),
    ("S.a;;", "empty-token"),
    ("S.a\r\nVia: x;", "control-character"),
])
def test_each_mistake_has_its_named_diagnostic(value, code):
    result = xei.parse(value)
    assert code in {d.code for d in result.errors}
    assert result.reason().startswith("Invalid X-EI: ")


def test_more_than_one_header_is_named():
    result = xei.parse([f"S.{uuid.uuid4()};", "E.crm;"])
    assert [d.code for d in result.errors] == ["multiple-headers"]
    assert [t.prefix for t in result.tokens] == ["S", "E"]


@pytest.mark.parametrize("value, code", [
    ("S.abc", "missing-terminator"),
    ("s.abc;", "lowercase-prefix"),
    ("S.a; E.b;", "whitespace-between-tokens"),
])
def test_lenient_mode_accepts_forgivable_mistakes_with_a_warning(value, code):
    result = xei.parse(value, strict=False)
    assert result.ok and code in {d.code for d in result.warnings}
    assert result.tokens[0].prefix == "S"


@pytest.mark.parametrize("value", ["S.a;S.b;", "Z.x;", "S.;", "S.abc%3B;"])
def test_lenient_mode_still_rejects_real_errors(value):
    assert not xei.parse(value, strict=False).ok


def test_parse_strict_raises_with_diagnostics():
    with pytest.raises(xei.XeiError) as info:
        xei.parse_strict("S.abc")
    assert info.value.diagnostics[0].code == "missing-terminator"


def test_overlong_values_are_an_error_and_agree_with_the_schema():
    value = "S." + "a" * xei.MAX_VALUE_LENGTH + ";"
    result = xei.parse(value)
    assert "too-long" in {d.code for d in result.errors}
    assert not schema_accepts(value)
    at_limit = "S." + "a" * (xei.MAX_VALUE_LENGTH - 3) + ";"
    assert xei.parse(at_limit).ok and schema_accepts(at_limit)
