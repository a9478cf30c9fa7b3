"""The daemon's configuration: frozen dataclasses read from one TOML file (``configs/default.toml``).

Every section and key is optional; missing ones take the defaults below. Unknown keys are an
error (a typo should not silently do nothing). ``write_calibration`` updates the CV calibration
section of a config file in place (used by ``pimodule calibrate``).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pimodule.core.controls import MODES
from pimodule.device import cpus as cpus_mod
from pimodule.device.io.osc import OscConfig as ServerConfig

LOUDNESS_SOURCES = ("cv2", "envelope")
ENGINE_BACKENDS = ("compiled", "onnxruntime")
CV_BACKENDS = ("auto", "spi", "simulated")
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "configs" / "default.toml"  # the repository's
SYSTEM_CONFIG_PATH = Path("/etc/pimodule/config.toml")  # the module's (firmware/provision.sh installs it)


class ConfigError(ValueError):
    """A config file that cannot be used (the message names the key)."""


@dataclass(frozen=True)
class AudioConfig:
    device: str | int | None = None  # sounddevice name or index; None = the default device
    sample_rate_hz: int = 48000
    block_size: int = 128  # frames per callback (0 = let the host choose)
    n_input_channels: int = 2  # Tedium: L/R in (0 on the PCM5102A board)
    n_output_channels: int = 2  # the voice goes to every output channel
    input_channel: int = 0  # which input feeds transfer/fx mode
    latency: str = "low"
    cpus: str = "auto"  # the audio core(s): "auto" (the last CPU), "none", or "3" / "2,3" (device/cpus.py)


@dataclass(frozen=True)
class OscConfig:
    """``enabled`` plus the keys of :class:`pimodule.device.io.osc.OscConfig` (passed through)."""

    enabled: bool = True
    host: str = "127.0.0.1"  # bind address; anything but loopback needs allow_hosts
    port: int = 9000
    allow_hosts: tuple[str, ...] = ()
    max_packet_bytes: int = 4096
    max_subscribers: int = 8
    max_subscribers_per_host: int = 3
    subscription_ttl_s: float = 60.0
    error_replies_per_s: float = 20.0
    key_file: str = ""  # shared key: OSC from other hosts must be signed with it (docs/osc.md)

    def server_config(self):

        return ServerConfig(**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "enabled"})


@dataclass(frozen=True)
class ModelsConfig:
    dir: str = "export"  # relative paths are relative to the config file's folder's parent
    default: str = "violin"
    sample_rate_hz: int = 16000  # the engine's model rate; models at another rate are refused
    crossfade_ms: float = 20.0


@dataclass(frozen=True)
class FxConfig:
    model: str = "fx"  # the effect estimator (kind fx) in the models dir; "" = no fx analysis
    interval_s: float = 0.25  # how often the estimator runs in fx mode (at most every 250 ms)
    smoothing: float = 0.5  # weight of each new estimate in the running average
    match: bool = False  # apply the estimated chain to input R (matching mode)
    check: bool = True  # a dry or reference model's estimates checked on the audio (device.fx.check_thread)
    check_interval_s: float = 1.0  # pause between checks, at least the last check's time (at most half a core)


@dataclass(frozen=True)
class FlashConfig:
    """Receiving model files from ``pimodule flash`` (pimodule/runtime/flash.py, docs/flash.md)."""

    enabled: bool = True
    host: str = "127.0.0.1"  # the TCP listener is loopback only (another value is ignored, with an error)
    port: int = 9100
    allow_hosts: tuple[str, ...] = ()  # kept for old configs, ignored: remote flashing goes over SSH
    serial_port: str = ""  # e.g. "/dev/ttyGS0" (USB gadget serial) or "/dev/serial0"; "" = none
    baud: int = 115200
    max_bytes: int = 64 * 1024 * 1024
    activate: bool = True  # swap to a flashed model when the sender asks (false: install only)


@dataclass(frozen=True)
class EngineConfig:
    # "compiled": the audio process with the compiled callback (pimodule.device.rt); "onnxruntime":
    # the earlier engine, onnxruntime in a Python callback in this process (kept for comparison)
    backend: str = "compiled"
    mode: str = "synth"
    gain_db: float = 0.0
    loudness_source: str = "envelope"  # "cv2" (0..5 V) or "envelope" (gate on trig1)
    hz_at_0v: float = 261.6256  # CV1 pitch: 1 V/oct around C4 at 0 V
    f0_range_hz: tuple[float, float] = (30.0, 2000.0)
    loudness_range_db: tuple[float, float] = (-70.0, -10.0)  # CV2 0 V .. 5 V, envelope floor .. peak
    cv2_range_v: tuple[float, float] = (0.0, 5.0)
    attack_ms: float = 10.0
    release_ms: float = 300.0
    transpose_with_cv1: bool = True  # transfer mode: CV1 volts transpose by octaves
    # pots → model controls by name ("" leaves a pot unused); a pot acts once it moves
    pots: tuple[tuple[str, str], ...] = (
        ("pot1", "harmonic_gain_db"),
        ("pot2", "noise_gain_db"),
        ("pot3", "loudness_offset_db"),
    )
    pot_pickup: float = 0.01  # a pot must move this much (unit range) before it takes over


@dataclass(frozen=True)
class CvCalibration:
    scale_v_per_step: float
    offset_v: float


@dataclass(frozen=True)
class CvConfig:
    backend: str = "auto"  # auto: SPI on a Pi, the simulated source elsewhere
    poll_rate_hz: float = 1000.0
    calibration: tuple[tuple[str, CvCalibration], ...] = ()  # per channel, from `pimodule calibrate`

    def calibration_of(self, name: str) -> CvCalibration | None:
        return dict(self.calibration).get(name)


@dataclass(frozen=True)
class DaemonConfig:
    audio: AudioConfig = field(default_factory=AudioConfig)
    osc: OscConfig = field(default_factory=OscConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    cv: CvConfig = field(default_factory=CvConfig)
    fx: FxConfig = field(default_factory=FxConfig)
    flash: FlashConfig = field(default_factory=FlashConfig)
    source: str = "<defaults>"

    def models_dir(self) -> Path:
        path = Path(self.models.dir).expanduser()
        if path.is_absolute() or self.source == "<defaults>":
            return path
        return Path(self.source).resolve().parent.parent / path


def _build(cls, table: Mapping[str, Any], where: str):
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
        default = getattr(cls(), key) if key != "calibration" else ()
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        elif isinstance(default, tuple) and isinstance(value, dict):
            value = tuple(value.items())
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        kwargs[key] = value
    return cls(**kwargs)


def _check(cfg: DaemonConfig) -> None:
    a, e, m = cfg.audio, cfg.engine, cfg.models
    if not 8000 <= a.sample_rate_hz <= 192000:
        raise ConfigError(f"audio.sample_rate_hz {a.sample_rate_hz} is implausible")
    if not 0 <= a.block_size <= 8192:
        raise ConfigError(f"audio.block_size {a.block_size} outside 0..8192")
    if a.n_output_channels < 1 or a.n_input_channels < 0:
        raise ConfigError("audio: needs at least one output channel")
    try:
        cpus_mod.check_spec(a.cpus)
    except cpus_mod.CpuSpecError as err:
        raise ConfigError(str(err)) from None
    if e.mode not in MODES:
        raise ConfigError(f"engine.mode {e.mode!r} is not one of {MODES}")
    if e.backend not in ENGINE_BACKENDS:
        raise ConfigError(f"engine.backend {e.backend!r} is not one of {ENGINE_BACKENDS}")
    if e.loudness_source not in LOUDNESS_SOURCES:
        raise ConfigError(f"engine.loudness_source {e.loudness_source!r} is not one of {LOUDNESS_SOURCES}")
    for name in ("f0_range_hz", "loudness_range_db", "cv2_range_v"):
        lo, hi = getattr(e, name)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ConfigError(f"engine.{name} must be [low, high] with low < high")
    if cfg.cv.backend not in CV_BACKENDS:
        raise ConfigError(f"cv.backend {cfg.cv.backend!r} is not one of {CV_BACKENDS}")
    if m.crossfade_ms <= 0 or m.sample_rate_hz <= 0:
        raise ConfigError("models.crossfade_ms and models.sample_rate_hz must be positive")
    if not 0.0 < cfg.fx.interval_s <= 0.25 or not 0.0 < cfg.fx.smoothing <= 1.0:
        raise ConfigError("fx.interval_s must be in (0, 0.25] and fx.smoothing in (0, 1]")
    if not 0.05 <= cfg.fx.check_interval_s <= 60.0:
        raise ConfigError("fx.check_interval_s must be in [0.05, 60]")
    if cfg.osc.host not in ("127.0.0.1", "localhost", "::1") and not cfg.osc.allow_hosts:
        raise ConfigError(f"osc.host {cfg.osc.host!r} is not loopback: set osc.allow_hosts too")
    if not 0 <= cfg.flash.port <= 65535 or cfg.flash.max_bytes <= 0 or cfg.flash.baud <= 0:
        raise ConfigError("flash.port must be 0..65535, flash.max_bytes and flash.baud positive")


def parse_config(data: Mapping[str, Any], source: str = "<dict>") -> DaemonConfig:
    sections = {
        "audio": AudioConfig,
        "osc": OscConfig,
        "models": ModelsConfig,
        "engine": EngineConfig,
        "cv": CvConfig,
        "fx": FxConfig,
        "flash": FlashConfig,
    }
    unknown = set(data) - set(sections)
    if unknown:
        raise ConfigError(f"{source}: unknown sections {sorted(unknown)} (known: {', '.join(sections)})")
    built: dict[str, Any] = {}
    for name, cls in sections.items():
        table = dict(data.get(name, {}))
        if name == "cv" and "calibration" in table:
            try:
                table["calibration"] = tuple(
                    (ch, CvCalibration(float(c["scale_v_per_step"]), float(c["offset_v"])))
                    for ch, c in table["calibration"].items()
                )
            except (KeyError, TypeError, ValueError, AttributeError) as err:
                raise ConfigError(f"{source}: cv.calibration needs scale_v_per_step and offset_v ({err})") from err
        if name == "audio" and table.get("device") == "":
            table["device"] = None
        try:
            built[name] = _build(cls, table, f"{source} [{name}]")
        except TypeError as err:
            raise ConfigError(f"{source} [{name}]: {err}") from err
    cfg = DaemonConfig(**built, source=source)
    _check(cfg)
    return cfg


def user_config_path() -> Path:
    """This user's config file: ``$XDG_CONFIG_HOME/pimodule/config.toml`` (``~/.config/...``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pimodule" / "config.toml"


