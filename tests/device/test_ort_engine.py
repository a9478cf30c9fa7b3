"""VoiceEngine offline (no audio device): block-size independence, CV → f0, transfer, fx,
mode switches, model swaps and refusals, controls. Real onnxruntime models from conftest."""

from __future__ import annotations

import numpy as np
import pytest

from pimodule.core.controls import CV_NAMES
from pimodule.core.features import yin_f0
from pimodule.core.modelfile import ModelFileError
from pimodule.device.config import EngineConfig
from pimodule.device.models import ModelLoader, ModelStore, load_session
from pimodule.device.ort_engine import VoiceEngine

RATE_HZ = 48000
BLOCK_SIZES = (1, 64, 65, 128, 8193)


def make_engine(model_dir, *, mode="synth", max_block=8193, model="voice_a", **cfg):
    config = EngineConfig(mode=mode, loudness_source=cfg.pop("loudness_source", "cv2"), **cfg)
    engine = VoiceEngine(device_rate_hz=RATE_HZ, max_block=max_block, config=config)
    engine.cv_values[CV_NAMES.index("cv2")] = 4.0  # loud enough
    if model:
        engine.install(load_session(model_dir / f"{model}.onnx", engine))
        engine.set_control("noise_gain_db", -40.0)  # a clearly pitched voice
    return engine


def render(engine, n, block, x=None):
    out = np.zeros(n, np.float32)
    for i in range(0, n, block):
        engine.process(None if x is None else x[i : i + block], out[i : i + block])
    return out


def median_f0(y, rate_hz=RATE_HZ):
    f0, periodicity = yin_f0(y.astype(np.float64), rate_hz, hop_size=256)
    voiced = periodicity > 0.5
    assert voiced.mean() > 0.5, "output is not pitched"
    return float(np.median(f0[voiced]))


def cents(a, b):
    return 1200 * abs(np.log2(a / b))


@pytest.mark.parametrize("mode", ("synth", "transfer"))
def test_output_does_not_depend_on_block_size(model_dir, mode):
    n = 9000
    t = np.arange(n) / RATE_HZ
    x = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    outs = {}
    for block in BLOCK_SIZES:
        engine = make_engine(model_dir, mode=mode)
        outs[block] = render(engine, n, block, x)
        assert engine.analysis.n_underruns == 0
    for block in BLOCK_SIZES[1:]:
        np.testing.assert_allclose(outs[block], outs[BLOCK_SIZES[0]], atol=1e-6)
    assert np.max(np.abs(outs[64])) > 1e-3  # it plays


