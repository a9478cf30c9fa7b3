"""Two-point 1 V/oct calibration of CV1, written into your config file (never the repository's).

Patch a known voltage (say 1.000 V, measured with a meter) into CV1, press Enter; then a second
one (3.000 V). The averaged ADC values at both points give the channel's scale and offset
(``pimodule.device.io.cv.Calibration.from_two_points``), stored as ``[cv.calibration.cv1]``; the daemon
applies it, so 1 V at the jack is exactly one octave. ``--fake`` runs the same steps against a
simulated board (a FakeMCP3208 with a deliberately off-nominal input stage) with no prompts.
See hardware/README.md for the procedure on the module.

Where it is written: the path given with --config; otherwise the module's
/etc/pimodule/config.toml when it exists and you may write it (sudo), else your own
~/.config/pimodule/config.toml (created). ``pimodule run`` without --config reads that same file
over the repository's configs/default.toml, which calibrate never writes.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from pathlib import Path

from pimodule.device.config import (
    DEFAULT_CONFIG_PATH,
    SYSTEM_CONFIG_PATH,
    CvCalibration,
    user_config_path,
    write_calibration,
)
from pimodule.device.io.cv import MCP3208, Calibration, CVReader, FakeMCP3208, SpidevBus
from pimodule.device.io.hardware import load_hardware

log = logging.getLogger(__name__)

# The simulated board of --fake: its true input stage (what calibration should find).
FAKE_TRUE_SCALE_V_PER_STEP = 0.00247
FAKE_TRUE_OFFSET_V = -4.93


EXAMPLES = (
    "sudo pimodule calibrate          # on the module: into /etc/pimodule/config.toml",
    "pimodule calibrate --fake --config /tmp/test.toml",
)
NEW_FILE_HEADER = (
    "# pimodule daemon config of this user: `pimodule run` without --config reads it over the\n"
    "# repository's configs/default.toml (keys not set here keep those values).\n"
)


def target_config(given: Path | None) -> tuple[Path, str | None]:
    """(the file to write, a note for the user or None): the path given, else the module's config
    when it exists and is writable, else the user's (created)."""
    if given is not None:
        if given.expanduser().resolve() == DEFAULT_CONFIG_PATH.resolve():
            raise ValueError(
                f"{given} holds the repository's defaults and is never written: calibrate into your own "
                f"config (leave out --config: {user_config_path()})"
            )
        return given.expanduser(), None
    if SYSTEM_CONFIG_PATH.is_file():
        if os.access(SYSTEM_CONFIG_PATH, os.W_OK):
            return SYSTEM_CONFIG_PATH, None
        note = f"{SYSTEM_CONFIG_PATH} (the service's config) is not writable: run with sudo to calibrate the service"
        return user_config_path(), note
    return user_config_path(), None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help=f"config TOML to write the calibration into (default: {SYSTEM_CONFIG_PATH} when it exists and is "
        f"writable, else ~/.config/pimodule/config.toml, created)",
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

    target, note = target_config(args.config)  # before the hardware: a refused path is said first
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
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(NEW_FILE_HEADER)
    write_calibration(target, args.channel, cal)
    nominal = (hw.adc.volts_at_max - hw.adc.volts_at_min) / hw.adc.max_code
    print(
        f"{args.channel}: {cal.scale_v_per_step * 1e3:.5f} mV/step (nominal {nominal * 1e3:.5f}), "
        f"offset {cal.offset_v:+.4f} V -> written to {target}"
    )
    if note:
        print(f"note: {note}")
    return 0
