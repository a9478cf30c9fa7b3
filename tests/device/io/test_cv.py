"""MCP3208 wire protocol (fake chip decoding real command bits), inversion, calibration, smoothing."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from pimodule.device.io.cv import (
    HZ_AT_0V,
    MCP3208,
    Calibration,
    CVReader,
    FakeMCP3208,
    decode_reply,
    encode_read,
    volts_to_hz,
)
from pimodule.device.io.hardware import load_hardware


@pytest.fixture()
def adc():
    return load_hardware().adc


def test_command_bytes_follow_the_datasheet():
    assert encode_read(0) == [0x06, 0x00, 0x00]
    assert encode_read(3) == [0x06, 0xC0, 0x00]
    assert encode_read(4) == [0x07, 0x00, 0x00]
    assert encode_read(7) == [0x07, 0xC0, 0x00]
    assert encode_read(5, single_ended=False) == [0x05, 0x40, 0x00]
    with pytest.raises(ValueError):
        encode_read(8)


def test_fake_decodes_channel_and_answers_with_null_bit_and_msbs():
    chip = FakeMCP3208()
    chip.set_code(5, 0xABC)
    rx = chip.xfer2(encode_read(5))
    assert chip.transactions[-1] == (True, 5)
    assert rx[1] & 0x1F == 0x0A  # null bit 0, then B11..B8
    assert rx[2] == 0xBC
    assert decode_reply(rx) == 0xABC


def test_every_channel_and_code_round_trips():
    chip = FakeMCP3208()
    mcp = MCP3208(chip)
    for ch in range(8):
        for code in (0, 1, 0x800, 0x555, 0xAAA, 4094, 4095):
            chip.set_code(ch, code)
            assert mcp.read(ch) == code
    assert [c for _, c in chip.transactions[::7]] == list(range(8))


def test_fake_follows_start_bit_in_another_alignment():
    # start bit as the MSB of byte 0: 1 SGL D2 D1 D0, sample, null, B11..B0 (ends in byte 2).
    chip = FakeMCP3208()
    chip.set_code(6, 0x9C3)
    rx = chip.xfer2([0b1111_0000, 0, 0])  # start, SGL=1, D2 D1 D0 = 1 1 0
    assert chip.transactions[-1] == (True, 6)
    bits = "".join(f"{b:08b}" for b in rx)
    assert bits[6] == "0"  # null bit
    assert int(bits[7:19], 2) == 0x9C3
    assert bits[19:24] == f"{0x9C3:012b}"[-2::-1][:5]  # then LSB-first B1..B5


def test_differential_and_saturation():
    chip = FakeMCP3208()
    chip.set_code(0, 3000)
    chip.set_code(1, 1000)
    assert decode_reply(chip.xfer2(encode_read(0, single_ended=False))) == 2000
    assert decode_reply(chip.xfer2(encode_read(1, single_ended=False))) == 0  # CH0- CH1+: negative
    chip.set_code(2, 99999)
    assert MCP3208(chip).read(2) == 4095
    chip.set_volts(3, 3.3)
    assert MCP3208(chip).read(3) == 4095
    chip.set_volts(3, 1.65)
    assert MCP3208(chip).read(3) == 2048


def test_null_bit_fault_and_no_start_bit():
    with pytest.raises(ValueError, match="null bit"):
        decode_reply([0, 0x10, 0])
    assert FakeMCP3208().xfer2([0, 0, 0]) == [0xFF, 0xFF, 0xFF]


def _set_value(chip, adc, name, value):
    chip.set_code(adc.channel(name).channel, adc.invert_from - value)


def test_inversion_calibration_and_clamping(adc):
    chip = FakeMCP3208()
    reader = CVReader(MCP3208(chip), adc)
    for name in adc.names:
        _set_value(chip, adc, name, 2000)  # mid scale = 0 V nominal
    _set_value(chip, adc, "cv2", 4000)  # top = +5 V
    chip.set_code(adc.channel("pot1").channel, 4095)  # 4001-4095 < 0: clamped to 0 -> -5 V
    chip.set_code(adc.channel("pot2").channel, 0)  # 4001 > 4000: clamped to 4000 -> +5 V
    reader.poll_once()
    v = reader.snapshot()
    assert v["cv1"] == pytest.approx(0.0)
    assert v["cv2"] == pytest.approx(5.0)
    assert v["pot1"] == pytest.approx(-5.0)
    assert v["pot2"] == pytest.approx(5.0)
    assert reader.counters.clamped == 2
    assert reader.raw[reader.index("pot1")] == 4095


def test_nonfinite_and_bus_errors_never_published(adc):
    chip = FakeMCP3208()
    bad = Calibration(float("nan"), 0.0)
    reader = CVReader(MCP3208(chip), adc, calibrations={"cv3": bad})
    _set_value(chip, adc, "cv3", 1234)
    reader.poll_once()
    assert reader.values[reader.index("cv3")] == 0.0
    assert reader.counters.nonfinite == 1
    assert np.all(np.isfinite(reader.values))
    chip.fail_next = 2
    reader.poll_once()
    assert reader.counters.bus_errors == 2
    assert reader.counters.polls == 2


def test_two_point_calibration_and_pitch(adc):
    cal = Calibration.from_two_points(2400.0, 1.0, 3200.0, 3.0)
    assert cal.volts(2400.0) == pytest.approx(1.0)
    assert cal.volts(2800.0) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        Calibration.from_two_points(100.0, 1.0, 100.0, 3.0)
    assert volts_to_hz(1.0) == pytest.approx(2 * HZ_AT_0V)
    assert volts_to_hz(-1.0) == pytest.approx(HZ_AT_0V / 2)
    chip = FakeMCP3208()
    reader = CVReader(MCP3208(chip), adc, calibrations={"cv1": cal})
    _set_value(chip, adc, "cv1", 2800)
    reader.poll_once()
    assert reader.values[reader.index("cv1")] == pytest.approx(2.0)
    with pytest.raises(KeyError):
        CVReader(MCP3208(chip), adc, calibrations={"nope": cal})


def test_noisy_held_value_does_not_jitter_and_steps_are_followed(adc):
    chip = FakeMCP3208(noise_lsb=1.0, rng=np.random.default_rng(7))
    reader = CVReader(MCP3208(chip), adc)
    for name in adc.names:
        _set_value(chip, adc, name, 2400)
    for _ in range(300):
        reader.poll_once()
    held = reader.values.copy()
    changes = 0
    for _ in range(1500):
        before = reader.values.copy()
        reader.poll_once()
        changes += int(np.any(reader.values != before))
    assert changes == 0
    assert np.allclose(held, 1.0, atol=0.01)  # 2400 steps = +1 V nominal
    _set_value(chip, adc, "cv1", 2800)  # +2 V
    for _ in range(300):
        reader.poll_once()
    assert reader.values[reader.index("cv1")] == pytest.approx(2.0, abs=0.005)


def test_polling_thread_publishes_and_stops(adc):
    chip = FakeMCP3208()
    reader = CVReader(MCP3208(chip), adc, poll_rate_hz=500.0)
    _set_value(chip, adc, "cv2", 3600)  # +4 V
    reader.start()
    try:
        t_end = time.monotonic() + 10.0
        while reader.sequence < 20 and time.monotonic() < t_end:
            time.sleep(0.01)
        assert reader.sequence >= 20
        assert math.isclose(reader.values[reader.index("cv2")], 4.0, abs_tol=0.01)
    finally:
        reader.stop()
    assert reader._thread is None
    seq = reader.sequence
    time.sleep(0.05)
    assert reader.sequence == seq
