"""G.711 µ-law (PCMU) and A-law (PCMA), ITU-T G.711, in pure Python with lookup tables.

Decoding is a 256-entry table per law. Encoding is only done for the greeting, once per
process, so it favours clarity over speed.
"""

from __future__ import annotations

import array
from functools import cache

SILENCE = {0: 0xFF, 8: 0xD5}
"""The payload byte of digital silence per RTP payload type (PCMU 0, PCMA 8)."""


def _ulaw_to_linear(byte: int) -> int:
    byte = ~byte & 0xFF
    sign, exponent, mantissa = byte & 0x80, (byte >> 4) & 0x07, byte & 0x0F
    sample = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -sample if sign else sample


def _alaw_to_linear(byte: int) -> int:
    byte ^= 0x55
    sign, exponent, mantissa = byte & 0x80, (byte >> 4) & 0x07, byte & 0x0F
    sample = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return sample if sign else -sample


@cache
def decode_table(payload_type: int) -> tuple[int, ...]:
    law = _ulaw_to_linear if payload_type == 0 else _alaw_to_linear
    return tuple(law(b) for b in range(256))


def decode(payload: bytes, payload_type: int) -> array.array:
    """G.711 bytes to signed 16-bit samples."""
    table = decode_table(payload_type)
    return array.array("h", (table[b] for b in payload))


def _linear_to_ulaw(sample: int) -> int:
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    sample = min(abs(sample), clip) + bias
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _linear_to_alaw(sample: int) -> int:
    sign = 0x80 if sample >= 0 else 0
    sample = min(abs(sample), 32767) >> 3
    if sample < 32:
        exponent, mantissa = 0, sample >> 1
    else:
        exponent = sample.bit_length() - 5
        mantissa = (sample >> exponent) & 0x0F
    return (sign | (exponent << 4) | mantissa) ^ 0x55


def encode(samples: array.array | list[int], payload_type: int) -> bytes:
    """Signed 16-bit samples to G.711 bytes."""
    law = _linear_to_ulaw if payload_type == 0 else _linear_to_alaw
    return bytes(law(s) for s in samples)


@cache
def _byte_tables(payload_type: int) -> tuple[bytes, bytes]:
    table = decode_table(payload_type)
    return bytes(s & 0xFF for s in table), bytes((s >> 8) & 0xFF for s in table)


def decode_to_pcm16le(payload: bytes, payload_type: int) -> bytes:
    """G.711 bytes to little-endian 16-bit PCM, at C speed (two ``bytes.translate`` passes)."""
    low, high = _byte_tables(payload_type)
    out = bytearray(2 * len(payload))
    out[0::2] = payload.translate(low)
    out[1::2] = payload.translate(high)
    return bytes(out)
