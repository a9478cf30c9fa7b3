"""The Terminal Tedium as data: load ``hardware/terminal_tedium.toml`` into frozen dataclasses.

Usage::

    from pimodule.device.io.hardware import load_hardware
    hw = load_hardware()                 # the packaged default (hardware/terminal_tedium.toml)
    hw = load_hardware("my_board.toml")  # or any file of the same shape
    hw.adc.spi_device                    # "/dev/spidev0.1"
    hw.adc.channel("cv1").channel        # 0
    hw.gpio.trigger_pins                 # (4, 17, 14, 27)

Validation (raises :class:`HardwareError` with the offending key): BCM pins unique across all
roles and within 0..27, ADC channels within 0..7 and unique, names unique, ranges sane.
Nothing here touches hardware; ``pimodule.device.io.cv`` and ``pimodule.device.io.gpio`` take these objects.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The repository's data file; on a device install /etc/pimodule/terminal_tedium.toml may override.
DEFAULT_PATH = Path(__file__).resolve().parents[3] / "hardware" / "terminal_tedium.toml"
ETC_PATH = Path("/etc/pimodule/terminal_tedium.toml")

ADC_CHANNEL_RANGE = (0, 7)  # MCP3208: eight single-ended inputs
BCM_PIN_RANGE = (0, 27)  # Raspberry Pi 40-pin header GPIO numbers
CHANNEL_ROLES = ("pitch", "cv", "pot")


class HardwareError(ValueError):
    """The hardware description is invalid."""


@dataclass(frozen=True)
class AudioConfig:
    overlay: str
    alsa_card: str
    sample_rate_hz: int
    codec: str


@dataclass(frozen=True)
class AdcChannel:
    name: str
    channel: int
    role: str


@dataclass(frozen=True)
class AdcConfig:
    chip: str
    spi_device: str
    spi_bus: int
    spi_cs: int
    spi_mode: int
    spi_max_speed_hz: int
    n_bits: int
    invert_from: int
    max_code: int
    volts_at_min: float
    volts_at_max: float
    poll_rate_hz: float
    channels: tuple[AdcChannel, ...]

    def channel(self, name: str) -> AdcChannel:
        for ch in self.channels:
            if ch.name == name:
                return ch
        raise KeyError(f"no ADC channel named {name!r}; known: {[c.name for c in self.channels]}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.channels)


@dataclass(frozen=True)
class Pin:
    name: str
    pin: int


@dataclass(frozen=True)
class GpioConfig:
    triggers: tuple[Pin, ...]
    buttons: tuple[Pin, ...]
    gates: tuple[Pin, ...]
    led: Pin
    debounce_ms: float
    long_press_ms: float

    @property
    def trigger_pins(self) -> tuple[int, ...]:
        return tuple(p.pin for p in self.triggers)

    @property
    def button_pins(self) -> tuple[int, ...]:
        return tuple(p.pin for p in self.buttons)

    @property
    def gate_pins(self) -> tuple[int, ...]:
        return tuple(p.pin for p in self.gates)

    def all_pins(self) -> tuple[Pin, ...]:
        return (*self.triggers, *self.buttons, *self.gates, self.led)


@dataclass(frozen=True)
class Hardware:
    name: str
    has_audio_in: bool
    audio: AudioConfig
    adc: AdcConfig
    gpio: GpioConfig


def default_path() -> Path:
    """/etc/pimodule/terminal_tedium.toml if present (device install), else the repo's file."""
    return ETC_PATH if ETC_PATH.is_file() else DEFAULT_PATH


