"""The PureData patches in real headless Pd (``pd -nogui``), against the real OSC server (an
in-memory controller) and against the real daemon: messages flow both ways, and what the panel
*shows* is read back from its widgets (``pm-dump``: sliders and radios output their value on a
bang) — sliders at the daemon's values and ranges, the model menu marking the model that plays.

The harness (pimodule.device.io.pd_rig.harness) forwards ``<receive name> <message>`` FUDI lines
from the test into Pd and sends ``pm-in`` / ``pm-shown`` back to the test.
"""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from pimodule.core.controls import DDSP_CONTROLS
from pimodule.core.params import ParamSpec, ParamTable
from pimodule.device.io import pd_gen, pd_rig
from pimodule.device.io.controller import MemoryController
from pimodule.device.io.osc import OscConfig, OscServer
from pimodule.device.io.osc_client import OscClient
from pimodule.device.io.pd_rig import PdRig, free_udp_port

pytestmark = [pytest.mark.pd, pytest.mark.skipif(shutil.which("pd") is None, reason="needs pd")]
STUBS = pd_rig.PATCH_DIR.parents[1] / "tests" / "device" / "io" / "pd_stubs"
CRUSHER = ParamTable([ParamSpec("drive_db", "dB", 0.0, 30.0, 6.0)])


def test_committed_patches_are_the_generated_ones():
    assert pd_gen.main(["--check"]) == 0


@pytest.fixture()
def served():
    ctl = MemoryController(DDSP_CONTROLS, models={"violin": DDSP_CONTROLS, "crusher": CRUSHER})
    srv = OscServer(ctl, OscConfig(port=0))
    srv.start()
    yield ctl, srv
    srv.stop()


@pytest.fixture()
def panel(tmp_path, served):
    ctl, srv = served
    lport = free_udp_port()
    rig = PdRig(tmp_path, [f"#X obj 10 10 pimodule_panel 127.0.0.1 {srv.port} {lport};"])
    rig.listen_port = lport
    yield rig, ctl, srv
    rig.close()


def _slider(shown, row):
    label, value = shown[f"slider {row}"]
    return label, float(value)


def test_panel_follows_the_daemon_and_controls_it(panel):
    rig, ctl, srv = panel
    # it registers its reply port and subscribes on its own (loadbang, then every 2 s)
    rig.drive("", lambda: ("127.0.0.1", rig.listen_port) in srv.subscribers)
    # it asks for the control table and labels and ranges its rows from it
    shown = rig.wait_shown(
        lambda s: _slider(s, 0)[0] == "pitch_shift_semitones" and s["range 3"] == ["-40", "12"] and s["model"] == ["1"]
    )
    assert [_slider(shown, i)[0] for i in range(4)] == list(DDSP_CONTROLS.names)
    assert shown["range 0"] == ["-24", "24"] and shown["range 1"] == ["-20", "20"]
    assert _slider(shown, 4)[0] == _slider(shown, 5)[0] == "-none-"  # no fifth control: unused rows
    # sliders at the daemon's values, not at their minimum
    assert all(abs(_slider(shown, i)[1]) < 0.01 for i in range(4))
    assert abs(float(shown["gain"][0])) < 0.01 and shown["mute"] == ["0"]
    assert shown["mode"] == ["0"] and shown["model"] == ["1"]  # synth; models [crusher, violin]: violin plays
    # the daemon changes (another client, the pots...): the panel follows
    ctl.set_control("noise_gain_db", -12.0)
    ctl.set_control("pitch_shift_semitones", 7.0)
    ctl.set_gain_db(-6.0)
    ctl.set_mute(True)
    ctl.set_mode("transfer")
    rig.wait_shown(
        lambda s: (
            abs(_slider(s, 3)[1] + 12) < 0.05
            and abs(_slider(s, 0)[1] - 7) < 0.05
            and abs(float(s["gain"][0]) + 6) < 0.05
            and s["mute"] == ["1"]
            and s["mode"] == ["1"]
        )
    )
    # the user moves things: the daemon follows (a slider as a hand moves it, mode, gain, mute)
    rig.drive("pm-slider 1 -10", lambda: ctl.values["loudness_offset_db"] == pytest.approx(-10.0, abs=0.01))
    rig.drive("pm-mode-pick 2", lambda: ctl.mode == "fx")
    rig.drive("pm-gain -20", lambda: ctl.gain_db == -20.0)
    rig.drive("pm-mute 0", lambda: not ctl.mute)
    rig.drive("pm-control harmonic_gain_db 3", lambda: ctl.values["harmonic_gain_db"] == 3.0)
    shown = rig.wait_shown(lambda s: abs(_slider(s, 1)[1] + 10) < 0.05 and abs(_slider(s, 2)[1] - 3) < 0.05)
    assert s_mode(shown) == 2
    # errors come back (and are shown in the panel's error bar)
    rig.drive("pm-model ghost", lambda: rig.saw("pm-in pimodule error /pimodule/model/load"))
    assert srv.counters.unencodable == 0
    rig.wait_shown(lambda s: "ghost" in _bar(s))
    # a refusal whose datagram never arrived (UDP): the status repeats it and the bar shows it
    srv.last_error = ("/pimodule/model/load", "model 'cello' refused: NaN output")
    assert "cello' refused: NaN output" in _bar(rig.wait_shown(lambda s: "cello" in _bar(s)))
    # the model menu: pick row 0 (crusher): it loads, the menu marks it, the rows relabel/re-range
    rig.drive("pm-pick 0", lambda: ctl.model == "crusher")
    shown = rig.wait_shown(lambda s: _slider(s, 0)[0] == "drive_db" and s["model"] == ["0"])
    assert shown["range 0"] == ["0", "30"] and abs(_slider(shown, 0)[1] - 6.0) < 0.05  # its default
    assert all(_slider(shown, i)[0] == "-none-" for i in range(1, 6))
    rig.drive("pm-slider 0 20", lambda: ctl.values.get("drive_db") == pytest.approx(20.0, abs=0.01))
    # a model flashed meanwhile: the panel lists it again on its own
    ctl._models["cello"] = DDSP_CONTROLS
    srv.broadcast("/pimodule/model/installed", "cello", "ddsp")
    rig.drive("", lambda: rig.saw("pm-in pimodule models cello crusher violin"))
    assert srv.counters.refused_host == 0 and rig.proc.poll() is None
    assert rig.pd_errors() == []


