"""`pimodule bench` (the daemon's callback timed on a real model) and `pimodule calibrate --fake`."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from pimodule.device import bench
from pimodule.device import cv_calibrate as calibrate
from pimodule.device.config import load_config


def test_bench_rows_table_and_json(model_dir, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = argparse.Namespace(
        models=[model_dir / "voice_a.onnx"],
        block_sizes=[64, 256],
        sample_rate=48000,
        n_blocks=30,
        out=out,
        modes=["synth", "transfer"],
    )
    assert bench.main(args) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["mode"], r["block_size"]) for r in rows] == [
        ("synth", 64),
        ("synth", 256),
        ("transfer", 64),
        ("transfer", 256),
    ]
    for r in rows:
        assert r["model"] == "test-0" and r["exceptions"] == 0
        assert 0 < r["p50_us"] <= r["p99_us"] <= r["max_us"]
        assert r["rtf"] > 0 and r["rtf_cpu"] > 0 and r["model_frame_p50_us"] > 0
    printed = capsys.readouterr().out
    assert "test-0" in printed


def test_bench_refuses_a_bad_model(model_dir):
    args = argparse.Namespace(
        models=[model_dir / "bad_nan.onnx"], block_sizes=[128], sample_rate=48000, n_blocks=5, out=None, modes=["synth"]
    )
    assert bench.main(args) == 1


def test_calibrate_fake_board_recovers_its_true_input_stage(tmp_path, capsys):
    from pimodule.device.io.cv import Calibration

    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text('[engine]\nmode = "synth"\n')
    args = argparse.Namespace(config=cfg_path, channel="cv1", low_volts=1.0, high_volts=3.0, n_reads=256, fake=True)
    assert calibrate.main(args) == 0
    cal = load_config(cfg_path).cv.calibration_of("cv1")
    assert cal is not None and load_config(cfg_path).engine.mode == "synth"
    fitted = Calibration(cal.scale_v_per_step, cal.offset_v)
    for volts in (-2.0, 0.0, 2.0, 4.0):  # anywhere on the range, within 5 mV (6 cents)
        value = (volts - calibrate.FAKE_TRUE_OFFSET_V) / calibrate.FAKE_TRUE_SCALE_V_PER_STEP
        assert fitted.volts(value) == pytest.approx(volts, abs=0.005)
    assert "written to" in capsys.readouterr().out


def test_calibrate_refuses_points_too_close():
    with pytest.raises(ValueError, match="apart"):
        calibrate.calibrate(lambda: 1000.0, lambda v: None, 1.0, 1.2, 4)
    with pytest.raises(ValueError):  # the same reading at both points (nothing patched)
        calibrate.calibrate(lambda: 1000.0, lambda v: None, 1.0, 3.0, 4)


def test_bench_floor_rows(model_dir, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = argparse.Namespace(
        models=[model_dir / "voice_a.onnx"],
        block_sizes=[128],
        sample_rate=48000,
        n_blocks=40,
        out=out,
        modes=["synth"],
        no_torchscript=True,
        floor=True,
    )
    assert bench.main(args) == 0
    floor = json.loads(out.read_text())["floor"]
    whats = [r["what"] for r in floor]
    assert whats == [
        "callback without a model",
        "onnxruntime run, 1 node",
        "onnxruntime per extra node (1 floats)",
        "onnxruntime per extra node (4096 floats)",
    ]
    assert floor[0]["block_size"] == 128 and 0 < floor[0]["p50_us"] <= floor[0]["p99_us"]
    assert all(np.isfinite(r["p50_us"]) for r in floor)
    assert "callback without a model" in capsys.readouterr().out