def user_config() -> Path | None:
    """The config read when none is named: the module's ``/etc/pimodule/config.toml``, else this
    user's ``~/.config/pimodule/config.toml``; None when neither exists."""
    return next((p for p in (SYSTEM_CONFIG_PATH, user_config_path()) if p.is_file()), None)


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from err


def _merged(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(path: str | Path | None = None) -> DaemonConfig:
    """Read a config file. ``None``: the user's config (:func:`user_config`, e.g. the one
    ``pimodule calibrate`` wrote) over the repository's ``configs/default.toml``, or the latter
    alone; the built-in defaults when neither exists."""
    if path is not None:
        return parse_config(_read_toml(Path(path)), str(path))
    found = user_config()
    base = _read_toml(DEFAULT_CONFIG_PATH) if DEFAULT_CONFIG_PATH.is_file() else {}
    if found is None:
        return parse_config(base, str(DEFAULT_CONFIG_PATH)) if base else DaemonConfig()
    top = _read_toml(found)
    data = _merged(base, top)
    if base and "dir" not in top.get("models", {}):  # the repository's models, wherever the user file is
        data["models"] = {
            **data.get("models", {}),
            "dir": str(parse_config(base, str(DEFAULT_CONFIG_PATH)).models_dir()),
        }
    return parse_config(data, str(found))


def override(cfg: DaemonConfig, section: str, **changes: Any) -> DaemonConfig:
    """A copy with some keys of one section replaced (command-line options), re-checked."""
    new = replace(cfg, **{section: replace(getattr(cfg, section), **changes)})
    _check(new)
    return new


def write_calibration(path: str | Path, channel: str, cal: CvCalibration) -> None:
    """Set ``[cv.calibration.<channel>]`` in a config file, keeping the rest of the text as it is."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    header = f"[cv.calibration.{channel}]"
    body = f"{header}\nscale_v_per_step = {cal.scale_v_per_step!r}\noffset_v = {cal.offset_v!r}\n"
    pattern = re.compile(rf"^{re.escape(header)}\s*\n(?:(?!\[).*\n?)*", re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(body + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + body
    tomllib.loads(text)  # never write a file we cannot read back
    path.write_text(text)
