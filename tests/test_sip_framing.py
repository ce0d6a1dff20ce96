"""Stream framing alone: bytes in, events out, in any chunking."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mock_server.sip.framing import Frame, Ping, StreamFramer, Unframeable


def message(n: int, body: bytes = b"") -> bytes:
    return (f"OPTIONS sip:a@x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK{n}\r\nCall-ID: {n}\r\n"
            f"CSeq: {n} OPTIONS\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def test_two_messages_in_one_read_and_a_body_split_across_reads():
    framer = StreamFramer(65535)
    first, second = message(1), message(2, b"hello")
    events = framer.feed(first + second[:-3])
    assert [e.raw for e in events] == [first]
    events = framer.feed(second[-3:])
    assert len(events) == 1 and isinstance(events[0], Frame)
    assert events[0].message.body == b"hello" and events[0].message.get("call-id") == "2"


def test_crlf_keepalive_ping_and_stray_crlfs():
    framer = StreamFramer(65535)
    assert framer.feed(b"\r\n\r\n") == [Ping()]
    events = framer.feed(b"\r\n" + message(3))
    assert [type(e) for e in events] == [Frame]


def test_missing_content_length_breaks_the_stream_and_asks_for_400():
    framer = StreamFramer(65535)
    events = framer.feed(b"OPTIONS sip:a@x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\n\r\n" + message(4))
    assert len(events) == 1 and isinstance(events[0], Unframeable)
    assert events[0].code == 400 and "Content-Length" in events[0].reason
    assert framer.feed(message(5)) == []  # a broken stream takes no more


def test_oversized_content_length_asks_for_513():
    framer = StreamFramer(100)
    (event,) = framer.feed(message(6, b"x" * 200))
    assert isinstance(event, Unframeable) and event.code == 513


def test_an_endless_header_block_is_cut_off_without_an_answer():
    framer = StreamFramer(65535, max_head=1024)
    (event,) = framer.feed(b"OPTIONS sip:a@x SIP/2.0\r\n" + b"X-Pad: y\r\n" * 200)
    assert isinstance(event, Unframeable) and event.code == 0 and "no end" in event.close_reason


@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=30))
def test_any_chunking_gives_the_same_messages(cuts):
    stream = b"".join(message(n, b"b" * n) for n in range(1, 6))
    framer, got, at = StreamFramer(65535), [], 0
    for cut in cuts:
        got += framer.feed(stream[at:at + cut])
        at += cut
    got += framer.feed(stream[at:])
    assert [e.message.get("call-id") for e in got] == ["1", "2", "3", "4", "5"]
