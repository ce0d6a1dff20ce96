"""The agent's voice: a WAV file (the greeting shipped with the package, or ``--agent-audio``) as
8 kHz mono samples, and the caller's recording written back as WAV.

Any common WAV converts: 8 to 48 kHz, mono or stereo, 8/16/24/32-bit PCM (mixed down and
resampled linearly: a test tone, not a studio).
"""

from __future__ import annotations

import array
import math
import sys
import wave
from functools import cache
from importlib import resources
from pathlib import Path

RATE = 8000
MAX_SECONDS = 60
"""Longest greeting read (longer files are cut)."""


class AudioError(ValueError):
    pass


def _samples(raw: bytes, width: int) -> list[int]:
    if width == 1:  # unsigned 8-bit
        return [(b - 128) << 8 for b in raw]
    if width == 2:
        data = array.array("h", raw)
    elif width == 3:
        return [int.from_bytes(raw[i:i + 3], "little", signed=True) >> 8 for i in range(0, len(raw) - 2, 3)]
    elif width == 4:
        data = array.array("i", raw)
        if sys.byteorder == "big":
            data.byteswap()
        return [s >> 16 for s in data]
    else:
        raise AudioError(f"{8 * width}-bit samples are not supported")
    if sys.byteorder == "big":
        data.byteswap()
    return list(data)


def read_wav(path: str | Path) -> array.array:
    """The file as 8 kHz mono signed 16-bit samples."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(min(wav.getnframes(), rate * MAX_SECONDS))
    except (wave.Error, EOFError, OSError) as exc:
        raise AudioError(f"{path}: not a PCM WAV file this mock can read ({exc})") from None
    if not 8000 <= rate <= 48000:
        raise AudioError(f"{path}: {rate} Hz; use 8 to 48 kHz")
    samples = _samples(frames, width)
    if channels > 1:
        samples = [sum(samples[i:i + channels]) // channels for i in range(0, len(samples), channels)]
    if rate != RATE:
        step = rate / RATE
        count = int(len(samples) / step)
        samples = [samples[min(int(i * step), len(samples) - 1)] for i in range(count)]
    return array.array("h", samples)


def write_wav(path: str | Path, samples: array.array) -> None:
    data = array.array("h", samples)
    if sys.byteorder == "big":
        data.byteswap()
    write_pcm16(path, data.tobytes())


def write_pcm16(path: str | Path, pcm: bytes) -> None:
    """8 kHz mono little-endian 16-bit PCM as a WAV file."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm)


def rms(samples: array.array) -> float:
    """Loudness: the root mean square of the samples (0 for silence)."""
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


@cache
def greeting() -> array.array:
    """The greeting shipped with the package."""
    with resources.as_file(resources.files(__package__).joinpath("greeting.wav")) as path:
        return read_wav(path)
