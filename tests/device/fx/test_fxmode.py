"""fx mode: the estimator off the audio thread, matching in the callback, OSC estimates."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pimodule.core.fx_specs import DISTORTION_MODES
from pimodule.device.fx.mode import FxAnalyzer, FxMatcher, InputHistory, consistent_snapshots, osc_messages
from pimodule.device.fx.twin_chain import ChainTwin
from pimodule.device.ort_engine import VoiceEngine

FX_MODEL = Path(__file__).resolve().parents[3] / "export" / "fx.onnx"
FX_DRY_MODEL = FX_MODEL.with_name("fx-dry.onnx")
RATE_HZ = 48000
pytestmark = pytest.mark.timeout(180)


def _signal(seconds: float, seed: int = 0) -> np.ndarray:
    """A bright, moving test signal (two detuned saws with an envelope) plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    saw = 2 * ((110 * t) % 1.0) - 1 + 2 * ((165.5 * t) % 1.0) - 1
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t) ** 2
    return (0.2 * saw * env + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


@pytest.mark.parametrize("block", [1, 64, 65, 128, 8193])
def test_input_history_keeps_the_last_samples_in_order(block):
    x = np.arange(20000, dtype=np.float32)
    h = InputHistory(3000)
    for start in range(0, len(x), block):
        h.write(x[start : start + block])
    np.testing.assert_array_equal(h.snapshot(), x[-3000:])


def test_paired_snapshots_stay_aligned_while_the_callback_writes():
    """L and R written block by block from another thread (as the callback does): every pair the
    analyzer gets is from the same blocks, never one block apart or torn mid-write."""

    wet, dry = InputHistory(4096), InputHistory(4096)
    wrap = 1 << 16  # sample values count up modulo 2**16, exact in float32 however long it runs
    start = np.arange(4096, dtype=np.float32)
    wet.write(start)
    dry.write(start)
    stop = threading.Event()

    def callback_thread():
        ramp = np.arange(64)
        k = 4096 // 64
        while not stop.is_set():
            block = ((ramp + 64 * k) % wrap).astype(np.float32)
            wet.write(block)
            dry.write(block)
            k += 1

    writer = threading.Thread(target=callback_thread, daemon=True)
    writer.start()
    try:
        got = 0
        for _ in range(300):
            pair = consistent_snapshots((wet, dry))
            if pair is not None:
                np.testing.assert_array_equal(pair[0], pair[1])
                assert np.all(np.diff(pair[0].astype(np.int64)) % wrap == 1)  # in order, not torn
                got += 1
    finally:
        stop.set()
        writer.join()
    assert got > 0


def test_paired_snapshots_give_up_on_a_write_that_never_ends():
    wet, dry = InputHistory(256), InputHistory(256)
    dry.seq = 1  # a write in progress
    assert consistent_snapshots((wet, dry), tries=3) is None
    dry.seq = 2
    wet.write(np.ones(10, np.float32))  # one block ahead of the other input
    assert consistent_snapshots((wet, dry), tries=3) is None
    dry.write(np.ones(10, np.float32))
    assert consistent_snapshots((wet, dry), tries=3) is not None


def test_analyzer_estimates_every_effect_within_its_spec_and_smooths():
    analyzer = FxAnalyzer(FX_MODEL, RATE_HZ, interval_s=0.1, smoothing=0.5)
    assert analyzer.analyse_once() is None  # silence is not analysed
    analyzer.history.write(_signal(1.5))
    first = analyzer.analyse_once()
    assert set(first) == {e["effect"] for e in analyzer.estimator.chain}
    specs = {s.name: s for s in analyzer.estimator.info.controls}
    for effect, item in first.items():
        assert 0.0 <= item["probability"] <= 1.0
        for name, value in item["params"].items():
            spec = specs[f"{effect}.{name}"] if f"{effect}.{name}" in specs else specs[name]
            assert spec.min - 1e-6 <= value <= spec.max + 1e-6
    second = analyzer.analyse_once()  # same input: the running average converges, stays put
    for effect in first:
        for name in first[effect]["params"]:
            assert np.isclose(first[effect]["params"][name], second[effect]["params"][name], rtol=1e-4, atol=1e-4)
    messages = dict(osc_messages(second))
    assert "/pimodule/fx/distortion/active" in messages and "/pimodule/fx/reverb/mix_pct" in messages
    assert analyzer.n_runs == 2 and analyzer.last_run_ms > 0


@pytest.fixture(scope="module")
def reference_estimator(tmp_path_factory):
    """A small untrained reference-conditioned estimator file (exported like the real ones)."""
    import torch

    from pimodule.laptop.fx.export import export_onnx
    from pimodule.laptop.fx.model import Estimator, ModelConfig

    torch.manual_seed(0)
    model = Estimator(ModelConfig(channels=8, n_layers=1, n_mels=16, waveform_stats=True, conditioning="reference"))
    return export_onnx(model, tmp_path_factory.mktemp("fxref") / "ref.onnx", name="ref")


def test_conditioned_estimator_reads_input_r_as_its_second_signal(reference_estimator):
    analyzer = FxAnalyzer(reference_estimator, RATE_HZ, interval_s=0.1, smoothing=1.0)
    assert analyzer.other_history is not None
    analyzer.history.write(_signal(1.5, seed=1))
    assert analyzer.analyse_once() is None  # input R silent: nothing to compare with
    analyzer.other_history.write(_signal(1.5, seed=2))
    first = analyzer.analyse_once()
    analyzer.other_history.write(0.05 * np.sign(_signal(1.5, seed=3)))  # another R
    second = analyzer.analyse_once()
    assert first is not None and second is not None
    changed = [abs(first[e]["params"][p] - second[e]["params"][p]) for e in first for p in first[e]["params"]]
    assert max(changed) > 1e-4  # the estimate depends on R
    # in the engine, fx mode records R for the analyzer too
    engine = _engine_in_fx_mode(FxMatcher(RATE_HZ, 256))
    engine.fx_other_history = InputHistory(4096)
    left, right = _signal(0.1, seed=4), _signal(0.1, seed=5)
    engine.process(left[:128], np.zeros(128, np.float32), right[:128])
    np.testing.assert_array_equal(engine.fx_other_history.snapshot()[-128:], right[:128])
    assert FxAnalyzer(FX_MODEL, RATE_HZ).other_history is None  # blind: no second history


def test_shipped_dry_estimator_tells_an_untouched_signal_from_a_clipped_one():
    """export/fx-dry.onnx (L wet, R dry, from the same blocks): with L = R nothing colours the
    sound; with L driven into a clipper the distortion is heard."""
    dry = _signal(1.5, seed=6)
    untouched = FxAnalyzer(FX_DRY_MODEL, RATE_HZ, smoothing=1.0)
    assert untouched.estimator.conditioning == "dry" and untouched.other_history is not None
    untouched.history.write(dry)
    untouched.other_history.write(dry)
    est = untouched.analyse_once()
    colouring = ("eq", "compressor", "distortion", "reverb")
    assert not any(est[e]["active"] for e in colouring), {e: est[e]["probability"] for e in colouring}
    clipped = FxAnalyzer(FX_DRY_MODEL, RATE_HZ, smoothing=1.0)
    clipped.history.write(np.clip(8.0 * dry, -0.25, 0.25))
    clipped.other_history.write(dry)
    est = clipped.analyse_once()
    assert (
        est["distortion"]["active"] and est["distortion"]["probability"] > untouched.latest["distortion"]["probability"]
    )


def _engine_in_fx_mode(matcher):
    engine = VoiceEngine(device_rate_hz=RATE_HZ, max_block=256)
    engine.set_mode("fx")
    engine.fx_matcher = matcher
    engine.fx_history = InputHistory(4096)
    out = np.zeros(128, np.float32)
    engine.process(None, out)  # the mode switch happens at a block boundary
    engine.process(None, out)
    return engine


def test_fx_mode_passes_input_r_or_applies_the_estimated_chain():
    matcher = FxMatcher(RATE_HZ, 256)
    engine = _engine_in_fx_mode(matcher)
    left, right = _signal(0.5, seed=1), _signal(0.5, seed=2)
    estimate = {
        "distortion": {"active": True, "params": {"drive_db": 24.0, "output_gain_db": -6.0}, "mode": "hard"},
        "reverb": {"active": False, "params": {}},
    }
    reference = ChainTwin(RATE_HZ, channels=1, max_block=256)
    for name in reference.stages:
        reference.set_active(name, False, immediate=True)
    out = np.zeros(128, np.float32)
    dry, wet, ref = [], [], []
    for i, start in enumerate(range(0, 20 * 128, 128)):
        if i == 10:  # matching on, chain estimated: both chains get the same targets
            matcher.matching = True
            matcher.apply(estimate)
            reference.set_distortion_mode("hard")
            reference.apply(estimate)
        engine.process(left[start : start + 128], out, right[start : start + 128])
        (dry if i < 10 else wet).append(out.copy())
        if i >= 10:
            block = right[start : start + 128].astype(np.float64)[None].copy()
            reference.process(block)
            ref.append(block[0])
    np.testing.assert_allclose(
        np.concatenate(dry[3:]), right[384:1280], atol=1e-6
    )  # pass-through R (after the 5 ms mode fade-in)
    wet, ref = np.concatenate(wet), np.concatenate(ref)
    np.testing.assert_allclose(wet, np.clip(ref, -1, 1), atol=2e-2)  # the twin chain (the guard limits peaks)
    assert np.max(np.abs(wet - right[1280:2560])) > 0.05  # audibly different from dry
    assert np.all(np.isfinite(wet)) and np.max(np.abs(wet)) <= 1.0
    np.testing.assert_array_equal(engine.fx_history.snapshot()[-128:], left[2432:2560])  # L was recorded


def test_daemon_fx_mode_sends_estimates_over_osc_and_toggles_matching(fx_daemon):
    from pimodule.device.io.osc import OscClient

    got = {}
    with fx_daemon(FX_MODEL, np.tile(_signal(2.0), 10), 20.0) as d:
        assert d.fx is not None and d.engine.fx_matcher is not None
        with OscClient("127.0.0.1", d.osc.port) as c:
            c.request("/pimodule/status/subscribe", c.port, 2.0, expect="/pimodule/status/subscribed", timeout_s=20)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and "/pimodule/fx/reverb/mix_pct" not in got:
                msg = c.receive(0.5)
                if msg and msg[0].startswith("/pimodule/fx/"):
                    got[msg[0]] = msg[1]
            assert c.request("/pimodule/fx/match", 1, expect="/pimodule/fx/match", timeout_s=10)[1] == [1]
            assert d.engine.fx_matcher.matching
            reply = c.request("/pimodule/fx/estimate", expect="/pimodule/fx/", timeout_s=10)
            assert reply[0].startswith("/pimodule/fx/")
            deadline = time.monotonic() + 20  # the analyser keeps going (it ran once so far, maybe)
            while time.monotonic() < deadline and d.fx.n_runs < 2:
                time.sleep(0.05)
    assert "/pimodule/fx/reverb/mix_pct" in got and "/pimodule/fx/eq/active" in got
    assert d.fx.n_runs >= 2 and d.runner.stats.n_exceptions == 0


def test_fx_mode_imports_no_torch():
    code = (
        "import sys; import pimodule.device.fx.mode as m; m.FxMatcher(48000, 128); "
        f"m.FxAnalyzer({str(FX_MODEL)!r}, 48000); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_model_list_offers_voices_not_the_estimator(tmp_path, model_dir):
    from pimodule.device.models import ModelStore

    store_dir = tmp_path / "store"
    store_dir.mkdir()
    shutil.copy(FX_MODEL, store_dir / "fx.onnx")  # copies: the store refuses links pointing out
    shutil.copy(model_dir / "voice_a.onnx", store_dir / "voice_a.onnx")
    (store_dir / "broken.onnx").write_bytes(b"not a model")
    store = ModelStore(store_dir)
    assert store.list() == ["broken", "fx", "voice_a"]
    assert store.list("ddsp") == ["voice_a"] and store.list("fx") == ["fx"]


def test_a_blind_estimate_keeps_what_it_is_sure_of_and_says_so_in_words():
    from pimodule.device.fx.estimator import keep_confident

    analyzer = FxAnalyzer(FX_MODEL, RATE_HZ, interval_s=0.1, smoothing=1.0)
    analyzer.history.write(_signal(1.5))
    est = analyzer.analyse_once()
    keep = analyzer.estimator.keep
    for name in ("eq", "compressor", "distortion", "reverb"):
        p = est[name]["probability"]
        assert est[name]["active"] == (p >= max(0.5, keep.get(name, 0.5)))
        assert est[name]["confidence"] in ("on, sure", "on, probably", "unsure, left off", "off, probably", "off, sure")
    assert dict(osc_messages(est))["/pimodule/fx/reverb/confidence"] == (est["reverb"]["confidence"],)
    sure = {
        "eq": {"active": True, "probability": 0.95, "params": {}},
        "reverb": {"active": True, "probability": 0.7, "params": {}},
    }
    kept = keep_confident(sure, {"eq": 0.9, "reverb": 0.8})
    assert kept["eq"]["confidence"] == "on, sure" and kept["eq"]["active"]
    assert kept["reverb"]["confidence"] == "unsure, left off" and not kept["reverb"]["active"]
    assert sure["reverb"]["active"]  # the caller's estimate is not changed


def test_a_blind_estimate_leaves_the_level_as_it_is():
    """A processed file's level says nothing of its source's: a blind estimate's level stage is
    0 dB whatever the network put there, in fx mode and in what the laptop applies."""
    from pimodule.device.fx.estimator import keep_confident

    analyzer = FxAnalyzer(FX_MODEL, RATE_HZ, interval_s=0.1, smoothing=1.0)
    analyzer.history.write(_signal(1.5))
    assert analyzer.analyse_once()["gain"]["params"]["gain_db"] == 0.0
    est = {"gain": {"active": True, "params": {"gain_db": 13.4}}, "eq": {"active": True, "probability": 0.2}}
    kept = keep_confident(est, {})
    assert kept["gain"]["params"]["gain_db"] == 0.0 and not kept["eq"]["active"]
    assert est["gain"]["params"]["gain_db"] == 13.4  # the caller's estimate is not changed


def test_a_kept_blind_estimate_is_applied_at_its_calibrated_strength_and_says_so():
    from pimodule.device.fx.estimator import in_words, keep_confident

    est = {
        "reverb": {
            "active": True,
            "probability": 0.95,
            "params": {"decay_s": 1.0, "damping_pct": 40.0, "mix_pct": 60.0},
        },
        "distortion": {"active": True, "probability": 0.95, "params": {"drive_db": 20.0, "output_gain_db": -6.0}},
    }
    kept = keep_confident(est, {"reverb": 0.9}, {"reverb": 0.25})
    assert kept["reverb"]["active"] and kept["reverb"]["strength"] == 0.25
    assert kept["reverb"]["params"]["mix_pct"] == pytest.approx(15.0)  # a quarter of the way from dry
    assert kept["reverb"]["params"]["decay_s"] == 1.0  # what kind of room it is stays as heard
    assert "strength" not in kept["distortion"] and kept["distortion"]["params"]["drive_db"] == 20.0
    assert est["reverb"]["params"]["mix_pct"] == 60.0  # the caller's estimate is not changed
    line = next(w for w in in_words(kept) if w.startswith("reverb"))
    assert "mix 15 %" in line and "applied at 25 %" in line
    sent = dict(osc_messages(kept))
    assert sent["/pimodule/fx/reverb/strength"] == (0.25,) and "/pimodule/fx/distortion/strength" not in sent


def test_calibration_entries_are_read_as_data_and_never_kept_stays_never_kept():
    from pimodule.device.fx.estimator import read_per_effect

    assert read_per_effect('{"reverb": 1.01, "eq": 0.8}', 0.0, 1.01) == {"reverb": 1.01, "eq": 0.8}
    assert read_per_effect('{"reverb": 2, "eq": "x", "os.system": 0.5}', 0.0, 1.01) == {}
    assert read_per_effect("[not json", 0.0, 1.0) == {} and read_per_effect(None, 0.0, 1.0) == {}
    assert read_per_effect('{"eq": 1.01}', 0.0, 1.0) == {}  # a strength above 1 is no strength
    analyzer = FxAnalyzer(FX_MODEL, RATE_HZ, interval_s=0.1, smoothing=1.0)
    assert (
        set(analyzer.estimator.keep) == set(analyzer.estimator.strength) == {"eq", "compressor", "distortion", "reverb"}
    )


@pytest.mark.parametrize("gain_db", [-12.0, 0.0, 6.0])
def test_a_dry_models_estimate_comes_at_the_recordings_level(gain_db):
    """A dry model is trained with levels matched, so its gain output means nothing: the estimate
    that reaches the matcher (before the check's first result) has its level in closed form, the
    chain's render on R at L's level."""
    dry = _signal(1.5, seed=3)
    analyzer = FxAnalyzer(FX_DRY_MODEL, RATE_HZ, smoothing=1.0)
    analyzer.history.write((10 ** (gain_db / 20) * dry).astype(np.float32))
    analyzer.other_history.write(dry)
    est = analyzer.analyse_once()
    raw = analyzer.estimator.describe(*analyzer._smoothed)["gain"]["params"]["gain_db"]
    colouring = ("eq", "compressor", "distortion", "reverb")
    assert not any(est[e]["active"] for e in colouring)  # nothing but the level to hear
    assert est["gain"]["active"] and est["gain"]["params"]["gain_db"] == pytest.approx(gain_db, abs=0.5), raw


def test_leveling_refuses_what_it_cannot_measure():
    from pimodule.device.fx.check import SubsetCheck

    check = SubsetCheck(16000)
    x = _signal(0.5)[:8000].astype(np.float64)
    estimator = FxAnalyzer(FX_DRY_MODEL, RATE_HZ).estimator
    n_modes = len(DISTORTION_MODES)
    est = estimator.describe(
        np.zeros(len(estimator.chain)), np.eye(n_modes)[0], np.full(len(estimator.info.controls), 0.5)
    )
    for dry, wet in ((x, x[:-1]), (x, np.where(np.arange(x.size) == 5, np.nan, x))):
        with pytest.raises(ValueError):
            check.with_level(dry, wet, est)
    assert check.with_level(x, 0.5 * x, est)["gain"]["params"]["gain_db"] == pytest.approx(-6.02, abs=0.1)
