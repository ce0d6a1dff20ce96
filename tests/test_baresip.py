"""A second, independent user agent (baresip, Debian's baresip-core, run headless) places a call to the
live mock and hears the agent: its decoded audio (dumped by baresip's sndfile module) is not silent."""

from __future__ import annotations

import array
import math
import subprocess
from pathlib import Path

import pytest

from mock_server.media import audio
from mock_server.testing import start_server
from tests.binaries import require

pytestmark = pytest.mark.live

CONFIG = """poll_method\t\tepoll
sip_listen\t\t127.0.0.1:0
audio_player\t\taufile,{dump}/player.wav
audio_source\t\taufile,{caller}
audio_alert\t\taufile,/dev/null
module_path\t\t/usr/lib/baresip/modules
module\t\t\tg711.so
module\t\t\taufile.so
module\t\t\tsndfile.so
module_app\t\taccount.so
module_app\t\tmenu.so
snd_path\t\t{dump}
"""


def test_baresip_calls_the_mock_and_hears_a_greeting(tmp_path):
    baresip = require("baresip", "baresip-core")
    conf, dump = tmp_path / "conf", tmp_path / "dump"
    conf.mkdir()
    dump.mkdir()
    caller = tmp_path / "caller.wav"
    audio.write_wav(caller, array.array("h", [int(6000 * math.sin(2 * math.pi * 300 * i / 8000))
                                              for i in range(8000 * 4)]))
    (conf / "config").write_text(CONFIG.format(dump=dump, caller=caller))
    (conf / "accounts").write_text("<sip:caller@127.0.0.1>;regint=0\n")
    (conf / "contacts").write_text("")
    server = start_server("--quiet", "--sip-t1-ms", "100")
    try:
        run = subprocess.run([baresip, "-f", str(conf), "-e", f"/dial sip:+15551234567@127.0.0.1:{server.sip_port}",
                              "-t", "4"], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    finally:
        server.close()
    out = run.stdout
    assert "Call established" in out, out[-3000:]
    assert "incoming rtp for 'audio' established" in out, out[-3000:]
    decoded = next(Path(dump).glob("dump-*-dec.wav"))
    heard = audio.read_wav(decoded)
    assert len(heard) > 8000  # more than a second of the agent
    assert audio.rms(heard[:12800]) > 1000  # the greeting's 1.6 s: not silence