def _bar(shown) -> str:
    """The error bar's text (FUDI escapes its spaces)."""
    return " ".join(shown["error"]).replace("\\", "")


def s_mode(shown) -> int:
    return int(float(shown["mode"][0]))


def test_panel_takes_host_and_ports_as_arguments(tmp_path, served):
    """[pimodule_panel localhost PORT LISTEN] and the older [pimodule_panel PORT LISTEN]."""
    ctl, srv = served
    p1, p2 = free_udp_port(), free_udp_port()
    rig = PdRig(
        tmp_path,
        [
            f"#X obj 10 10 pimodule_panel localhost {srv.port} {p1};",
            f"#X obj 500 10 pimodule_panel {srv.port} {p2};",
        ],
    )
    try:
        rig.drive("", lambda: {("127.0.0.1", p1), ("127.0.0.1", p2)} <= set(srv.subscribers), timeout_s=8)
    finally:
        rig.close()
    assert rig.pd_errors() == []


def _words(shown, effect):
    """The words an effect's label shows (FUDI escapes their comma and spaces)."""
    return " ".join(shown[f"{effect} confidence"]).replace("\\", "")


def _fx_shown(rig, check):
    """What the fx panel shows, once ``check`` holds for it."""
    return rig.wait_shown(check, tap="pm-fx-shown", dump="pm-fx-dump")


