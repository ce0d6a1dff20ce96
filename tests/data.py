"""Test data every suite shares: one valid prepare_inbound body and one bearer header."""

from __future__ import annotations

VALID_BODY = {
    "from_number": "+15075785607",
    "to_number": "+15551234567",
    "model_id": "1744274157255x646200691892837600",
    "workspace_id": "ws_1",
    "custom_variables": {"name": "erfan", "job": "backend"},
}
AUTH = {"Authorization": "Bearer test-token"}


def write_stereo_tone(path, *, rate: int, hz: float, amplitude: int, seconds: float) -> None:
    """A 16-bit stereo WAV of one sine tone (both channels the same): audio the mock must convert."""
    import array
    import math
    import wave

    frames = array.array("h")
    for i in range(int(rate * seconds)):
        sample = int(amplitude * math.sin(2 * math.pi * hz * i / rate))
        frames.extend((sample, sample))
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(frames.tobytes())
