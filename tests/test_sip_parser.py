"""The SIP parser: RFC 4475-style torture messages, and sipmessage as an independent oracle."""

from __future__ import annotations

import pytest
import sipmessage
from hypothesis import given
from hypothesis import strategies as st

from mock_server.sip.message import SipParseError, parse_datagram, parse_via, split_list, tag_of

CRLF = "\r\n"


def msg(*lines: str, body: str = "") -> bytes:
    return (CRLF.join(lines) + CRLF + CRLF + body).encode()


BASE = [
    "INVITE sip:+15551234567@127.0.0.1:32681 SIP/2.0",
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds",
    "Max-Forwards: 70",
    "To: <sip:+15551234567@127.0.0.1>",
    "From: <sip:+15075785607@10.0.0.1>;tag=1928301774",
    "Call-ID: a84b4c76e66710@pc33.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:caller@10.0.0.1>",
]


def test_wide_range_of_valid_characters_and_whitespace():
    # modelled on RFC 4475 §3.1.1.1 (wsinv): LWS before colons, folding, tabs, mixed case names
    raw = msg(
        "INVITE sip:+15551234567@127.0.0.1 SIP/2.0",
        "TO :",
        " <sip:+15551234567@127.0.0.1> ;   tag    = 1918181833n",
        "from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>",
        "  ;",
        "  tag = 98asjd8",
        "MaX-fOrWaRdS: 0068",
        "Call-ID: wsinv.ndaksdj@192.0.2.1",
        "Content-Length   : 0",
        "cseq: 0009",
        "  INVITE",
        "Via  : SIP  /   2.0",
        " /UDP",
        "    192.0.2.2;rport;branch=390skdjuw",
        "s :",
        "NewFangledHeader:   newfangled value",
        " continued newfangled value",
        "UnknownHeaderWithUnusualValue: ;;,,;;,;",
        "m:\"Quoted string\\\"\\\"\" <sip:jdrosen@example.com> ; newparam =",
        "      newvalue ;",
        "  secondparam ; q = 0.33",
    )
    m = parse_datagram(raw)
    assert m.method == "INVITE"
    assert m.get("call-id") == "wsinv.ndaksdj@192.0.2.1"
    assert m.get("cseq") == "0009 INVITE"
    assert m.get("max-forwards") == "0068"
    assert m.get("newfangledheader") == "newfangled value continued newfangled value"
    via = parse_via(m.get("via"))
    assert (via.transport, via.host, via.branch) == ("UDP", "192.0.2.2", "390skdjuw")
    assert m.get("subject") == "" and m.get("contact").startswith('"Quoted string')


def test_compact_forms_expand():
    raw = msg("OPTIONS sip:a@b SIP/2.0", "v: SIP/2.0/UDP h:1;branch=z9hG4bKa", "f: <sip:a@b>;tag=x",
              "t: <sip:c@d>", "i: cid", "CSeq: 1 OPTIONS", "l: 0", "m: <sip:a@b>", "k: timer", "c: text/plain")
    m = parse_datagram(raw)
    for name in ("via", "from", "to", "call-id", "content-length", "contact", "supported", "content-type"):
        assert m.get(name) is not None, name


def test_list_headers_split_but_x_ei_occurrences_are_kept():
    raw = msg(*BASE, "Via: SIP/2.0/TCP b.example.com;branch=z9hG4bK2, SIP/2.0/UDP c;branch=z9hG4bK3",
              "Contact: \"Doe, John\" <sip:j@d>", "X-EI: S.a;", "x-ei: E.b;", "Content-Length: 0")
    m = parse_datagram(raw)
    assert len(m.get_all("via")) == 3
    assert m.get_all("x-ei") == ["S.a;", "E.b;"]
    assert m.get_all("contact")[1] == '"Doe, John" <sip:j@d>'


def test_split_list_respects_quotes_and_brackets():
    assert split_list('"a, b" <sip:x@y;p=1,2>, <sip:z@w>') == ['"a, b" <sip:x@y;p=1,2>', "<sip:z@w>"]


def test_content_length_cuts_extra_bytes_on_udp():
    m = parse_datagram(msg(*BASE, "Content-Length: 4", body="abcdEXTRA"))
    assert m.body == b"abcd"


def test_no_content_length_on_udp_takes_the_rest():
    assert parse_datagram(msg(*BASE, body="xyz")).body == b"xyz"


def test_bare_lf_is_accepted_and_recorded():
    m = parse_datagram("\n".join([*BASE, "Content-Length: 0", "", ""]).encode())
    assert m.get("call-id") and "bare LF line ends" in m.deviations


