"""Hear what the module does, with the shipped voices, no Pi and no sound card needed.

1. A "recording" to transfer: a clarinet phrase rendered from the GM soundfont at 44.1 kHz (the
   voices never heard a clarinet), or a synthetic sawtooth line when fluidsynth is missing.
2. Timbre transfer of it to every DDSP voice in export/ (the torch-free runtime, streaming
   features), written to OUT/transfer_<voice>.wav.
3. The module's daemon for a few seconds: synth mode, a simulated CV melody on CV1, audio on a
   JACK dummy server when one can start, else the same callback on a simulated clock; the played
   audio is written to OUT/daemon_<voice>.wav.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from pimodule.device.session import ModelSession
from pimodule.laptop.data.midi import program_number
from pimodule.laptop.data.soundfont import RenderConfig, render_phrases
from pimodule.laptop.render import transfer

EXAMPLES = (
    "pimodule demo",
    "pimodule demo --out /tmp/demo --seconds 10",
)
log = logging.getLogger("pimodule.laptop.demo")
EXPORT = Path(__file__).resolve().parents[2] / "export"
INPUT_RATE = 44100


def demo_input(out_dir: Path) -> tuple[Path, str]:
    """Write the input recording; returns its path and what it is."""
    path = out_dir / "input.wav"
    try:
        tmp = out_dir / "input_render"
        wav = render_phrases(
            program_number("clarinet"), [4242], tmp, config=RenderConfig(sample_rate=INPUT_RATE, phrase_seconds=6.0)
        )[0]
        audio, rate = sf.read(str(wav), dtype="float32")
        what = "a clarinet phrase rendered with fluidsynth (FluidR3 GM)"
    except Exception as err:  # no fluidsynth / soundfont: say so and use a synthetic line
        log.warning("cannot render the clarinet input (%s); using a synthetic sawtooth line", err)
        rate = INPUT_RATE
        t = np.arange(int(6 * rate)) / rate
        notes = 220.0 * 2 ** (np.array([0, 3, 7, 12, 10, 7, 5, 3]) / 12)
        f0 = notes[np.minimum((t / 0.75).astype(int), len(notes) - 1)]
        phase = np.cumsum(f0) / rate
        audio = (0.3 * (2 * (phase % 1.0) - 1) * np.minimum(1, t * 20)).astype(np.float32)
        what = "a synthetic sawtooth line"
    sf.write(str(path), audio, rate, subtype="PCM_16")
    return path, what


def run_daemon(model: Path, out_wav: Path, seconds: float) -> int:
    """A few seconds of `pimodule run` in synth mode with the simulated CV melody, on a private
    JACK dummy server (or the simulated clock when jackd cannot start), recorded to out_wav."""
    cmd = [
        sys.executable,
        "-m",
        "pimodule.cli",
        "run",
        "--models-dir",
        str(model.parent),
        "--model",
        model.stem,
        "--no-flash",
        "--mode",
        "synth",
        "--cv",
        "simulated",
        "--jack-dummy",
        "--no-osc",
        "--duration",
        str(seconds),
        "--record",
        str(out_wav),
    ]
    return subprocess.run(cmd, check=False).returncode


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("out"), help="where the wav files go")
    parser.add_argument("--models", type=Path, default=EXPORT, help="folder of DDSP voices")
    parser.add_argument("--seconds", type=float, default=4.0, help="how long the daemon plays")


def main(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    models = sorted(p for p in args.models.glob("*.onnx") if ModelSession.peek_kind(p) == "ddsp")
    if not models:
        print(f"no DDSP models in {args.models}: run `make models` first", file=sys.stderr)
        return 1
    src, what = demo_input(args.out)
    audio, rate = sf.read(str(src), dtype="float32")
    print(f"input: {src} — {what}, {len(audio) / rate:.1f} s at {rate} Hz")
    for model in models:
        session = ModelSession(model)
        out = transfer(session, audio, rate)
        path = args.out / f"transfer_{model.stem}.wav"
        sf.write(str(path), np.clip(out, -1, 1), session.info.sample_rate, subtype="PCM_16")
        print(f"timbre transfer -> {model.stem}: {path.resolve()}")
    voice = next((m for m in models if m.stem == "violin"), models[0])
    daemon_wav = args.out / f"daemon_{voice.stem}.wav"
    print(f"the daemon, {args.seconds:.0f} s of a simulated CV melody on CV1 playing {voice.stem}:")
    status = run_daemon(voice, daemon_wav, args.seconds)
    print(f"daemon recording: {daemon_wav.resolve()}")
    if status == 0 and daemon_wav.is_file():
        played, _ = sf.read(str(daemon_wav), dtype="float32")
        if not np.any(np.abs(played) > 1e-3):  # the daemon ran but its voice did not play
            print(
                f"the daemon's recording is silent: {voice.stem} did not play (its log above says why)",
                file=sys.stderr,
            )
            return 1
    return status
