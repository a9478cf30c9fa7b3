"""The PureData patches, run in real headless Pd, against a real OSC server.

A small harness patch (written here) instantiates firmware/pd_patches/pimodule_panel.pd with test
ports, lets the test move its sliders through FUDI (`netreceive -u`), and forwards everything the
panel receives from the daemon (its `pm-in` send, after `oscparse`) back to the test as FUDI.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from pimodule.core.controls import DDSP_CONTROLS
from pimodule.core.params import ParamSpec, ParamTable
from pimodule.device.io.controller import MemoryController
from pimodule.device.io.osc import OscConfig, OscServer
from pimodule.device.jackdummy import stop_process

PATCHES = Path(__file__).resolve().parents[3] / "firmware" / "pd_patches"
STUBS = Path(__file__).resolve().parent / "pd_stubs"  # abstractions standing in for the Tedium externals
pytestmark = [pytest.mark.pd, pytest.mark.skipif(shutil.which("pd") is None, reason="needs pd")]

HARNESS = """#N canvas 0 50 600 400 10;
#X obj 10 10 pimodule_panel {dport} {lport};
#X obj 10 40 netreceive -u {ctrl};
#X obj 10 65 route slider mode model gain mute controls pick;
#X obj 10 90 route pitch_shift_semitones loudness_offset_db harmonic_gain_db noise_gain_db;
#X obj 10 120 s pm-pitch_shift_semitones;
#X obj 10 145 s pm-loudness_offset_db;
#X obj 10 170 s pm-harmonic_gain_db;
#X obj 10 195 s pm-noise_gain_db;
#X obj 200 120 s pm-mode;
#X obj 200 145 s pm-model;
#X obj 200 170 s pm-gain;
#X obj 200 195 s pm-mute;
#X obj 200 220 s pm-controls;
#X obj 300 10 r pm-in;
#X obj 300 35 list prepend send;
#X obj 300 60 list trim;
#X obj 300 85 netsend -u;
#X obj 400 10 loadbang;
#X msg 400 35 connect localhost {fwd};
#X obj 200 245 s pm-model-index;
#X connect 1 0 2 0;
#X connect 2 0 3 0;
#X connect 3 0 4 0;
#X connect 3 1 5 0;
#X connect 3 2 6 0;
#X connect 3 3 7 0;
#X connect 2 1 8 0;
#X connect 2 2 9 0;
#X connect 2 3 10 0;
#X connect 2 4 11 0;
#X connect 2 5 12 0;
#X connect 13 0 14 0;
#X connect 14 0 15 0;
#X connect 15 0 16 0;
#X connect 17 0 18 0;
#X connect 18 0 16 0;
#X connect 2 6 19 0;
"""


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PdRig:
    def __init__(self, tmp_path: Path, harness_text: str = HARNESS):
        crusher = ParamTable([ParamSpec("drive_db", "dB", 0.0, 30.0, 6.0)])
        self.ctl = MemoryController(DDSP_CONTROLS, models={"violin": DDSP_CONTROLS, "crusher": crusher})
        self.server = OscServer(self.ctl, OscConfig(port=0))
        self.fwd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.fwd.bind(("127.0.0.1", 0))
        self.fwd.settimeout(0.1)
        self.ctrl_port = _free_udp_port()
        self.listen_port = _free_udp_port()
        self.ctrl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.lines: list[str] = []
        harness = tmp_path / "harness.pd"
        harness.write_text(
            harness_text.format(
                dport=self.server.port, lport=self.listen_port, ctrl=self.ctrl_port, fwd=self.fwd.getsockname()[1]
            )
        )
        self.log_path = tmp_path / "pd.log"
        self.log = self.log_path.open("w")
        self.server.start()
        self.proc = subprocess.Popen(
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
                "-path",
                str(STUBS),
                "-open",
                str(harness),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def close(self) -> None:
        stop_process(self.proc)
        self.server.stop()
        self.fwd.close()
        self.ctrl.close()
        self.log.close()

    def pump(self) -> None:
        """Collect what Pd forwarded (FUDI lines)."""
        try:
            while True:
                data = self.fwd.recvfrom(65536)[0].decode()
                self.lines += [ln.strip() for ln in data.split(";") if ln.strip()]
        except TimeoutError:
            pass

    def drive(self, fudi: str, until, timeout_s: float = 20.0, resend_s: float = 0.1) -> None:
        """Send a FUDI message to the harness, resending every `resend_s` until `until()` holds."""
        end = time.monotonic() + timeout_s
        next_send = 0.0
        while time.monotonic() < end:
            if fudi and time.monotonic() >= next_send:
                self.ctrl.sendto((fudi + ";\n").encode(), ("127.0.0.1", self.ctrl_port))
                next_send = time.monotonic() + resend_s
            self.pump()
            if until():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out on {fudi!r}; Pd forwarded {self.lines[-10:]}")

    def pd_errors(self) -> list[str]:
        """Lines where Pd complained (couldn't create, no method, bad connection ...)."""
        text = self.log_path.read_text()
        return [ln for ln in text.splitlines() if "error" in ln or "couldn't" in ln or "failed" in ln]

    def saw(self, prefix: str) -> bool:
        return any(ln.startswith(prefix) for ln in self.lines)


@pytest.fixture()
def rig(tmp_path):
    r = PdRig(tmp_path)
    yield r
    r.close()


def test_panel_controls_the_daemon_and_shows_status(rig):
    srv, ctl = rig.server, rig.ctl
    # Pd registers its reply port and subscribes to status on its own (loadbang + keep-alive).
    rig.drive("", lambda: ("127.0.0.1", rig.listen_port) in srv.subscribers)
    # Status (and the control table it asks for) reach Pd, parsed by oscparse.
    rig.drive("", lambda: rig.saw("pimodule status model violin") and rig.saw("pimodule status mode synth"))
    rig.drive("", lambda: rig.saw("pimodule controls spec noise_gain_db dB -40 12 0 lin"))
    # Sliders, mode, gain, mute.
    rig.drive("slider noise_gain_db -12", lambda: ctl.values["noise_gain_db"] == -12.0)
    rig.drive("slider pitch_shift_semitones 7", lambda: ctl.values["pitch_shift_semitones"] == 7.0)
    rig.drive("mode fx", lambda: ctl.mode == "fx" and rig.saw("pimodule mode fx"))
    rig.drive("gain -6", lambda: ctl.gain_db == -6.0)
    rig.drive("mute 1", lambda: ctl.mute and rig.saw("pimodule mute 1"))
    # Errors come back to Pd.
    rig.drive("model ghost", lambda: rig.saw("pimodule error /pimodule/model/load"))
    # A model swap relabels the first slider from the new control table; it then drives drive_db.
    rig.drive("model crusher", lambda: ctl.model == "crusher" and rig.saw("pimodule controls spec drive_db"))
    rig.drive("slider pitch_shift_semitones 20", lambda: ctl.values.get("drive_db") == 20.0)
    # The model list reached Pd; picking entry 1 of it ("violin") loads that model.
    assert rig.saw("pimodule models crusher violin")
    # `pimodule flash` installed another model: the panel asks for the list again on its own.
    ctl._models["cello"] = DDSP_CONTROLS
    srv.broadcast("/pimodule/model/installed", "cello", "ddsp")
    rig.drive("", lambda: rig.saw("pimodule models cello crusher violin"))
    rig.drive("pick 2", lambda: ctl.model == "violin")
    assert srv.counters.refused_host == 0
    assert rig.proc.poll() is None
    assert rig.pd_errors() == []


TEDIUM_HARNESS = """#N canvas 0 50 600 400 10;
#X obj 10 10 pimodule_tedium {dport};
#X obj 10 40 netreceive -u {ctrl};
#X obj 10 65 route adc gpio;
#X obj 10 90 route 0 1 2 3 4 5;
#X obj 10 120 s tedium-stub-0;
#X obj 10 145 s tedium-stub-1;
#X obj 10 170 s tedium-stub-2;
#X obj 10 195 s tedium-stub-3;
#X obj 10 220 s tedium-stub-4;
#X obj 10 245 s tedium-stub-5;
#X obj 200 90 route 23 25;
#X obj 200 120 s tedium-stub-gpio-23;
#X obj 200 145 s tedium-stub-gpio-25;
#X text 300 10 unused {lport} {fwd};
#X connect 1 0 2 0;
#X connect 2 0 3 0;
#X connect 3 0 4 0;
#X connect 3 1 5 0;
#X connect 3 2 6 0;
#X connect 3 3 7 0;
#X connect 3 4 8 0;
#X connect 3 5 9 0;
#X connect 2 1 10 0;
#X connect 10 0 11 0;
#X connect 10 1 12 0;
"""


@pytest.fixture()
def tedium_rig(tmp_path):
    r = PdRig(tmp_path, TEDIUM_HARNESS)
    yield r
    r.close()


def test_tedium_patch_sends_cv_pots_and_buttons(tedium_rig):
    rig, ctl = tedium_rig, tedium_rig.ctl
    # ADC values as the external gives them (already inverted): 2400 -> +1 V, 3000 -> +2.5 V
    rig.drive("adc 0 2400", lambda: ctl.cv["cv1"] == pytest.approx(1.0))
    rig.drive("adc 1 0", lambda: ctl.cv["cv2"] == pytest.approx(-5.0))
    rig.drive(
        "adc 3 3000",
        lambda: ctl.values["pitch_shift_semitones"] == pytest.approx(12.0) and ctl.cv["pot1"] == pytest.approx(2.5),
    )
    rig.drive("adc 5 4000", lambda: ctl.values["noise_gain_db"] == pytest.approx(12.0))
    rig.drive("adc 4 9999", lambda: ctl.values["harmonic_gain_db"] == pytest.approx(12.0))  # clipped
    mute_before = ctl.mute
    rig.drive("gpio 23", lambda: ctl.mute != mute_before, resend_s=3.0)
    rig.drive("gpio 25", lambda: ctl.mode != "synth", resend_s=3.0)
    assert ctl.mode == "transfer"
    assert rig.pd_errors() == []