def test_utf8_in_display_names():
    m = parse_datagram(msg(*BASE[:4], 'From: "Zoë Ünïcode" <sip:z@x>;tag=9', *BASE[5:], "Content-Length: 0"))
    assert tag_of(m.get("from")) == "9"


@pytest.mark.parametrize("raw, reason", [
    (msg(*BASE, "Content-Length: 50", body="short"), "Content-Length larger than the message"),
    (msg(*BASE, "Content-Length: abc"), "Bad Content-Length"),
    (msg("INVITE  sip:a@b SIP/2.0", *BASE[1:]), "Bad request line"),
    (msg("INVITE sip:a@b", *BASE[1:]), "Bad request line"),
    (msg("INVITE nocolon SIP/2.0", *BASE[1:]), "Bad Request-URI"),
    (msg(*BASE, "Bad Header Without Colon"), "Header line without colon"),
    (msg(*BASE, "Bad Name: x"), "Bad header name"),
    (b"\r\n\r\n", "Empty message"),
    (msg("SIP/2.0 2000 OK", *BASE[1:]), "Bad status line"),
])
def test_unreadable_messages_name_their_problem(raw, reason):
    with pytest.raises(SipParseError) as info:
        parse_datagram(raw)
    assert reason in info.value.reason


@pytest.mark.parametrize("via", ["SIP/2.0 10.0.0.1", "SIP/2.0/UDP", "SIP/2.0/UDP host:port", "HTTP/1.1/TCP a"])
def test_bad_via(via):
    with pytest.raises(SipParseError):
        parse_via(via)


def test_via_ipv6_and_params():
    via = parse_via("SIP/2.0/TCP [::1]:5070;branch=z9hG4bKx;received=::1;rport")
    assert (via.host, via.port, via.branch, via.params["rport"]) == ("::1", 5070, "z9hG4bKx", "")


# --- sipmessage as an oracle --------------------------------------------------------------

# '%' is left out: sipmessage decodes %XX inside tag and branch tokens, while a UAS must compare them
# as sent (RFC 3261 tags are opaque tokens), so the two would rightly differ there.
TOKEN = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-.!*_+`'~"), min_size=1, max_size=12)
NAME_CASE = st.sampled_from([str.lower, str.upper, str.title, lambda s: s])


@st.composite
def messages(draw):
    method = draw(st.sampled_from(["INVITE", "BYE", "OPTIONS", "CANCEL", "ACK"]))
    call_id = draw(TOKEN) + "@" + draw(TOKEN)
    from_tag, branch = draw(TOKEN), "z9hG4bK" + draw(TOKEN)
    to_tag = draw(st.none() | TOKEN)
    cseq = draw(st.integers(min_value=0, max_value=2**31 - 1))
    xeis = draw(st.lists(st.sampled_from(["S.a29407fb-1bf2-4be6-9d1d-f501c3dd9a2b;", "E.crm 1;", "O.+1555;"]),
                         max_size=2))
    body = draw(st.text(alphabet="abc =\r\n", max_size=40))
    compact = draw(st.booleans())
    case = draw(NAME_CASE)
    name = {"via": "v" if compact else "Via", "from": "f" if compact else "From", "to": "t" if compact else "To",
            "call-id": "i" if compact else "Call-ID", "content-length": "l" if compact else "Content-Length"}
    user = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789+", min_size=1, max_size=12))
    lines = [f"{method} sip:{user}@example.com SIP/2.0",
             f"{case(name['via'])}: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}",
             f"{case(name['from'])}: <sip:a@example.com>;tag={from_tag}",
             f"{case(name['to'])}: <sip:b@example.com>" + (f";tag={to_tag}" if to_tag else ""),
             f"{case(name['call-id'])}: {call_id}",
             f"{case('CSeq')}: {cseq} {method}",
             *(f"{case('X-EI')}: {x}" for x in xeis),
             f"{case(name['content-length'])}: {len(body.encode())}"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


@given(messages())
def test_parser_agrees_with_sipmessage(raw):
    ours = parse_datagram(raw)
    oracle = sipmessage.Message.parse(raw)
    assert ours.method == oracle.method
    assert ours.uri == str(oracle.uri)
    assert ours.get("call-id") == oracle.call_id
    number, method = ours.get("cseq").split()
    assert (int(number), method) == (oracle.cseq.sequence, oracle.cseq.method)
    assert tag_of(ours.get("from")) == oracle.from_address.parameters.get("tag")
    assert tag_of(ours.get("to")) == oracle.to_address.parameters.get("tag")
    assert parse_via(ours.get("via")).branch == oracle.via[0].parameters.get("branch")
    assert ours.get_all("x-ei") == oracle.headers.getlist("X-EI")
    assert ours.body == oracle.body