def load_hardware(path: str | Path | None = None) -> Hardware:
    """Read and validate a hardware TOML file (default: :func:`default_path`)."""
    path = Path(path) if path is not None else default_path()
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as err:
        raise HardwareError(f"cannot read hardware file {path}: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise HardwareError(f"{path}: not valid TOML: {err}") from err
    return hardware_from_dict(data, source=str(path))


def hardware_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Hardware:
    """Build and validate a :class:`Hardware` from the parsed TOML mapping."""
    try:
        board, audio, adc, gpio = data["board"], data["audio"], data["adc"], data["gpio"]
        hw = Hardware(
            name=str(board["name"]),
            has_audio_in=bool(board.get("has_audio_in", True)),
            audio=AudioConfig(
                overlay=str(audio["overlay"]),
                alsa_card=str(audio["alsa_card"]),
                sample_rate_hz=int(audio["sample_rate_hz"]),
                codec=str(audio["codec"]),
            ),
            adc=AdcConfig(
                chip=str(adc["chip"]),
                spi_device=str(adc["spi_device"]),
                spi_bus=int(adc["spi_bus"]),
                spi_cs=int(adc["spi_cs"]),
                spi_mode=int(adc["spi_mode"]),
                spi_max_speed_hz=int(adc["spi_max_speed_hz"]),
                n_bits=int(adc["n_bits"]),
                invert_from=int(adc["invert_from"]),
                max_code=int(adc["max_code"]),
                volts_at_min=float(adc["volts_at_min"]),
                volts_at_max=float(adc["volts_at_max"]),
                poll_rate_hz=float(adc["poll_rate_hz"]),
                channels=tuple(
                    AdcChannel(name=str(c["name"]), channel=int(c["channel"]), role=str(c["role"]))
                    for c in adc["channels"]
                ),
            ),
            gpio=GpioConfig(
                triggers=_pins(gpio["triggers"]),
                buttons=_pins(gpio["buttons"]),
                gates=_pins(gpio["gates"]),
                led=Pin(name=str(gpio["led"]["name"]), pin=int(gpio["led"]["pin"])),
                debounce_ms=float(gpio["timing"]["debounce_ms"]),
                long_press_ms=float(gpio["timing"]["long_press_ms"]),
            ),
        )
    except KeyError as err:
        raise HardwareError(f"{source}: missing key {err.args[0]!r}") from err
    except (TypeError, ValueError) as err:
        raise HardwareError(f"{source}: bad value: {err}") from err
    _validate(hw, source)
    return hw


def _pins(items: Any) -> tuple[Pin, ...]:
    return tuple(Pin(name=str(p["name"]), pin=int(p["pin"])) for p in items)


def _validate(hw: Hardware, source: str) -> None:
    adc = hw.adc
    lo, hi = ADC_CHANNEL_RANGE
    seen_ch: dict[int, str] = {}
    for ch in adc.channels:
        if not lo <= ch.channel <= hi:
            raise HardwareError(f"{source}: ADC channel {ch.name!r} = {ch.channel} outside {lo}..{hi}")
        if ch.channel in seen_ch:
            raise HardwareError(
                f"{source}: ADC channel {ch.channel} used by both {seen_ch[ch.channel]!r} and {ch.name!r}"
            )
        if ch.role not in CHANNEL_ROLES:
            raise HardwareError(f"{source}: ADC channel {ch.name!r} role {ch.role!r} not in {CHANNEL_ROLES}")
        seen_ch[ch.channel] = ch.name
    if not adc.channels:
        raise HardwareError(f"{source}: no ADC channels")
    if adc.spi_mode not in (0, 1, 2, 3):
        raise HardwareError(f"{source}: spi_mode {adc.spi_mode} not in 0..3")
    full_scale = (1 << adc.n_bits) - 1
    if not 0 < adc.max_code <= full_scale or not 0 < adc.invert_from <= full_scale + 1:
        raise HardwareError(f"{source}: max_code/invert_from do not fit {adc.n_bits} bits")
    if not adc.volts_at_min < adc.volts_at_max:
        raise HardwareError(f"{source}: volts_at_min must be below volts_at_max")
    if not adc.poll_rate_hz > 0:
        raise HardwareError(f"{source}: poll_rate_hz must be positive")

    plo, phi = BCM_PIN_RANGE
    seen_pin: dict[int, str] = {}
    names: set[str] = set(adc.names)
    if len(names) != len(adc.channels):
        raise HardwareError(f"{source}: duplicate ADC channel names")
    for p in hw.gpio.all_pins():
        if not plo <= p.pin <= phi:
            raise HardwareError(f"{source}: pin {p.name!r} = {p.pin} outside BCM {plo}..{phi}")
        if p.pin in seen_pin:
            raise HardwareError(f"{source}: BCM pin {p.pin} used by both {seen_pin[p.pin]!r} and {p.name!r}")
        if p.name in names:
            raise HardwareError(f"{source}: duplicate name {p.name!r}")
        seen_pin[p.pin] = p.name
        names.add(p.name)
    if hw.gpio.debounce_ms < 0 or hw.gpio.long_press_ms <= hw.gpio.debounce_ms:
        raise HardwareError(f"{source}: need 0 <= debounce_ms < long_press_ms")
