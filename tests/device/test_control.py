"""Control side: the simulated CV through the real MCP3208 encoding, pots → controls, the
OSC-facing controller over a real engine and loader."""

from __future__ import annotations

import pytest

from pimodule.device.audio import AudioRunner
from pimodule.device.control import DEMO_MELODY, DaemonController, Note, PotMapper, SimulatedCV
from pimodule.device.io.cv import MCP3208, Calibration, CVReader, FakeMCP3208
from pimodule.device.io.gpio import FakeGpio, Triggers
from pimodule.device.io.hardware import load_hardware
from pimodule.device.models import ModelLoader, ModelStore, load_session
from pimodule.device.ort_engine import VoiceEngine


@pytest.fixture()
def hw():
    return load_hardware()


def test_simulated_cv_round_trips_through_the_adc_chain(hw):
    cal = {c.name: Calibration.nominal(hw.adc) for c in hw.adc.channels}
    fake = FakeMCP3208()
    reader = CVReader(MCP3208(fake), hw.adc, calibrations=cal)
    gpio = FakeGpio()
    triggers = Triggers(gpio, hw.gpio)
    clock = [0.0]
    melody = [Note(1.0, 0.5, True, 4.0), Note(-0.25, 0.5, False, 1.0)]
    sim = SimulatedCV(
        fake, hw.adc, cal, clock_s=lambda: clock[0], melody=melody, gpio=gpio, gate_pin=hw.gpio.trigger_pins[0]
    )
    step_v = cal["cv1"].scale_v_per_step
    for t, note in ((0.1, melody[0]), (0.7, melody[1]), (1.2, melody[0])):
        clock[0] = t
        sim.update()
        for _ in range(400):  # let the reader's smoothing settle
            reader.poll_once()
        snap = reader.snapshot()
        tolerance_v = step_v + 0.005  # one ADC step and the dead-band
        assert snap["cv1"] == pytest.approx(note.volts, abs=tolerance_v)
        assert snap["cv2"] == pytest.approx(note.loudness_v, abs=tolerance_v)
        assert triggers.active[0] == (1.0 if note.gate else 0.0)
        if note.gate:
            assert triggers.counts[0] >= 1
    assert fake.transactions[-1] == (True, hw.adc.channel("pot3").channel)  # decoded SPI commands
    assert sim.period_s == pytest.approx(1.0)
    assert DEMO_MELODY[0].volts == 0.0


def test_pots_take_over_only_after_moving(model_dir):
    engine = VoiceEngine(device_rate_hz=48000, max_block=128)
    engine.install(load_session(model_dir / "voice_a.onnx", engine))
    names = ("cv1", "cv2", "cv3", "pot1", "pot2", "pot3")
    pots = PotMapper(
        engine, engine.cv_values, names, [("pot1", "noise_gain_db"), ("pot2", "")], volts_range=(-5.0, 5.0), pickup=0.01
    )
    engine.set_control("noise_gain_db", -7.0)
    engine.cv_values[3] = 0.0
    assert pots.poll() == 0  # first reading is the reference
    engine.cv_values[3] = 0.02  # a 0.2 % wiggle: ignored
    assert pots.poll() == 0
    assert engine.session.controls[3] == pytest.approx(-7.0)
    engine.cv_values[3] = 5.0  # all the way up
    assert pots.poll() == 1
    assert engine.session.controls[engine.controls().index("noise_gain_db")] == pytest.approx(12.0)
    engine.cv_values[3] = -5.0
    pots.poll()
    assert engine.session.controls[engine.controls().index("noise_gain_db")] == pytest.approx(-40.0)


def test_pots_wait_for_the_readers_first_values(model_dir):
    # the array's initial 0 V is not a reading: the real position arriving later is no "move"
    engine = VoiceEngine(device_rate_hz=48000, max_block=128)
    engine.install(load_session(model_dir / "voice_a.onnx", engine))
    names = ("cv1", "cv2", "cv3", "pot1", "pot2", "pot3")
    published = []
    pots = PotMapper(
        engine,
        engine.cv_values,
        names,
        [("pot1", "noise_gain_db")],
        volts_range=(-5.0, 5.0),
        ready=lambda: bool(published),
    )
    engine.set_control("noise_gain_db", -7.0)
    assert pots.poll() == 0  # nothing read yet: not even a reference
    engine.cv_values[3], published[:] = 4.0, [1]  # the first reading: the pot sits high
    assert pots.poll() == 0
    assert engine.session.controls[engine.controls().index("noise_gain_db")] == pytest.approx(-7.0)


def test_controller_drives_engine_and_reports_status(model_dir):
    engine = VoiceEngine(device_rate_hz=48000, max_block=128)
    loader = ModelLoader(engine, ModelStore(model_dir))
    assert loader.load("voice_a")
    runner = AudioRunner(engine, sample_rate_hz=48000)
    c = DaemonController(engine, loader, runner, cv_snapshot=lambda: {"cv1": 0.5})
    runner.run_offline(0.1, realtime=False)
    assert c.controls().names[0] == "pitch_shift_semitones"
    assert c.set_control("pitch_shift_semitones", 99.0) == 24.0
    assert c.set_gain_db(-100.0) == -60.0
    c.set_mute(True)
    c.set_mode("transfer")
    with pytest.raises(ValueError):
        c.set_mode("nope")
    with pytest.raises(KeyError, match="no model"):
        c.load_model("does_not_exist")
    assert "voice_b" in c.list_models()
    s = c.status()
    assert s["model"] == "voice_a" and s["mode"] == "transfer" and s["mute"] == 1  # by its store name
    assert s["models"] == c.list_models() and s["control"]["pitch_shift_semitones"] == 24.0
    assert s["cv"] == {"cv1": 0.5} and s["gain_db"] == -60.0
    assert s["callback_p99_us"] > 0 and s["exceptions"] == 0
    assert all(isinstance(v, (int, float, str, dict, list)) for v in s.values())  # list: the model names
    empty = DaemonController(VoiceEngine(device_rate_hz=48000, max_block=128), loader, runner)
    assert len(empty.controls()) == 0
