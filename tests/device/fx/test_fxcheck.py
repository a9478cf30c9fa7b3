"""fx mode's check of a dry or reference model's estimates (pimodule.device.fx.check_thread):
offered windows are checked off the analyzer's thread, the checked chain then drives matching, bad
windows are refused and change nothing, a blind model's estimates have nothing to be checked
against, the daemon publishes the checks."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from pimodule.core.fx_specs import SELECTABLE, SPECS
from pimodule.device.fx.check import CheckConfig
from pimodule.device.fx.check_thread import FxChecker
from pimodule.device.fx.mode import FxAnalyzer, FxMatcher

FX_DRY_MODEL = Path(__file__).resolve().parents[3] / "export" / "fx-dry.onnx"
FX_REF_MODEL = FX_DRY_MODEL.with_name("fx-ref.onnx")
FX_BLIND_MODEL = FX_DRY_MODEL.with_name("fx.onnx")
RATE_HZ = 48000
FAST = CheckConfig(n_candidates=1, steps=(0.1,))
pytestmark = pytest.mark.timeout(180)


def _dry(seconds: float, rate: int = RATE_HZ, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = np.sin(2 * np.pi * 196 * t) + 0.5 * np.sin(2 * np.pi * 392 * t)
    return (0.25 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t)) + 0.005 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def _clipped(dry: np.ndarray) -> np.ndarray:
    return (np.clip(10.0 * dry, -0.5, 0.5) * 0.6).astype(np.float32)


def test_the_check_drives_matching_from_its_first_result():
    matcher = FxMatcher(RATE_HZ, 256)
    followed, published = [], []
    checker = FxChecker(
        0.05, follow=lambda est: followed.append(est) or matcher.follow(est), publish=published.append, config=FAST
    )
    analyzer = FxAnalyzer(FX_DRY_MODEL, RATE_HZ, interval_s=0.1, smoothing=1.0, matcher=matcher, checker=checker)
    dry = _dry(1.5)
    analyzer.history.write(_clipped(dry))
    analyzer.other_history.write(dry)
    assert checker.check_once() is None  # nothing offered yet
    first = analyzer.analyse_once()
    assert matcher.matched()["distortion"]["params"]["drive_db"] == pytest.approx(
        first["distortion"]["params"]["drive_db"]
    )
    checked = checker.check_once()
    assert checked is not None and checker.driving and followed == [checked] and published == [checked]
    assert checked["distortion"]["active"]  # a hard clipper is heard
    assert set(checked) == set(first) and all(isinstance(checked[n]["active"], bool) for n in SELECTABLE)
    held = matcher.matched()
    for name in SELECTABLE:
        assert held[name]["active"] == checked[name]["active"]
    analyzer.history.write(dry)  # the estimates move on; matching stays with the check until the next one
    analyzer.other_history.write(dry)
    analyzer.analyse_once()
    assert matcher.matched() == held
    assert checker.check_once() is not None and checker.n_checks == 2


def test_a_window_the_check_refuses_changes_nothing():
    seen = []
    checker = FxChecker(0.05, follow=seen.append, config=FAST)
    dry = _dry(1.0, 16000)
    est = {n: {"active": True, "probability": 0.5, "params": {}} for n in (*SELECTABLE, "gain")}
    checker.offer(16000, dry[:-5], dry, est)  # lengths differ
    assert checker.check_once() is None and checker.n_failed == 1 and not seen and not checker.driving
    bad = dry.copy()
    bad[100] = np.nan
    checker.offer(16000, bad, dry, est)
    assert checker.check_once() is None and checker.n_failed == 2 and checker.latest == {}


def test_a_reference_models_estimate_is_checked_against_the_reference():
    """Reference L (a clipped tone), input R (another, clean tone): the checked chain keeps only
    what brings R closer to the reference's sound than R as it is, at the reference's level, and
    drives matching from then on."""
    from pimodule.device.fx.style_check import ReferenceCheck

    matcher = FxMatcher(RATE_HZ, 256)
    checker = FxChecker(0.05, follow=matcher.follow, config=FAST)
    analyzer = FxAnalyzer(FX_REF_MODEL, RATE_HZ, interval_s=0.1, smoothing=1.0, matcher=matcher, checker=checker)
    assert analyzer.estimator.conditioning == "reference"
    reference, x = _clipped(_dry(1.5, seed=1)), _dry(1.5, seed=2)[::-1].copy()  # other content
    analyzer.history.write(reference)
    analyzer.other_history.write(x)
    first = analyzer.analyse_once()
    assert first is not None and not checker.driving
    checked = checker.check_once()
    assert checked is not None and checker.driving
    held = matcher.matched()
    assert all(held[n]["active"] == checked[n]["active"] for n in SELECTABLE)
    assert all(checked[n]["confidence"] for n in SELECTABLE)
    check = next(iter(checker._checks.values()))
    assert isinstance(check, ReferenceCheck)
    scores = check.last["candidates"]
    picked = tuple(n for n in SELECTABLE if checked[n]["active"])
    assert scores[picked][0] <= scores[()][0]  # never further from the reference than R as it is
    assert checked["distortion"]["active"]  # the reference's clipping is what R lacks


def test_a_blind_models_estimates_are_not_offered():
    checker = FxChecker(0.05, config=FAST)
    analyzer = FxAnalyzer(FX_BLIND_MODEL, RATE_HZ, interval_s=0.1, checker=checker)
    analyzer.history.write(_clipped(_dry(1.5)))
    assert analyzer.analyse_once() is not None
    assert checker.check_once() is None and not checker.driving
    with pytest.raises(ValueError, match="blind"):
        checker.offer(16000, _dry(1.0, 16000), _dry(1.0, 16000), {}, "blind")


def test_another_estimator_forgets_the_checks():
    checker = FxChecker(0.05, config=FAST)
    analyzer = FxAnalyzer(FX_DRY_MODEL, RATE_HZ, interval_s=0.1, checker=checker)
    dry = _dry(1.5)
    analyzer.history.write(_clipped(dry))
    analyzer.other_history.write(dry)
    analyzer.analyse_once()
    assert checker.check_once() is not None and checker.driving
    assert analyzer.swap_estimator(FX_DRY_MODEL)
    assert not checker.driving and checker.check_once() is None


@pytest.mark.parametrize("model", [FX_DRY_MODEL, FX_REF_MODEL], ids=["dry", "reference"])
def test_the_daemon_publishes_checks_and_counts_them(fx_daemon, model):
    """L the wet signal (dry model) or the reference (reference model: R, the input, is other
    content), both a clipped tone: the check hears the clipping and says so over OSC."""
    from pimodule.device.io.osc import OscClient

    dry = np.tile(_dry(2.0), 15)
    right = dry if model == FX_DRY_MODEL else np.tile(_dry(2.0, seed=3)[::-1], 15)
    got = {}
    with fx_daemon(model, np.stack([_clipped(dry), right], 1), 30.0, check_interval_s=0.2) as d:
        assert d.fx.checker is not None
        with OscClient("127.0.0.1", d.osc.port) as c:
            c.request("/pimodule/status/subscribe", c.port, 2.0, expect="/pimodule/status/subscribed", timeout_s=20)
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and "/pimodule/fx/checked/gain/gain_db" not in got:
                msg = c.receive(0.5)
                if msg:
                    got[msg[0]] = msg[1]
            status = c.request("/pimodule/status", expect="/pimodule/status/fx_checks", timeout_s=10)
            inputs = c.request("/pimodule/status", expect="/pimodule/status/fx_inputs", timeout_s=10)[1]
    assert got.get("/pimodule/fx/checked/distortion/active") == [1]
    assert "/pimodule/fx/checked/distortion/drive_db" in got and status[1][0] >= 1
    assert inputs == (["L wet, R dry"] if model == FX_DRY_MODEL else ["L reference, R input"])  # which jack is which
    assert d.fx.checker.n_failed == 0 and d.runner.stats.n_exceptions == 0


def test_the_check_never_takes_more_than_half_a_core():
    """The pause before the next check is the configured one, and at least as long as the last
    check took (a dry check is about 2.3 s of a Pi 4 core): the thread works at most half the time."""
    checker = FxChecker(1.0, config=FAST)
    assert checker.pause_s == 1.0
    checker.last_check_ms = 300.0
    assert checker.pause_s == 1.0
    checker.last_check_ms = 2300.0
    assert checker.pause_s == pytest.approx(2.3)
    dry = _dry(1.0, 16000)
    est = {
        n: {"active": True, "probability": 0.9, "params": {s.name: s.default for s in SPECS[n]}}
        for n in (*SELECTABLE, "gain")
    }
    checker.offer(16000, _clipped(dry), dry, est)
    assert checker.check_once() is not None
    assert checker.pause_s == max(1.0, checker.last_check_ms / 1e3)  # from the check that ran
