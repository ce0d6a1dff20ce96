"""After 200 OK: the agent's media. RTP per answered call (``session.py``) on ports from a range
(``ports.py``), G.711 (``g711.py``), RTP packets, telephone-events and RFC 3550 statistics
(``rtp.py``), the greeting (``audio.py``) and the caller's recording as WAV."""
