"""The module's daemon: audio and CV in, the voice or the effect estimator, audio out, OSC.

Off the Pi, the CV comes from a clearly announced simulated source (a CV melody through a fake
MCP3208 that speaks the real SPI encoding) and the GPIO from a fake; when no audio device can be
opened the same callback runs on a simulated clock (``--offline``, or automatically, announced in
the log). ``--duration`` and ``--record`` are for demos and tests. The daemon itself is
:mod:`pimodule.device.daemon`; this module is its command line. No torch is imported here or below.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import signal
from pathlib import Path

import numpy as np
import soundfile
from scipy.signal import resample_poly

from pimodule.core.controls import MODES
from pimodule.device import config as config_mod
from pimodule.device import cpus
from pimodule.device.daemon import build, run
from pimodule.device.jackdummy import JackUnavailable, dummy_jack_server, jack_device_index

log = logging.getLogger("pimodule.daemon")
RECORD_MAX_S = 600.0

EXAMPLES = (
    "pimodule run --config /etc/pimodule/config.toml",
    "pimodule run --jack-dummy --duration 6 --record out/demo.wav",
    "pimodule run --offline --mode transfer --model flute",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="daemon config TOML (default: configs/default.toml)")
    parser.add_argument("--device", help="audio device name (fragment) or index")
    parser.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    parser.add_argument("--block-size", type=int, help="frames per audio callback")
    parser.add_argument("--sample-rate", type=int, help="device sample rate in Hz")
    parser.add_argument("--mode", choices=MODES, help="start in this mode")
    parser.add_argument("--model", help="model name in the models dir (names only, never paths)")
    parser.add_argument(
        "--engine",
        choices=config_mod.ENGINE_BACKENDS,
        help="the compiled engine in its own audio process, or the earlier onnxruntime one",
    )
    parser.add_argument(
        "--input", type=Path, help="on the simulated clock: a recording played into inputs L (and R if stereo), looped"
    )
    parser.add_argument("--models-dir", type=Path, help="the models directory")
    parser.add_argument("--offline", action="store_true", help="no audio device: run the callback on a simulated clock")
    parser.add_argument(
        "--jack-dummy",
        action="store_true",
        help="start a private JACK server (dummy backend) and play through it "
        "(falls back to --offline when jackd is missing)",
    )
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--record", type=Path, help="write what was played to this wav file")
    parser.add_argument("--osc-port", type=int, help="OSC port to listen on (0 = any free port)")
    parser.add_argument("--no-osc", action="store_true", help="no OSC server")
    parser.add_argument("--cv", choices=config_mod.CV_BACKENDS, help="CV source (default: config)")
    parser.add_argument("--flash-port", type=int, help="TCP port for `pimodule flash` (0 = any free port)")
    parser.add_argument("--no-flash", action="store_true", help="do not receive model files")


def _device(value: str | None):
    if value is None or value == "":
        return None
    return int(value) if value.strip().isdigit() else value


def config_from_args(args: argparse.Namespace) -> config_mod.DaemonConfig:
    cfg = config_mod.load_config(args.config)
    audio = {}
    if args.device is not None:
        audio["device"] = _device(args.device)
    if args.block_size is not None:
        audio["block_size"] = args.block_size
    if args.sample_rate is not None:
        audio["sample_rate_hz"] = args.sample_rate
    if audio:
        cfg = config_mod.override(cfg, "audio", **audio)
    if args.mode is not None:
        cfg = config_mod.override(cfg, "engine", mode=args.mode)
    if args.engine is not None:
        cfg = config_mod.override(cfg, "engine", backend=args.engine)
    if args.osc_port is not None or args.no_osc:
        osc = {"enabled": False} if args.no_osc else {"port": args.osc_port}
        cfg = config_mod.override(cfg, "osc", **osc)
    if args.models_dir is not None:
        cfg = config_mod.override(cfg, "models", dir=str(args.models_dir.resolve()))
    if args.cv is not None:
        cfg = config_mod.override(cfg, "cv", backend=args.cv)
    if args.flash_port is not None or args.no_flash:
        flash = {"enabled": False} if args.no_flash else {"port": args.flash_port}
        cfg = config_mod.override(cfg, "flash", **flash)
    return cfg


def _read_input(path: Path, rate_hz: int) -> np.ndarray:
    """A recording at the device rate, float32, mono or (samples, 2)."""
    try:
        x, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as err:
        raise ValueError(f"{path}: cannot read it as audio ({err})") from None
    x = x[:, :2]
    if rate != rate_hz:
        g = math.gcd(rate, rate_hz)
        x = resample_poly(x, rate_hz // g, rate // g, axis=0).astype(np.float32)
    return x[:, 0].copy() if x.shape[1] == 1 else np.ascontiguousarray(x)


def main(args: argparse.Namespace) -> int:
    if args.list_devices:
        import sounddevice as sd

        print(sd.query_devices())
        return 0
    try:
        cfg = config_from_args(args)
    except config_mod.ConfigError as err:
        log.error("%s", err)
        return 2
    record_s = None
    if args.record is not None:
        record_s = args.duration if args.duration is not None else RECORD_MAX_S
    plan = cpus.plan_or_none(cfg.audio.cpus)
    if not args.offline:  # before the control threads start: they inherit it
        cpus.pin_process(plan.control)
    with contextlib.ExitStack() as stack:
        offline = args.offline
        if args.jack_dummy and not offline:
            try:
                server = stack.enter_context(
                    dummy_jack_server(cfg.audio.sample_rate_hz, cfg.audio.block_size or 128, cpus=plan.audio)
                )
                cfg = config_mod.override(cfg, "audio", device=jack_device_index(server))
            except JackUnavailable as err:
                log.warning("no JACK dummy server (%s): falling back to the simulated clock", err)
                offline = True
        sim_input = _read_input(args.input, cfg.audio.sample_rate_hz) if args.input is not None else None
        if sim_input is not None and not offline:
            log.warning("--input plays on the simulated clock only: running offline")
            offline = True
        d = build(cfg, model=args.model, record_s=record_s, sim_input=sim_input)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: d.stop_event.set())
        try:
            backend = run(d, offline=offline, duration_s=args.duration)
            s = d.controller.status()
            played_s = d.engine.n_samples / cfg.audio.sample_rate_hz
            recording = d.runner.recorder.audio.copy() if d.runner.recorder is not None else None
        finally:
            d.close()
            if args.jack_dummy and not offline:
                import sounddevice as sd

                sd._terminate()  # before the server goes away
    if args.jack_dummy and not offline:
        import sounddevice as sd

        sd._initialize()  # PortAudio usable again in this process (the server has gone)
    print(
        f"played on {backend}: {played_s:.2f} s, model {s['model'] or '(none)'}, mode {s['mode']}, "
        f"response p50 {s['callback_p50_us']:.0f} us p99 {s['callback_p99_us']:.0f} us, "
        f"late blocks {s.get('late_blocks', 0)}, xruns {s['xruns']}, exceptions {s['exceptions']}"
    )
    if recording is not None:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(args.record), recording, cfg.audio.sample_rate_hz, subtype="FLOAT")
        print(f"recorded {len(recording) / cfg.audio.sample_rate_hz:.2f} s to {args.record}")
    return 0 if s["exceptions"] == 0 else 1
