"""`pimodule bench` (the daemon's callback timed on a real model) and `pimodule calibrate --fake`."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pimodule.device import bench, benchfloor
from pimodule.device import config as config_mod
from pimodule.device import cv_calibrate as calibrate
from pimodule.device.config import load_config


def test_bench_plays_both_engines_and_reports_responses_and_ratios(model_dir, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = argparse.Namespace(
        models=[model_dir / "voice_a.onnx", model_dir / "voice_b.onnx"],
        block_sizes=[128],
        sample_rate=48000,
        seconds=0.6,
        engines=["compiled", "onnxruntime"],
        loads=["idle", "swaps"],
        modes=["synth"],
        realtime_server=False,
        no_jack=True,
        soak=0,
        out=out,
        cpus="auto",
        no_floor=False,
    )
    mask = os.sched_getaffinity(0)
    assert bench.main(args) == 0
    assert os.sched_getaffinity(0) == mask  # the bench pins itself to the control CPUs, then lets go
    result = json.loads(out.read_text())
    if benchfloor.available():  # the machine's floor, idle and under the check, at the block size
        assert [(f["load"], f["block_size"]) for f in result["floor"]] == [("idle", 128), ("check", 128)]
        assert all(f["wakeups"] > 100 and f["late"] >= 0 for f in result["floor"])
    rows = result["rows"]
    assert {(r["model"], r["engine"], r["load"]) for r in rows} == {
        (m, e, ld) for m in ("voice_a", "voice_b") for e in ("compiled", "onnxruntime") for ld in ("idle", "swaps")
    }
    for r in rows:
        assert r["blocks"] > 100 and 0 < r["p50_us"] <= r["p99_us"] <= r["max_us"]
        assert r["late_blocks"] >= 0 and r["cold_start_s"] > 0
    assert any(r["load"] == "swaps" and r["load_counts"]["swaps"] >= 0 for r in rows)
    assert len(result["ratios"]) == 4 and all(r["p99_ratio"] > 0 for r in result["ratios"])
    assert "voice_a" in capsys.readouterr().out


def test_bench_refuses_a_bad_model(model_dir):
    args = argparse.Namespace(
        models=[model_dir / "bad_nan.onnx"],
        block_sizes=[128],
        sample_rate=48000,
        seconds=0.2,
        engines=["compiled"],
        loads=["idle"],
        modes=["synth"],
        realtime_server=False,
        no_jack=True,
        out=None,
        cpus="none",
        no_floor=True,
    )
    assert bench.main(args) == 1


def test_bench_refuses_a_file_that_is_not_a_model(tmp_path, caplog):
    junk = tmp_path / "take.wav"
    junk.write_bytes(b"RIFF\x00\x00\x00\x00WAVE")
    args = argparse.Namespace(models=[junk], cpus="none")
    assert bench.main(args) == 2  # refused by name, not skipped (a bench of nothing but the floor)
    assert "take.wav" in caplog.text and "not an ONNX model" in caplog.text


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


@pytest.fixture
def tmp_home(tmp_path, monkeypatch):
    """A HOME of its own and no module config: what calibrate and the daemon's lookup see."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    system = tmp_path / "etc" / "pimodule" / "config.toml"
    monkeypatch.setattr(config_mod, "SYSTEM_CONFIG_PATH", system)
    monkeypatch.setattr(calibrate, "SYSTEM_CONFIG_PATH", system)
    return home, system


def _fake_args(config=None):
    return argparse.Namespace(config=config, channel="cv1", low_volts=1.0, high_volts=3.0, n_reads=64, fake=True)


def test_calibrate_writes_the_users_config_never_the_repositorys(tmp_home, capsys):
    home, _ = tmp_home
    repo_default = config_mod.DEFAULT_CONFIG_PATH.read_bytes()
    assert load_config(None).cv.calibration_of("cv1") is None
    assert calibrate.main(_fake_args()) == 0
    user = home / ".config" / "pimodule" / "config.toml"
    assert f"written to {user}" in capsys.readouterr().out
    assert user.read_text().startswith("# pimodule daemon config of this user")
    assert config_mod.DEFAULT_CONFIG_PATH.read_bytes() == repo_default
    cfg = load_config(None)  # the daemon without --config: the user's file over the repository's defaults
    assert cfg.source == str(user) and cfg.cv.calibration_of("cv1") is not None
    assert cfg.models_dir() == config_mod.DEFAULT_CONFIG_PATH.parents[1] / "export"
    assert cfg.engine == load_config(config_mod.DEFAULT_CONFIG_PATH).engine


def test_calibrate_writes_the_modules_config_when_it_may(tmp_home, capsys, monkeypatch):
    home, system = tmp_home
    system.parent.mkdir(parents=True)
    system.write_text('[models]\ndir = "/var/lib/pimodule/models"\n')
    assert calibrate.main(_fake_args()) == 0
    assert f"written to {system}" in capsys.readouterr().out
    cfg = load_config(None)
    assert cfg.source == str(system) and cfg.cv.calibration_of("cv1") is not None
    assert cfg.models_dir() == Path("/var/lib/pimodule/models")
    monkeypatch.setattr(calibrate.os, "access", lambda path, mode: False)  # a user without sudo
    assert calibrate.main(_fake_args()) == 0
    out = capsys.readouterr().out
    assert f"written to {home / '.config' / 'pimodule' / 'config.toml'}" in out and "run with sudo" in out


def test_calibrate_refuses_the_repository_defaults_and_takes_a_given_path(tmp_home, tmp_path):
    repo_default = config_mod.DEFAULT_CONFIG_PATH.read_bytes()
    with pytest.raises(ValueError, match="never written"):
        calibrate.main(_fake_args(config_mod.DEFAULT_CONFIG_PATH))
    assert config_mod.DEFAULT_CONFIG_PATH.read_bytes() == repo_default
    given = tmp_path / "deep" / "mine.toml"
    assert calibrate.main(_fake_args(given)) == 0
    assert load_config(given).cv.calibration_of("cv1") is not None


def test_pimodule_calibrate_command_uses_home(tmp_path):
    if config_mod.SYSTEM_CONFIG_PATH.is_file():
        pytest.skip(f"{config_mod.SYSTEM_CONFIG_PATH} exists on this machine")
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("XDG_CONFIG_HOME", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pimodule.cli", "calibrate", "--fake", "--n-reads", "32"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"written to {tmp_path / '.config' / 'pimodule' / 'config.toml'}" in proc.stdout


def test_calibrate_refuses_points_too_close():
    with pytest.raises(ValueError, match="apart"):
        calibrate.calibrate(lambda: 1000.0, lambda v: None, 1.0, 1.2, 4)
    with pytest.raises(ValueError):  # the same reading at both points (nothing patched)
        calibrate.calibrate(lambda: 1000.0, lambda v: None, 1.0, 3.0, 4)
