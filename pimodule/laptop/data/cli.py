"""Make a training set: your own recordings (prepare) or phrases rendered from a soundfont (render).

prepare: a folder of recordings (wav, flac, ogg, aiff, mp3) becomes training examples with their
pitch (f0) and loudness; a few files are held out to score the voice on. render: seeded MIDI
phrases played by a General MIDI instrument through fluidsynth, dry.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from pimodule.laptop.data.soundfont import DEFAULT_SOUNDFONT
from pimodule.laptop.data.midi import program_number, program_slug
from pimodule.laptop.data.prepare import NoUsableAudioError, prepare
from pimodule.laptop.data.soundfont import RenderConfig, RenderError, render_dataset

log = logging.getLogger(__name__)
EXAMPLES = (
    "pimodule data prepare ~/recordings/cello --out data/cello",
    "pimodule data render --program violin --out data/violin --n-phrases 80",
    "pimodule data render --program flute --program oboe --out data/winds",
)


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, help="prepare your recordings, or render phrases")
    r = sub.add_parser("render", help="render GM phrases with fluidsynth into a dataset")
    r.add_argument("--program", action="append", required=True,
                   help="GM program, 0-based number or name (violin, flute, cello…); repeatable")
    r.add_argument("--out", type=Path, required=True,
                   help="dataset folder (one program) or parent of one folder per program")
    r.add_argument("--n-phrases", type=int, default=40, help="training phrases per program")
    r.add_argument("--n-held-out", type=int, default=8, help="held-out phrases (other seeds)")
    r.add_argument("--phrase-seconds", type=float, default=8.0, help="length of each phrase")
    r.add_argument("--seed", type=int, default=0, help="random seed of the phrases (held-out ones use others)")
    r.add_argument("--soundfont", type=Path, default=DEFAULT_SOUNDFONT, help="GM soundfont (.sf2) to play them with")
    _common(r)

    p = sub.add_parser("prepare", help="turn a folder of recordings into a dataset")
    p.add_argument("src", type=Path, help="folder (with train/ and held_out/ subfolders, or not) "
                                          "or a single audio file")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    p.add_argument("--held-out", type=float, default=0.15,
                   help="fraction of files held out when src has no train/ held_out/ folders")
    p.add_argument("--seed", type=int, default=0, help="random seed of the held-out choice")
    p.add_argument("--fmin-hz", type=float, default=40.0, help="lowest f0 the tracker looks for")
    p.add_argument("--fmax-hz", type=float, default=2000.0, help="highest f0 the tracker looks for")
    _common(p)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sample-rate", type=int, default=16000, help="the voice's sample rate in Hz")
    p.add_argument("--hop-size", type=int, default=64, help="samples per f0/loudness frame (the voice's frame)")
    p.add_argument("--example-seconds", type=float, default=4.0, help="length of each training example")


def _report(out: Path, info: dict, seconds: float) -> None:
    s = info["splits"]
    print(f"{out}: train {s['train']['n_examples']} examples ({s['train']['minutes']:.1f} min), "
          f"held_out {s['held_out']['n_examples']} examples ({s['held_out']['minutes']:.1f} min), "
          f"{info['sample_rate']} Hz, hop {info['hop_size']}  [{seconds:.1f} s]")
    if info.get("rendered"):
        print(f"  rendered phrases (wav, MIDI, notes) in {out / 'wav'}")
    for bad in info.get("skipped", []):
        print(f"  skipped {bad['file']}: {bad['error']}")


def main(args: argparse.Namespace) -> int:

    t0 = time.perf_counter()
    try:
        if args.action == "prepare":
            info = prepare(args.src, args.out, sample_rate=args.sample_rate, hop_size=args.hop_size,
                           example_seconds=args.example_seconds, held_out=args.held_out,
                           seed=args.seed, fmin_hz=args.fmin_hz, fmax_hz=args.fmax_hz)
            _report(args.out, info, time.perf_counter() - t0)
            return 0
        programs = [program_number(p) for p in args.program]
        config = RenderConfig(sample_rate=args.sample_rate, phrase_seconds=args.phrase_seconds,
                              soundfont=args.soundfont)
        for program in programs:
            t1 = time.perf_counter()
            out = args.out if len(programs) == 1 else args.out / program_slug(program)
            info = render_dataset(program, out, n_phrases=args.n_phrases,
                                  n_held_out=args.n_held_out, seed=args.seed, config=config,
                                  hop_size=args.hop_size, example_seconds=args.example_seconds)
            _report(out, info, time.perf_counter() - t1)
        return 0
    except (RenderError, NoUsableAudioError, FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        return 1
