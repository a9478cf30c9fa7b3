"""Make a training set: your own recordings (prepare) or phrases rendered from a soundfont (render).

prepare: a folder of recordings (wav, flac, ogg, aiff, mp3), or one file, becomes training
examples with their pitch (f0) and loudness. Every file is checked first and a file that cannot
be used is named with the reason; a share of the audio is held out to score the voice on; a
summary (minutes, pitch and loudness range, silence, warnings) is printed and saved in
dataset.json. Less than 3 minutes of pitched audio is refused with the amount to reach
(--force writes it anyway). Record: one instrument, one note at a time, dry, over the range you
want to play, with pauses (docs/guide-voice.md). render: seeded MIDI phrases played by a General
MIDI instrument through fluidsynth, dry.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
import time
from pathlib import Path

from pimodule.laptop.data.midi import program_number, program_slug
from pimodule.laptop.data.prepare import NotEnoughAudioError, NoUsableAudioError, prepare
from pimodule.laptop.data.soundfont import DEFAULT_SOUNDFONT, RenderConfig, RenderError, render_dataset
from pimodule.laptop.data.summary import MIN_HELD_OUT_VOICED_S, MIN_VOICED_MINUTES, format_summary

log = logging.getLogger(__name__)
EXAMPLES = (
    "pimodule data prepare ~/recordings/cello --out data/cello",
    "pimodule data prepare take1.mp3 --out data/take1 --held-out 0.2 --seed 3",
    "pimodule data render --program violin --out data/violin --n-phrases 80",
    "pimodule data render --program flute --program oboe --out data/winds",
)


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, help="prepare your recordings, or render phrases")

    def action(name: str, text: str, examples: tuple[str, ...]) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=text,
            description=textwrap.fill(text, 88),
            epilog="examples:\n" + "\n".join(f"  {e}" for e in examples),
            formatter_class=parser.formatter_class,
        )

    r = action(
        "render",
        "render seeded GM phrases with fluidsynth (dry) into a dataset",
        tuple(e for e in EXAMPLES if " render " in e),
    )
    r.add_argument(
        "--program",
        action="append",
        required=True,
        help="GM program, 0-based number or name (violin, flute, cello…); repeatable",
    )
    r.add_argument(
        "--out", type=Path, required=True, help="dataset folder (one program) or parent of one folder per program"
    )
    r.add_argument("--n-phrases", type=int, default=40, help="training phrases per program")
    r.add_argument("--n-held-out", type=int, default=8, help="held-out phrases (other seeds)")
    r.add_argument("--phrase-seconds", type=float, default=8.0, help="length of each phrase")
    r.add_argument("--seed", type=int, default=0, help="random seed of the phrases (held-out ones use others)")
    r.add_argument("--soundfont", type=Path, default=DEFAULT_SOUNDFONT, help="GM soundfont (.sf2) to play them with")
    _common(r)

    p = action(
        "prepare",
        "turn your recordings (a folder or one file: wav, flac, ogg, aiff, mp3) into a dataset: every file "
        "checked, a share held out, a summary of minutes, pitch and loudness range with warnings; under "
        f"{MIN_VOICED_MINUTES:g} minutes of pitched audio refused with the amount to reach. Record one "
        "instrument, one note at a time, dry, with pauses (docs/guide-voice.md)",
        tuple(e for e in EXAMPLES if " prepare " in e),
    )
    p.add_argument(
        "src", type=Path, help="folder (with train/ and held_out/ subfolders, or not) or a single audio file"
    )
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    p.add_argument(
        "--held-out",
        type=float,
        default=0.15,
        help="share of the audio held out to score the voice (when src has no train/ held_out/ folders)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the held-out choice (same seed, same split)")
    p.add_argument(
        "--min-minutes",
        type=float,
        default=MIN_VOICED_MINUTES,
        help="refuse with less pitched training audio than this (minutes)",
    )
    p.add_argument("--force", action="store_true", help="write the dataset even when it is too small (a loud warning)")
    p.add_argument("--fmin-hz", type=float, default=40.0, help="lowest f0 the tracker looks for")
    p.add_argument("--fmax-hz", type=float, default=2000.0, help="highest f0 the tracker looks for")
    _common(p)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sample-rate", type=int, default=16000, help="the voice's sample rate in Hz")
    p.add_argument("--hop-size", type=int, default=64, help="samples per f0/loudness frame (the voice's frame)")
    p.add_argument("--example-seconds", type=float, default=4.0, help="length of each training example")


def _skipped(info: dict) -> None:
    for bad in info.get("skipped", []):
        print(f"  skipped {bad['file']}: {bad['error']}")
    for note in info.get("notes", []):
        print(f"  note: {note['file']}: {note['note']}")


def _report(out: Path, info: dict, seconds: float) -> None:
    print(f"{out}: {info['sample_rate']} Hz, hop {info['hop_size']}  [{seconds:.1f} s]")
    if info.get("rendered"):
        print(f"  rendered phrases (wav, MIDI, notes) in {out / 'wav'}")
    _skipped(info)
    for line in format_summary(info) if "summary" in info else ():
        print(f"  {line}")


def main(args: argparse.Namespace) -> int:

    t0 = time.perf_counter()
    try:
        if args.action == "prepare":
            info = prepare(
                args.src,
                args.out,
                sample_rate=args.sample_rate,
                hop_size=args.hop_size,
                example_seconds=args.example_seconds,
                held_out=args.held_out,
                seed=args.seed,
                fmin_hz=args.fmin_hz,
                fmax_hz=args.fmax_hz,
                min_voiced_minutes=args.min_minutes,
                min_held_out_voiced_s=MIN_HELD_OUT_VOICED_S if args.min_minutes > 0 else 0.0,
                force=args.force,
                progress=True,
            )
            _report(args.out, info, time.perf_counter() - t0)
            print(f"next: pimodule train ddsp --data {args.out} --out runs/{args.out.name} --max-minutes 30")
            return 0
        programs = [program_number(p) for p in args.program]
        config = RenderConfig(
            sample_rate=args.sample_rate, phrase_seconds=args.phrase_seconds, soundfont=args.soundfont
        )
        for program in programs:
            t1 = time.perf_counter()
            out = args.out if len(programs) == 1 else args.out / program_slug(program)
            info = render_dataset(
                program,
                out,
                n_phrases=args.n_phrases,
                n_held_out=args.n_held_out,
                seed=args.seed,
                config=config,
                hop_size=args.hop_size,
                example_seconds=args.example_seconds,
            )
            _report(out, info, time.perf_counter() - t1)
        return 0
    except NotEnoughAudioError as err:
        print(f"found in {args.src}:")
        _skipped(err.info)
        for line in format_summary(err.info):
            print(f"  {line}")
        print(f"pimodule data prepare: refused: {err}", file=sys.stderr)
        return 1
    except (RenderError, NoUsableAudioError, FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        return 1
