"""firmware/pd_patches/pimodule_fx.pd in real headless Pd: fx estimates from the daemon reach
its displays (and its `pm-fx` send), its matching toggle sends /pimodule/fx/match, its
estimator choice /pimodule/fx/model, its hold toggle /pimodule/fx/hold and `pm-fx-set`
/pimodule/fx/set."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from pimodule.device.io.osc_client import decode, encode
from pimodule.device.jackdummy import stop_process

PATCHES = Path(__file__).resolve().parents[3] / "firmware" / "pd_patches"
pytestmark = [pytest.mark.pd, pytest.mark.skipif(shutil.which("pd") is None, reason="needs pd")]

HARNESS = """#N canvas 0 50 600 400 10;
#X obj 10 10 pimodule_fx {dport};
#X obj 10 40 netreceive -u -b {inport};
#X obj 10 65 oscparse;
#X obj 10 90 list trim;
#X obj 10 115 s pm-in;
#X obj 200 40 netreceive -u {ctrl};
#X obj 200 65 s pm-fx-match;
#X obj 300 10 r pm-fx;
#X obj 300 35 list prepend send;
#X obj 300 60 list trim;
#X obj 300 85 netsend -u;
#X obj 400 10 loadbang;
#X msg 400 35 connect localhost {fwd};
#X connect 1 0 2 0;
#X connect 2 0 3 0;
#X connect 3 0 4 0;
#X connect 5 0 6 0;
#X connect 7 0 8 0;
#X connect 8 0 9 0;
#X connect 9 0 10 0;
#X connect 11 0 12 0;
#X connect 12 0 10 0;
#X obj 200 140 netreceive -u {ctrl2};
#X obj 200 165 s pm-fx-model;
#X connect 13 0 14 0;
#X obj 200 190 netreceive -u {ctrl3};
#X obj 200 215 s pm-fx-hold;
#X connect 15 0 16 0;
#X obj 200 240 netreceive -u {ctrl4};
#X obj 200 265 s pm-fx-set;
#X connect 17 0 18 0;
"""


def _udp(timeout_s: float = 0.1) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(timeout_s)
    return s


def _port() -> int:
    with _udp() as s:
        return s.getsockname()[1]


def _daemon_gets(
    daemon: socket.socket, sender: socket.socket, payload: bytes, port: int, address: str, timeout_s: float = 20.0
) -> list | None:
    """Send ``payload`` (FUDP text) to the harness on ``port`` until the fake daemon receives an
    OSC message at ``address``; its arguments, or None."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        sender.sendto(payload, ("127.0.0.1", port))
        try:
            msg = decode(daemon.recvfrom(65536)[0])[0]
        except TimeoutError:
            continue
        if msg[0] == address:
            return msg[1]
    return None


def test_fx_patch_shows_estimates_and_sends_matching(tmp_path):
    daemon, fwd, sender = _udp(), _udp(), _udp()
    inport, ctrl, ctrl2, ctrl3, ctrl4 = _port(), _port(), _port(), _port(), _port()
    harness = tmp_path / "fx_harness.pd"
    harness.write_text(
        HARNESS.format(
            dport=daemon.getsockname()[1],
            inport=inport,
            ctrl=ctrl,
            ctrl2=ctrl2,
            ctrl3=ctrl3,
            ctrl4=ctrl4,
            fwd=fwd.getsockname()[1],
        )
    )
    log_path = tmp_path / "pd.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                "pd",
                "-nogui",
                "-nosound",
                "-nomidi",
                "-nrt",
                "-sleepgrain",
                "0.5",
                "-stderr",
                "-path",
                str(PATCHES),
                "-open",
                str(harness),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            lines: list[str] = []
            end = time.monotonic() + 20
            while time.monotonic() < end and not any(ln.startswith("distortion probability 0.9") for ln in lines):
                sender.sendto(encode("/pimodule/fx/distortion/probability", 0.9), ("127.0.0.1", inport))
                try:
                    lines += [x.strip() for x in fwd.recvfrom(65536)[0].decode().split(";") if x.strip()]
                except TimeoutError:
                    pass
            assert any(ln.startswith("distortion probability 0.9") for ln in lines), lines[-5:]
            sender.sendto(encode("/pimodule/fx/compressor/threshold_db", -18.5), ("127.0.0.1", inport))
            assert _daemon_gets(daemon, sender, b"1;\n", ctrl, "/pimodule/fx/match") == [1]
            assert _daemon_gets(daemon, sender, b"fx-dry;\n", ctrl2, "/pimodule/fx/model") == ["fx-dry"]
            assert _daemon_gets(daemon, sender, b"1;\n", ctrl3, "/pimodule/fx/hold") == [1]
            assert _daemon_gets(daemon, sender, b"reverb mix_pct 30;\n", ctrl4, "/pimodule/fx/set") == [
                "reverb",
                "mix_pct",
                30.0,
            ]
            assert _daemon_gets(daemon, sender, b"distortion mode hard;\n", ctrl4, "/pimodule/fx/set") == [
                "distortion",
                "mode",
                "hard",
            ]
        finally:
            stop_process(proc)
            for s in (daemon, fwd, sender):
                s.close()
    errors = [ln for ln in log_path.read_text().splitlines() if "error" in ln or "couldn't" in ln]
    assert not errors, errors