def test_fx_panel_shows_estimates_and_sends_requests(tmp_path, served):
    ctl, srv = served
    lport = free_udp_port()
    rig = PdRig(tmp_path, [f"#X obj 10 10 pimodule_fx 127.0.0.1 {srv.port} {lport};"])
    try:
        rig.drive("", lambda: ("127.0.0.1", lport) in srv.subscribers)
        shown = _fx_shown(rig, lambda s: "shows" in s)
        assert _words(shown, "reverb") == "-" and shown["reverb strength"] == ["1"]  # nothing estimated yet
        # which input is which, for the estimator in use (status fx_inputs)
        ctl.extra_status["fx_inputs"] = "L reference, R input"
        _fx_shown(rig, lambda s: " ".join(s.get("inputs", [])).replace("\\", "") == "L reference, R input")
        # estimates as the daemon broadcasts them: the sliders show them (read back from the sliders)
        srv.broadcast("/pimodule/fx/distortion/probability", 0.9)
        srv.broadcast("/pimodule/fx/distortion/active", 1)
        srv.broadcast("/pimodule/fx/distortion/drive_db", 18.0)
        srv.broadcast("/pimodule/fx/reverb/mix_pct", 25.0)
        srv.broadcast("/pimodule/fx/compressor/ratio", 4.0)  # a log-scale slider
        shown = _fx_shown(
            rig,
            lambda s: (
                abs(float(s["distortion drive_db"][0]) - 18) < 0.1
                and abs(float(s["reverb mix_pct"][0]) - 25) < 0.2
                and abs(float(s["compressor ratio"][0]) - 4) < 0.05
                and s["distortion active"] == ["1"]
            ),
        )
        assert abs(float(shown["distortion probability"][0]) - 0.9) < 0.01
        assert shown["distortion mode"] == ["-"]  # no curve estimated yet
        srv.broadcast("/pimodule/fx/distortion/mode", "hard")
        _fx_shown(rig, lambda s: s["distortion mode"] == ["hard"])
        assert not ctl.fx_hold  # an estimate shown is not a hand: nothing was sent
        assert rig.saw("pm-fx distortion drive_db 18")  # passed on flat, as before
        # each effect's decision in words beside its box, and how much of it is applied
        assert _words(shown, "distortion") == "on" and float(shown["distortion strength"][0]) == 1
        srv.broadcast("/pimodule/fx/reverb/active", 1)
        srv.broadcast("/pimodule/fx/reverb/confidence", "on, probably")
        srv.broadcast("/pimodule/fx/reverb/strength", 0.25)
        srv.broadcast("/pimodule/fx/eq/active", 0)
        shown = _fx_shown(rig, lambda s: _words(s, "reverb") == "on, probably" and _words(s, "eq") == "off")
        assert float(shown["reverb strength"][0]) == 0.25 and shown["shows"] == ["estimate"]
        # the module's check (what matching plays) wins over the raw estimates while it comes
        srv.broadcast("/pimodule/fx/checked/reverb/active", 0)
        srv.broadcast("/pimodule/fx/checked/reverb/confidence", "off, probably")
        _fx_shown(rig, lambda s: _words(s, "reverb") == "off, probably" and s["shows"] == ["check"])
        srv.broadcast("/pimodule/fx/reverb/active", 1)
        srv.broadcast("/pimodule/fx/reverb/confidence", "on, sure")
        shown = _fx_shown(rig, lambda s: s["shows"] == ["check"])
        assert _words(shown, "reverb") == "off, probably" and shown["reverb active"] == ["0"]
        assert float(shown["reverb strength"][0]) == 1  # the check's chain is applied at full size
        # no check for 5 s: the estimates are shown again
        time.sleep(5.2)
        srv.broadcast("/pimodule/fx/reverb/active", 1)
        srv.broadcast("/pimodule/fx/reverb/confidence", "on, sure")
        _fx_shown(rig, lambda s: _words(s, "reverb") == "on, sure" and s["shows"] == ["estimate"])
        # the estimator menu lists fx/list and marks the one in use (status fx_model)
        _fx_shown(rig, lambda s: s["estimator"] == ["0"])
        rig.drive("pm-fx-model fx-dry", lambda: ctl.fx_model == "fx-dry")
        _fx_shown(rig, lambda s: s["estimator"] == ["1"])
        # match, hold, set by hand; the toggles follow status
        rig.drive("pm-fx-match 1", lambda: ctl.fx_match)
        rig.drive("pm-fx-set reverb mix_pct 30", lambda: ctl.fx_chain["reverb"]["params"]["mix_pct"] == 30.0)
        assert ctl.fx_hold  # set by hand: held
        # held: the panel shows the chain that plays (it asks for it), no longer the estimates
        _fx_shown(rig, lambda s: s["hold"] == ["1"] and s["match"] == ["1"] and s["shows"] == ["held"])
        _fx_shown(rig, lambda s: abs(float(s["reverb mix_pct"][0]) - 30) < 0.2)
        srv.broadcast("/pimodule/fx/reverb/mix_pct", 80.0)
        srv.broadcast("/pimodule/fx/checked/reverb/mix_pct", 80.0)
        time.sleep(0.5)
        assert abs(float(_fx_shown(rig, lambda s: "shows" in s)["reverb mix_pct"][0]) - 30) < 0.2
        rig.drive("pm-fx-set distortion mode hard", lambda: ctl.fx_chain["distortion"]["mode"] == "hard")
        ctl.set_fx_hold(False)
        # released: it follows the module's check again (one came while held), then the estimates
        _fx_shown(rig, lambda s: s["hold"] == ["0"] and s["shows"] == ["check"])
        _fx_shown(rig, lambda s: s["shows"] == ["estimate"])
        srv.broadcast("/pimodule/fx/reverb/mix_pct", 80.0)
        _fx_shown(rig, lambda s: abs(float(s["reverb mix_pct"][0]) - 80) < 0.2)
        # a slider and an on box moved by hand: the module gets them and holds, the panel shows them held
        want = ctl.fx_chain["compressor"]["params"]
        rig.drive("pm-fx-hand compressor ratio 6", lambda: abs(want["ratio"] - 6) < 0.05)
        rig.drive("pm-fx-hand reverb active 0", lambda: not ctl.fx_chain["reverb"]["active"])
        # the distortion's curve typed into its box (as pm-fx-hand types it)
        rig.drive("pm-fx-hand distortion mode soft", lambda: ctl.fx_chain["distortion"]["mode"] == "soft")
        _fx_shown(rig, lambda s: s["distortion mode"] == ["soft"])
        assert ctl.fx_hold
        _fx_shown(rig, lambda s: s["shows"] == ["held"] and s["hold"] == ["1"] and s["reverb active"] == ["0"])
        srv.broadcast("/pimodule/fx/compressor/ratio", 2.0)
        time.sleep(0.5)
        assert abs(float(_fx_shown(rig, lambda s: "shows" in s)["compressor ratio"][0]) - 6) < 0.1
        assert srv.counters.errors == 0
        # a curve the module does not have: refused, said on the panel's error line, the curve kept
        refused = "pm-fx-in pimodule error /pimodule/fx/set mode"
        rig.drive("pm-fx-hand distortion mode bent", lambda: rig.saw(refused), resend_s=60)
        assert ctl.fx_chain["distortion"]["mode"] == "soft" and srv.counters.errors == 1
        _fx_shown(rig, lambda s: "/pimodule/fx/set" in _bar(s))
        srv.last_error = ("/pimodule/fx/model", "fx model 'wobble' refused: not kind fx")  # its datagram lost
        _fx_shown(rig, lambda s: "wobble" in _bar(s))
    finally:
        rig.close()
    assert rig.pd_errors() == []


