"""Validation in a child process with limits: state that goes bad after the warm-up, a model too
slow for this board (refused with its figure), one that needs too much memory (stopped by the
cap), one that hangs (killed at the deadline); real onnxruntime, real rlimits, real processes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pimodule.core.modelfile import ModelFileError
from pimodule.device.validate import Report, ValidationBudget, validate

EXPORT = Path(__file__).resolve().parents[2] / "export"
pytestmark = pytest.mark.timeout(300)


def test_a_good_voice_passes_with_its_figures(tmp_path, synthetic_voice):
    report = validate(synthetic_voice(tmp_path / "ok.onnx"), "ddsp", expect_rate=16000, expect_block=64)
    assert report.ok, report.reason
    assert report.frames == 2000 and report.kind == "ddsp" and 0 < report.peak < 1
    t = report.timing
    assert t["period_us"] == 4000 and t["budget_us"] == pytest.approx(1600)
    assert 0 < t["cpu_p50_us"] <= t["cpu_p99_us"] < t["budget_us"]
    assert 0 < report.max_rss_kb < 512 * 1024
    again = Report.from_dict(json.loads(json.dumps(report.to_dict())))  # plain data
    assert again == report and again.raise_if_refused() is again


def test_the_shipped_models_pass():
    voice = validate(EXPORT / "violin.onnx", "ddsp", expect_rate=16000, expect_block=64)
    assert voice.ok, voice.reason
    estimator = validate(EXPORT / "fx.onnx")
    assert estimator.ok and estimator.kind == "fx" and estimator.frames == 5, estimator.reason
    assert estimator.timing["cpu_p99_us"] < estimator.timing["budget_us"]


def test_state_that_turns_nan_after_the_warm_up_is_caught(tmp_path, synthetic_voice):
    report = validate(synthetic_voice(tmp_path / "later.onnx", "nan_later"), "ddsp")
    assert not report.ok and report.code == "nonfinite"
    assert "state 'counter' turns NaN or inf at frame 101" in report.reason
    with pytest.raises(ModelFileError, match="frame 101"):
        report.raise_if_refused()


def test_a_slow_voice_is_refused_with_its_figure(tmp_path, synthetic_voice):
    path = synthetic_voice(tmp_path / "slow.onnx", "slow", size=512, n_matmuls=6)  # ~8 ms a frame here
    report = validate(path, "ddsp")
    assert not report.ok and report.code == "slow", report.reason
    assert "too slow for this board: takes" in report.reason and "the budget on this board is 1.60 ms" in report.reason
    assert report.timing["cpu_p99_us"] > 1600 and report.frames == 300  # refused early, not after 8 s
    # the engine may run it faster than onnxruntime: its own figure decides then
    short = ValidationBudget(frames=200)
    fast = validate(path, "ddsp", short, engine_cost=lambda p: {"p99_us": 900.0, "p50_us": 700.0})
    assert fast.ok and fast.timing["engine_p99_us"] == 900.0 and fast.timing["cpu_p99_us"] > 1600
    slow = validate(path, "ddsp", short, engine_cost=lambda p: {"p99_us": 9100.0})
    assert not slow.ok and "takes 9.10 ms per frame at p99, the budget on this board is 1.60 ms" in slow.reason


def test_a_memory_hungry_voice_is_stopped_by_the_cap(tmp_path, synthetic_voice):
    report = validate(synthetic_voice(tmp_path / "hungry.onnx", "hungry"), "ddsp")
    assert not report.ok and report.code == "memory", report.reason
    assert "512 MiB memory cap" in report.reason


def test_a_voice_that_hangs_is_killed_at_the_deadline(tmp_path, synthetic_voice):
    budget = ValidationBudget(deadline_s=6.0)
    t0 = time.monotonic()
    report = validate(synthetic_voice(tmp_path / "hang.onnx", "hang"), "ddsp", budget)
    assert not report.ok and report.code == "deadline", report.reason
    assert "did not finish within 6 s (killed)" in report.reason
    assert time.monotonic() - t0 < 20


def test_the_cpu_limit_stops_what_the_deadline_would_not(tmp_path, synthetic_voice):
    report = validate(synthetic_voice(tmp_path / "hang.onnx", "hang"), "ddsp", ValidationBudget(cpu_s=3))
    assert not report.ok and report.code == "deadline" and "CPU" in report.reason, report.reason


@pytest.mark.parametrize(
    "bad, kind, reason",
    [
        ("bad_corrupt", None, "not an ONNX model"),
        ("bad_rate", "ddsp", "runs at 22050 Hz, the engine at 16000 Hz"),
        ("bad_nan", "ddsp", "NaN"),
        ("voice_a", "fx", "a voice (ddsp), where an effect estimator (fx) is expected"),
    ],
)
def test_unplayable_files_are_refused_with_a_reason(model_dir, bad, kind, reason):
    report = validate(model_dir / f"{bad}.onnx", kind, expect_rate=16000, expect_block=64)
    assert not report.ok and reason in report.reason
    assert str(model_dir) not in report.reason  # names the file, not where it lives


def test_an_estimator_is_run_on_windows(tmp_path, model_dir):
    fx = validate(EXPORT / "fx-dry.onnx", "fx")
    assert fx.ok and fx.timing["budget_us"] == pytest.approx(100_000), fx.reason
    tight = validate(EXPORT / "fx-dry.onnx", "fx", ValidationBudget(fx_share=1e-5))
    assert not tight.ok and "per analysis window at p99" in tight.reason
