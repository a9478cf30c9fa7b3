"""CV and pots of the Terminal Tedium: MCP3208 over SPI, calibrated, smoothed, handed to the callback.

Usage (daemon)::

    from pimodule.device.io.hardware import load_hardware
    from pimodule.device.io.cv import CVReader, MCP3208, SpidevBus

    hw = load_hardware()
    reader = CVReader(MCP3208(SpidevBus.open(hw.adc)), hw.adc)   # FakeMCP3208() in tests
    reader.start()                   # polling thread, hw.adc.poll_rate_hz (default 1 kHz)
    i = reader.index("cv1")          # once, outside the callback
    ...
    volts = reader.values[i]         # in the audio callback: a plain float64 read, no lock
    reader.stop()

Chain per channel: raw 12-bit code → Tedium inversion ``value = 4001 - raw`` clamped to 0..4000
(out-of-range codes counted) → volts through a per-channel :class:`Calibration` (scale, offset;
CV1 is 1 V/oct pitch: :func:`volts_to_hz`) → one-pole smoothing → dead-band → published.
Non-finite results are never published (counted in ``reader.counters``).

The hand-off: ``reader.values`` is one preallocated ``float64`` array that only the polling thread
writes, one slot at a time (an 8-byte aligned store: a reader sees the old or the new value, never
a torn one). ``reader.sequence`` increases after every poll. Never reassign the array.

Wire protocol (MCP3208 datasheet, "Using the MCP3208 with MCU SPI ports", 8-bit segments), mode 0:
``tx = [0b00000110 | D2, D1 D0 << 6, 0]`` (start bit, SGL=1, channel bits D2 D1 D0);
the chip answers ``rx[1] = ? ? ? 0 B11 B10 B9 B8`` (hi-Z, hi-Z, sample, null bit, MSBs) and
``rx[2] = B7 … B0``. :class:`FakeMCP3208` decodes and answers bit by bit the same way.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pimodule.device.io.hardware import AdcConfig
from pimodule.device.io.worker import BackgroundThread

log = logging.getLogger(__name__)

N_CHANNELS = 8
FULL_SCALE_CODE = 4095  # 12 bits
# Smoothing cut-off and dead-band per channel role (the one table of these ranges).
# 1 step is 2.5 mV (10 V over 4000 steps); 3 mV at 1 V/oct is 3.6 cents.
ROLE_SMOOTHING_HZ = {"pitch": 25.0, "cv": 40.0, "pot": 15.0}
ROLE_DEADBAND_V = {"pitch": 0.003, "cv": 0.005, "pot": 0.006}
HZ_AT_0V = 261.6256  # C4 at 0 V (1 V/oct)


class SpiBus(Protocol):
    """The one SPI call the ADC needs: full-duplex transfer, CS held for the whole list."""

    def xfer2(self, data: list[int]) -> list[int]: ...


class SpidevBus:
    """The real bus: ``spidev`` (imported only when opened), SPI mode 0."""

    def __init__(self, dev: object):
        self._dev = dev

    @classmethod
    def open(cls, adc: AdcConfig) -> SpidevBus:
        import spidev  # noqa: PLC0415  (only on the Pi)

        dev = spidev.SpiDev()
        dev.open(adc.spi_bus, adc.spi_cs)  # /dev/spidev<bus>.<cs>
        dev.mode = adc.spi_mode
        dev.max_speed_hz = adc.spi_max_speed_hz
        return cls(dev)

    def xfer2(self, data: list[int]) -> list[int]:
        return list(self._dev.xfer2(list(data)))  # type: ignore[attr-defined]

    def close(self) -> None:
        self._dev.close()  # type: ignore[attr-defined]


def encode_read(channel: int, single_ended: bool = True) -> list[int]:
    """The 3-byte MCP3208 command for one conversion (datasheet's 8-bit-segment alignment)."""
    if not 0 <= channel < N_CHANNELS:
        raise ValueError(f"MCP3208 channel {channel} outside 0..7")
    return [0x04 | (0x02 if single_ended else 0) | (channel >> 2), (channel & 0x03) << 6, 0x00]


def decode_reply(rx: Sequence[int]) -> int:
    """The 12-bit code from the chip's 3-byte answer (null bit checked)."""
    if len(rx) != 3:
        raise ValueError(f"MCP3208 reply must be 3 bytes, got {len(rx)}")
    if rx[1] & 0x10:
        raise ValueError(f"MCP3208 reply {list(rx)}: null bit is not 0 (bus fault?)")
    return ((rx[1] & 0x0F) << 8) | (rx[2] & 0xFF)


class MCP3208:
    """One conversion per :meth:`read` over any :class:`SpiBus`."""

    def __init__(self, bus: SpiBus):
        self.bus = bus

    def read(self, channel: int) -> int:
        return decode_reply(self.bus.xfer2(encode_read(channel)))


class FakeMCP3208:
    """An MCP3208 in memory that speaks the real wire protocol (an :class:`SpiBus`).

    It reads the command bit by bit: leading zeros, the start bit, SGL/DIFF, D2 D1 D0; one sample
    clock; the null bit (0); B11…B0 MSB first; then (as the chip does with more clocks) B1…B11 LSB
    first; then zeros. Bits clocked before the command is complete read as 1 (hi-Z with a pull-up).
    Set what it converts with :meth:`set_code` (any int, also out of range: it is clamped to
    12 bits as the chip would saturate) or :meth:`set_volts` (at the chip's pin, 0..vref).
    ``noise_lsb`` adds Gaussian noise from the injected ``rng``.
    """

    def __init__(self, vref_v: float = 3.3, noise_lsb: float = 0.0, rng: np.random.Generator | None = None):
        self.vref_v = vref_v
        self.noise_lsb = noise_lsb
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.codes = [0] * N_CHANNELS
        self.transactions: list[tuple[bool, int]] = []  # (single_ended, channel) decoded
        self.fail_next = 0  # the next n transfers raise OSError (a bus fault)

    def set_code(self, channel: int, code: int) -> None:
        self.codes[channel] = int(code)

    def set_volts(self, channel: int, volts: float) -> None:
        self.codes[channel] = int(round(volts / self.vref_v * (FULL_SCALE_CODE + 1)))

    def _convert(self, single_ended: bool, cbits: int) -> int:
        if single_ended:
            code = float(self.codes[cbits])
        else:  # pseudo-differential pairs: 0b000 -> CH0+ CH1-, 0b001 -> CH0- CH1+, ...
            pos = (cbits & 0b110) | (cbits & 1)
            neg = (cbits & 0b110) | (1 - (cbits & 1))
            code = float(self.codes[pos] - self.codes[neg])
        if self.noise_lsb:
            code += self.rng.normal(0.0, self.noise_lsb)
        return int(min(max(round(code), 0), FULL_SCALE_CODE))

    def xfer2(self, data: list[int]) -> list[int]:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise OSError(5, "fake SPI bus fault")
        bits_in = [(byte >> (7 - i)) & 1 for byte in data for i in range(8)]
        bits_out = [1] * len(bits_in)
        try:
            start = bits_in.index(1)
        except ValueError:
            return [0xFF] * len(data)  # no start bit: DOUT stays hi-Z
        if start + 4 < len(bits_in):
            single = bool(bits_in[start + 1])
            cbits = (bits_in[start + 2] << 2) | (bits_in[start + 3] << 1) | bits_in[start + 4]
            self.transactions.append((single, cbits))
            code = self._convert(single, cbits)
            msb_first = [(code >> (11 - i)) & 1 for i in range(12)]
            stream = [0] + msb_first + msb_first[-2::-1]  # null bit, B11..B0, B1..B11
            first = start + 6  # after D0 and one sample clock
            for k in range(first, len(bits_out)):
                j = k - first
                bits_out[k] = stream[j] if j < len(stream) else 0
        return [int("".join(map(str, bits_out[i : i + 8])), 2) for i in range(0, len(bits_out), 8)]


@dataclass(frozen=True)
class Calibration:
    """volts = offset_v + scale_v_per_step * value, where value = invert_from - raw (0..max_code)."""

    scale_v_per_step: float
    offset_v: float

    @classmethod
    def nominal(cls, adc: AdcConfig) -> Calibration:
        return cls((adc.volts_at_max - adc.volts_at_min) / adc.max_code, adc.volts_at_min)

    @classmethod
    def from_two_points(cls, value_a: float, volts_a: float, value_b: float, volts_b: float) -> Calibration:
        """Two-point fit (e.g. 1 V and 3 V into CV1) from the inverted values read at each."""
        if not (math.isfinite(value_a) and math.isfinite(value_b)) or abs(value_b - value_a) < 1.0:
            raise ValueError("calibration points must be finite and differ by at least one step")
        scale = (volts_b - volts_a) / (value_b - value_a)
        return cls(scale, volts_a - scale * value_a)

    def volts(self, value: float) -> float:
        return self.offset_v + self.scale_v_per_step * value


def volts_to_hz(volts: float, hz_at_0v: float = HZ_AT_0V) -> float:
    """1 V/oct: each volt doubles the frequency."""
    return hz_at_0v * 2.0**volts


@dataclass
class CVCounters:
    polls: int = 0
    clamped: int = 0  # codes outside 0..max_code after inversion
    nonfinite: int = 0  # results refused before publication
    bus_errors: int = 0


@dataclass(frozen=True)
class ChannelState:
    """Per-channel settings derived from the hardware table and role defaults."""

    name: str
    channel: int
    calibration: Calibration
    smoothing_hz: float
    deadband_v: float


class CVReader(BackgroundThread):
    """Polls the ADC in its own thread and publishes smoothed volts in ``values`` (see module doc)."""

    def __init__(
        self,
        adc_chip: MCP3208,
        adc: AdcConfig,
        poll_rate_hz: float | None = None,
        calibrations: dict[str, Calibration] | None = None,
        clock=time.monotonic,
    ):
        self.chip = adc_chip
        self.adc = adc
        self.poll_rate_hz = float(poll_rate_hz or adc.poll_rate_hz)
        if not self.poll_rate_hz > 0:
            raise ValueError("poll_rate_hz must be positive")
        calibrations = calibrations or {}
        unknown = set(calibrations) - set(adc.names)
        if unknown:
            raise KeyError(f"calibration for unknown channels {sorted(unknown)}")
        self.channels = tuple(
            ChannelState(
                c.name,
                c.channel,
                calibrations.get(c.name, Calibration.nominal(adc)),
                ROLE_SMOOTHING_HZ[c.role],
                ROLE_DEADBAND_V[c.role],
            )
            for c in adc.channels
        )
        n = len(self.channels)
        self._alpha = np.array(
            [1.0 - math.exp(-2.0 * math.pi * ch.smoothing_hz / self.poll_rate_hz) for ch in self.channels]
        )
        self._smooth = np.full(n, math.nan)
        self.values = np.zeros(n, dtype=np.float64)  # published volts: the lock-free hand-off
        self.raw = np.zeros(n, dtype=np.int64)  # last raw codes (for `pimodule calibrate`)
        self.sequence = 0
        self._overrides: dict[int, float] = {}  # channels set from outside (override())
        self.counters = CVCounters()
        self._clock = clock
        super().__init__("pimodule-cv")

    def index(self, name: str) -> int:
        for i, ch in enumerate(self.channels):
            if ch.name == name:
                return i
        raise KeyError(f"no CV channel {name!r}; known: {[c.name for c in self.channels]}")

    def value_of(self, raw: int) -> float:
        """Tedium inversion, clamped to 0..max_code (clamping counted)."""
        value = self.adc.invert_from - int(raw)
        if value < 0 or value > self.adc.max_code:
            self.counters.clamped += 1
            value = min(max(value, 0), self.adc.max_code)
        return float(value)

    def poll_once(self) -> None:
        """One conversion per channel, then publish. Safe to call from tests without the thread."""
        for i, ch in enumerate(self.channels):
            external = self._overrides.get(i)
            if external is not None:  # set from outside: the ADC is not read for it
                self.values[i] = external
                continue
            try:
                raw = self.chip.read(ch.channel)
            except (OSError, ValueError):
                self.counters.bus_errors += 1
                continue
            self.raw[i] = raw
            volts = ch.calibration.volts(self.value_of(raw))
            if not math.isfinite(volts):
                self.counters.nonfinite += 1
                continue
            prev = self._smooth[i]
            smooth = volts if math.isnan(prev) else prev + self._alpha[i] * (volts - prev)
            self._smooth[i] = smooth
            if self.sequence == 0 or abs(smooth - self.values[i]) > ch.deadband_v:
                self.values[i] = smooth
        self.sequence += 1
        self.counters.polls += 1

    def override(self, name: str, volts: float | None) -> None:
        """A value from outside (``/pimodule/cv/<name>``: Pd reading the Tedium itself), published
        at once and kept: the ADC reading of that channel is ignored from now on. ``None`` gives
        the channel back to the ADC. KeyError for an unknown name."""
        i = self.index(name)
        if volts is None:
            self._overrides.pop(i, None)
            self._smooth[i] = math.nan
            return
        volts = float(volts)
        if not math.isfinite(volts):
            raise ValueError(f"{volts} is not a finite number")
        self._overrides[i] = volts
        self.values[i] = volts

    def snapshot(self) -> dict[str, float]:
        """A copy of the published volts by name (for status messages; not for the callback)."""
        return {ch.name: float(self.values[i]) for i, ch in enumerate(self.channels)}

    # -- thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        period_s = 1.0 / self.poll_rate_hz
        deadline = self._clock()
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # never let the poller die silently
                log.exception("CV poll failed")
                self.counters.bus_errors += 1
            deadline += period_s
            wait_s = deadline - self._clock()
            if wait_s < -10 * period_s:  # fell far behind (machine busy): do not try to catch up
                deadline = self._clock()
                wait_s = 0.0
            self._stop.wait(max(wait_s, 0.0))