def test_tedium_patch_sends_cv_pots_and_buttons(tmp_path, served):
    ctl, srv = served
    rig = PdRig(tmp_path, [f"#X obj 10 10 pimodule_tedium {srv.port};"], stubs=STUBS)
    try:
        # ADC values as the external gives them (already inverted): 2400 -> +1 V, 3000 -> +2.5 V
        rig.drive("tedium-stub-0 2400", lambda: ctl.cv["cv1"] == pytest.approx(1.0))
        rig.drive("tedium-stub-1 0", lambda: ctl.cv["cv2"] == pytest.approx(-5.0))
        rig.drive(
            "tedium-stub-3 3000",
            lambda: ctl.values["pitch_shift_semitones"] == pytest.approx(12.0) and ctl.cv["pot1"] == pytest.approx(2.5),
        )
        rig.drive("tedium-stub-5 4000", lambda: ctl.values["noise_gain_db"] == pytest.approx(12.0))
        rig.drive("tedium-stub-4 9999", lambda: ctl.values["harmonic_gain_db"] == pytest.approx(12.0))  # clipped
        mute_before = ctl.mute
        rig.drive("tedium-stub-gpio-23 bang", lambda: ctl.mute != mute_before, resend_s=3.0)
        rig.drive("tedium-stub-gpio-25 bang", lambda: ctl.mode != "synth", resend_s=3.0)
        assert ctl.mode == "transfer"
    finally:
        rig.close()
    assert rig.pd_errors() == []


@pytest.mark.timeout(180)
def test_panel_against_the_real_daemon(tmp_path, model_dir):
    """The daemon built in-process, playing on its simulated clock: the panel shows its table,
    its values (moved by another OSC client) and its voices, and a click loads another voice."""
    from pimodule.device import daemon as daemon_mod
    from pimodule.device.config import parse_config

    cfg = parse_config(
        {
            "osc": {"port": 0},
            "models": {"dir": str(model_dir), "default": "voice_a"},
            "cv": {"backend": "simulated"},
            "fx": {"model": ""},
        },
        "test",
    )
    d = daemon_mod.build(cfg)
    thread = threading.Thread(target=daemon_mod.run, kwargs=dict(d=d, offline=True, duration_s=None))
    thread.start()
    rig = None
    try:
        with OscClient("127.0.0.1", d.osc.port) as c:
            c.request("/pimodule/ping", expect="/pimodule/pong", timeout_s=20)
            rig = PdRig(tmp_path, [f"#X obj 10 10 pimodule_panel 127.0.0.1 {d.osc.port} {free_udp_port()};"])
            names = d.controller.controls().names
            rig.wait_shown(lambda s: [_slider(s, i)[0] for i in range(len(names))] == list(names), timeout_s=30)
            c.send(f"/pimodule/control/{names[0]}", 5.0)
            voices = d.controller.list_models()
            playing = voices.index("voice_a")
            shown = rig.wait_shown(lambda s: abs(_slider(s, 0)[1] - 5.0) < 0.05 and s["model"] == [str(playing)])
            assert abs(float(shown["gain"][0]) - d.controller.gain_db) < 0.05
            rig.drive(f"pm-pick {voices.index('voice_b')}", lambda: d.controller.status()["model"] == "voice_b", 30)
            rig.wait_shown(lambda s: s["model"] == [str(voices.index("voice_b"))])
            assert rig.pd_errors() == []
    finally:
        if rig is not None:
            rig.close()
        d.stop_event.set()
        thread.join(20)
        d.close()
