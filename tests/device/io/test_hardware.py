"""The Terminal Tedium data file loads, carries the board's facts, and bad files are refused."""

from __future__ import annotations

import copy
import tomllib

import pytest

from pimodule.device.io.hardware import DEFAULT_PATH, HardwareError, hardware_from_dict, load_hardware


@pytest.fixture()
def raw() -> dict:
    with DEFAULT_PATH.open("rb") as f:
        return tomllib.load(f)


def test_default_file_has_the_board_facts():
    hw = load_hardware(DEFAULT_PATH)
    assert hw.audio.overlay == "rpi-proto"
    assert hw.audio.alsa_card == "sndrpiproto"
    assert hw.audio.sample_rate_hz == 48000
    assert hw.adc.spi_device == "/dev/spidev0.1" and hw.adc.spi_mode == 0
    assert hw.adc.n_bits == 12 and hw.adc.invert_from == 4001 and hw.adc.max_code == 4000
    assert len(hw.adc.channels) == 6
    assert hw.adc.channel("cv1").role == "pitch"
    assert hw.gpio.trigger_pins == (4, 17, 14, 27)
    assert hw.gpio.button_pins == (23, 25, 24)
    assert hw.gpio.gate_pins == (12, 16)
    assert hw.gpio.led.pin == 26


def test_frozen(raw):
    hw = hardware_from_dict(raw)
    with pytest.raises(AttributeError):
        hw.adc.spi_mode = 3  # type: ignore[misc]


def test_duplicate_pin_refused(raw):
    bad = copy.deepcopy(raw)
    bad["gpio"]["gates"][0]["pin"] = 4  # same as trig1
    with pytest.raises(HardwareError, match="BCM pin 4"):
        hardware_from_dict(bad)


def test_channel_out_of_range_refused(raw):
    bad = copy.deepcopy(raw)
    bad["adc"]["channels"][2]["channel"] = 8
    with pytest.raises(HardwareError, match="outside 0..7"):
        hardware_from_dict(bad)


def test_duplicate_channel_refused(raw):
    bad = copy.deepcopy(raw)
    bad["adc"]["channels"][1]["channel"] = 0
    with pytest.raises(HardwareError, match="channel 0 used by both"):
        hardware_from_dict(bad)


def test_missing_key_and_bad_toml(raw, tmp_path):
    bad = copy.deepcopy(raw)
    del bad["adc"]["spi_device"]
    with pytest.raises(HardwareError, match="spi_device"):
        hardware_from_dict(bad)
    p = tmp_path / "x.toml"
    p.write_text("[board\nname=")
    with pytest.raises(HardwareError, match="not valid TOML"):
        load_hardware(p)
    with pytest.raises(HardwareError, match="cannot read"):
        load_hardware(tmp_path / "missing.toml")


def test_duplicate_names_and_bad_role_refused(raw):
    bad = copy.deepcopy(raw)
    bad["gpio"]["led"]["name"] = "cv1"
    with pytest.raises(HardwareError, match="duplicate name 'cv1'"):
        hardware_from_dict(bad)
    bad = copy.deepcopy(raw)
    bad["adc"]["channels"][0]["role"] = "volume"
    with pytest.raises(HardwareError, match="role 'volume'"):
        hardware_from_dict(bad)
    bad = copy.deepcopy(raw)
    bad["gpio"]["buttons"][0]["pin"] = 40
    with pytest.raises(HardwareError, match="outside BCM"):
        hardware_from_dict(bad)