@pytest.mark.parametrize("cv1_volts", (-1.0, 0.0, 1.0))
def test_synth_f0_follows_cv1(model_dir, cv1_volts):
    engine = make_engine(model_dir, max_block=128)
    engine.cv_values[CV_NAMES.index("cv1")] = cv1_volts
    y = render(engine, RATE_HZ // 2, 128)[RATE_HZ // 10 :]
    expected_hz = EngineConfig().hz_at_0v * 2**cv1_volts
    assert cents(median_f0(y), expected_hz) < 20
    assert engine.last_f0_hz == pytest.approx(expected_hz)


def test_cv2_and_envelope_set_loudness(model_dir):
    engine = make_engine(model_dir, max_block=128)
    engine.cv_values[CV_NAMES.index("cv2")] = 0.0
    render(engine, 4800, 128)
    assert engine.last_loudness_db == pytest.approx(-70.0)
    engine.cv_values[CV_NAMES.index("cv2")] = 5.0
    render(engine, 4800, 128)
    assert engine.last_loudness_db == pytest.approx(-10.0)
    env = make_engine(model_dir, max_block=128, loudness_source="envelope")
    render(env, 4800, 128)
    assert env.last_loudness_db == pytest.approx(-70.0)  # gate low: floor
    env.gate_values[0] = 1
    quiet = env.last_loudness_db
    render(env, 4800, 128)
    assert env.last_loudness_db > -12.0 > quiet  # attack reached the top
    env.gate_values[0] = 0
    render(env, 4800, 128)
    assert -70.0 < env.last_loudness_db < -12.0  # releasing, not cut


@pytest.mark.parametrize("cv1_volts, factor", ((0.0, 1.0), (1.0, 2.0)))
def test_transfer_follows_input_pitch_and_cv_transposes(model_dir, cv1_volts, factor):
    engine = make_engine(model_dir, mode="transfer", max_block=128)
    engine.cv_values[CV_NAMES.index("cv1")] = cv1_volts
    n = RATE_HZ // 2
    t = np.arange(n) / RATE_HZ
    x = (0.5 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
    y = render(engine, n, 128, x)[RATE_HZ // 5 :]
    assert cents(median_f0(y), 220.0 * factor) < 30
    assert engine.transfer_latency_samples() > engine.latency_samples > 0


def test_fx_placeholder_passes_input_through(model_dir):
    engine = make_engine(model_dir, mode="fx", max_block=128)
    x = (0.3 * np.sin(np.arange(4096) * 0.07)).astype(np.float32)
    np.testing.assert_array_equal(render(engine, 4096, 128, x), x)


def test_mode_switch_fades_without_clicks(model_dir):
    engine = make_engine(model_dir, max_block=64)
    x = np.zeros(RATE_HZ // 4, np.float32)
    a = render(engine, 4800, 64, x)
    engine.set_mode("fx")  # silence in: output fades to zero and stays there
    b = render(engine, 4800, 64, x)
    assert engine._mode == 2 and np.all(b[-2000:] == 0.0)
    engine.set_mode("synth")
    c = render(engine, 9600, 64, x)
    y = np.concatenate([a, b, c])
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0
    own_slope = np.max(np.abs(np.diff(a)))
    around_switches = np.abs(np.diff(y[len(a) - 1 : len(a) + len(b) + 2400]))
    assert np.max(around_switches) <= own_slope  # no jump bigger than the voice's own steepest
    with pytest.raises(ValueError, match="unknown mode"):
        engine.set_mode("granular")


def test_swap_crossfades_and_retires_old_model(model_dir):
    engine = make_engine(model_dir, max_block=128)
    first = engine.session
    render(engine, 4800, 128)
    engine.set_control("harmonic_gain_db", -3.0)
    engine.offer_model(load_session(model_dir / "voice_b.onnx", engine))
    assert engine.swap_pending
    y = render(engine, 4800, 128)
    assert not engine.swap_pending and engine.session is not first and engine.n_swaps == 1
    assert engine.retired is first  # parked for a non-audio thread, not destroyed in the callback
    engine.collect_retired()
    assert engine.retired is None
    # the user's controls carried over to the new model
    assert engine.session.controls[engine.controls().index("harmonic_gain_db")] == pytest.approx(-3.0)
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("bad_corrupt", "cannot load"),
        ("bad_kind", "'fx'"),
        ("bad_rate", "22050"),
        ("bad_nan", "NaN"),
        ("no_such_model", "no model"),
    ],
)
def test_bad_models_are_refused_and_the_voice_keeps_playing(model_dir, bad, reason):
    engine = make_engine(model_dir, max_block=128)
    playing = engine.session
    errors = []
    loader = ModelLoader(engine, ModelStore(model_dir), on_error=errors.append)
    loader.start()
    try:
        loader.request(bad)
        assert loader.wait_idle(30)
    finally:
        loader.stop()
    assert len(errors) == 1 and reason in errors[0] and loader.n_refused == 1
    assert engine.session is playing and not engine.swap_pending
    y = render(engine, 4800, 128)
    assert np.max(np.abs(y)) > 1e-3


def test_check_compatible_and_loader_swap(model_dir):
    engine = make_engine(model_dir, max_block=128)
    with pytest.raises(ModelFileError, match="22050"):
        load_session(model_dir / "bad_rate.onnx", engine)
    loader = ModelLoader(engine, ModelStore(model_dir))
    assert loader.store.list() == sorted(["bad_corrupt", "bad_kind", "bad_nan", "bad_rate", "voice_a", "voice_b"])
    assert loader.load("voice_b") and engine.swap_pending
    render(engine, 256, 128)
    assert engine.session.info.name == "test-1"


def test_controls_clamp_and_refuse(model_dir):
    engine = make_engine(model_dir, max_block=128)
    assert engine.set_control("pitch_shift_semitones", 100.0) == 24.0
    with pytest.raises(KeyError, match="unknown parameter"):
        engine.set_control("nope", 1.0)
    with pytest.raises(ValueError):
        engine.set_control("noise_gain_db", float("nan"))
    empty = make_engine(model_dir, model=None, max_block=128)
    with pytest.raises(KeyError, match="no model"):
        empty.set_control("noise_gain_db", 0.0)
    assert np.all(render(empty, 1000, 128) == 0.0)  # no model: silence, not an error
