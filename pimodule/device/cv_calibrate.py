"""Two-point 1 V/oct calibration of CV1, written into your config file.

Patch a known voltage (say 1.000 V, measured with a meter) into CV1, press Enter; then a second
one (3.000 V). The averaged ADC values at both points give the channel's scale and offset
(``pimodule.device.io.cv.Calibration.from_two_points``), stored as ``[cv.calibration.cv1]``; the daemon
applies it, so 1 V at the jack is exactly one octave. ``--fake`` runs the same steps against a
simulated board (a FakeMCP3208 with a deliberately off-nominal input stage) with no prompts.
See hardware/README.md for the procedure on the module.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

from pimodule.device.config import DEFAULT_CONFIG_PATH, CvCalibration, write_calibration
from pimodule.device.io.cv import MCP3208, Calibration, CVReader, FakeMCP3208, SpidevBus
from pimodule.device.io.hardware import load_hardware

log = logging.getLogger(__name__)

# The simulated board of --fake: its true input stage (what calibration should find).
FAKE_TRUE_SCALE_V_PER_STEP = 0.00247
FAKE_TRUE_OFFSET_V = -4.93


EXAMPLES = (
    "pimodule calibrate --config /etc/pimodule/config.toml",
    "pimodule calibrate --fake --config /tmp/test.toml",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        help="config TOML to write the calibration into (default: %(default)s)",
    )
    parser.add_argument("--channel", default="cv1", help="ADC channel name (default: cv1)")
    parser.add_argument("--low-volts", type=float, default=1.0, help="first reference voltage")
    parser.add_argument("--high-volts", type=float, default=3.0, help="second reference voltage")
    parser.add_argument("--n-reads", type=int, default=256, help="ADC reads averaged per point")
    parser.add_argument("--fake", action="store_true", help="a simulated board, no prompts (tests, demos)")


def average_value(read_value: Callable[[], float], n_reads: int) -> float:
    return sum(read_value() for _ in range(n_reads)) / n_reads


def calibrate(
    read_value: Callable[[], float], ask: Callable[[float], None], low_v: float, high_v: float, n_reads: int
) -> CvCalibration:
    """Ask for each reference voltage, average the inverted ADC values, fit the line."""

    if not abs(high_v - low_v) >= 0.5:
        raise ValueError("the two reference voltages should be at least 0.5 V apart")
    ask(low_v)
    value_low = average_value(read_value, n_reads)
    ask(high_v)
    value_high = average_value(read_value, n_reads)
    cal = Calibration.from_two_points(value_low, low_v, value_high, high_v)
    return CvCalibration(cal.scale_v_per_step, cal.offset_v)


def main(args: argparse.Namespace) -> int:

    hw = load_hardware()
    channel = hw.adc.channel(args.channel)
    if args.fake:
        fake = FakeMCP3208(noise_lsb=1.0)
        chip = MCP3208(fake)

        def ask(volts: float) -> None:
            value = (volts - FAKE_TRUE_OFFSET_V) / FAKE_TRUE_SCALE_V_PER_STEP
            fake.set_code(channel.channel, int(round(hw.adc.invert_from - value)))
            print(f"[fake board] {volts:.3f} V patched into {args.channel}")
    else:
        chip = MCP3208(SpidevBus.open(hw.adc))

        def ask(volts: float) -> None:
            input(f"Patch exactly {volts:.3f} V into {args.channel.upper()} (check with a meter), then press Enter ")

    reader = CVReader(chip, hw.adc)

    def read_value() -> float:
        return reader.value_of(chip.read(channel.channel))

    try:
        cal = calibrate(read_value, ask, args.low_volts, args.high_volts, args.n_reads)
    except ValueError as err:
        log.error("calibration failed: %s", err)
        return 1
    write_calibration(args.config, args.channel, cal)
    nominal = (hw.adc.volts_at_max - hw.adc.volts_at_min) / hw.adc.max_code
    print(
        f"{args.channel}: {cal.scale_v_per_step * 1e3:.5f} mV/step (nominal {nominal * 1e3:.5f}), "
        f"offset {cal.offset_v:+.4f} V -> written to {args.config}"
    )
    return 0
