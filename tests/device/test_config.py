"""Daemon config: TOML → frozen dataclasses, errors name the key, calibration written in place."""

import dataclasses
import tomllib

import pytest

from pimodule.device.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    CvCalibration,
    DaemonConfig,
    load_config,
    override,
    parse_config,
    write_calibration,
)


def test_default_file_matches_the_dataclass_defaults():
    cfg = load_config(DEFAULT_CONFIG_PATH)
    assert cfg.audio == DaemonConfig().audio
    assert cfg.engine == DaemonConfig().engine
    assert cfg.osc == DaemonConfig().osc
    assert cfg.models == DaemonConfig().models
    assert cfg.models_dir() == DEFAULT_CONFIG_PATH.parents[1] / "export"


def test_values_and_types(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(
        '[audio]\ndevice = 3\nblock_size = 64\n[engine]\nmode = "transfer"\ngain_db = -3\n'
        '[engine.pots]\npot1 = "noise_gain_db"\n[models]\ndir = "/abs/models"\n'
    )
    cfg = load_config(p)
    assert cfg.audio.device == 3 and cfg.audio.block_size == 64
    assert cfg.engine.mode == "transfer" and cfg.engine.gain_db == -3.0
    assert cfg.engine.pots == (("pot1", "noise_gain_db"),)
    assert str(cfg.models_dir()) == "/abs/models"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.audio.block_size = 1  # frozen


@pytest.mark.parametrize(
    "data, match",
    [
        ({"audio": {"blocksize": 64}}, "unknown key 'blocksize'"),
        ({"engine": {"mode": "granular"}}, "engine.mode"),
        ({"audio": {"sample_rate_hz": 10}}, "sample_rate_hz"),
        ({"osc": {"host": "0.0.0.0"}}, "allow_hosts"),
        ({"flash": {"port": 70000}}, "flash.port"),
        ({"flash": {"serial": "/dev/ttyGS0"}}, "unknown key 'serial'"),
        ({"nonsense": {}}, "unknown sections"),
        ({"engine": {"loudness_range_db": [0, -10]}}, "loudness_range_db"),
        ({"cv": {"calibration": {"cv1": {"scale_v_per_step": 1}}}}, "offset_v"),
        ({"audio": {"cpus": "last"}}, "audio. cpus"),
        ({"audio": {"cpus": "3-1"}}, "audio. cpus"),
    ],
)
def test_errors_name_the_problem(data, match):
    with pytest.raises(ConfigError, match=match):
        parse_config(data)


def test_a_remote_flash_host_is_no_reason_to_refuse_the_config():
    # the TCP flash listener binds loopback whatever is set (the daemon logs that it ignored it):
    # an old config with flash.host = "0.0.0.0" must still start the module
    assert parse_config({"flash": {"host": "0.0.0.0"}}).flash.host == "0.0.0.0"


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[audio\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_override_rechecks():
    cfg = override(DaemonConfig(), "audio", block_size=256)
    assert cfg.audio.block_size == 256
    with pytest.raises(ConfigError):
        override(cfg, "engine", mode="nope")


def test_write_calibration_round_trip_keeps_the_rest(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('# my settings\n[audio]\nblock_size = 64\n\n[cv]\nbackend = "simulated"\n')
    write_calibration(p, "cv1", CvCalibration(0.0025, -5.0))
    write_calibration(p, "cv1", CvCalibration(0.0026, -5.1))  # replaced, not duplicated
    text = p.read_text()
    assert text.startswith("# my settings") and text.count("[cv.calibration.cv1]") == 1
    cfg = load_config(p)
    assert cfg.audio.block_size == 64 and cfg.cv.backend == "simulated"
    assert cfg.cv.calibration_of("cv1") == CvCalibration(0.0026, -5.1)
    tomllib.loads(text)


@pytest.mark.parametrize("path", [DEFAULT_CONFIG_PATH, DEFAULT_CONFIG_PATH.parent / "pi.toml"], ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.audio.sample_rate_hz == 48000 and cfg.engine.mode in ("synth", "transfer", "fx")
