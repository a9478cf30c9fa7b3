"""Estimate which effects (EQ, compressor, distortion, reverb) shaped a recording, and how set.

Blind: the chain of ``--input``, keeping only the effects the network is sure enough of (its
calibrated thresholds). With ``--dry`` (a dry-conditioned model): the chain that turns the dry file
into the input (the two lined up first when the input starts late or early on the dry file:
re-amping, a digital pedal; :mod:`pimodule.device.fx.align`), **refined by analysis by synthesis**
by default (:mod:`pimodule.laptop.fx.refine`, about 10 s, with progress; ``--no-refine`` only
checks the network's chain against the audio):
every chain that reaches you has been compared with doing nothing but matching the level, and with
simpler chains, on the audio itself, and the closest won. With ``--reference``: the chain that makes
``--input`` sound like the reference (a reference-conditioned model hears both, and only what
brings the input closer to the reference's sound than the input as it is stays on; a blind one
estimates the reference's chain and plays it on the input). Each effect comes with a confidence in
words ("reverb: on, sure"). ``--apply-to x.wav --out y.wav`` renders the estimate with the
real-time twins, normalised to peak at -1 dBFS when it would go above (and says so). ``--send
HOST[:PORT]`` pushes it to a running module, where it is held and matched on input R
(:mod:`pimodule.laptop.fx.push`). A silent input gets "no signal", not an estimate; a dry file that
does not look like the input's source gets a warning, and its effects are "unsure". A file that
cannot be read, holds NaN or infinite samples or is shorter than 0.1 s is refused by name, and so
is an ``--apply-to`` / ``--out`` pair that could not be rendered, before anything is estimated.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from pimodule.device.fx.estimator import in_words, keep_confident
from pimodule.laptop.data.audio_files import read_audio
from pimodule.laptop.fx.chain import describe
from pimodule.laptop.fx.infer import (
    LoadedEstimator,
    apply_estimate,
    dry_mismatch,
    is_silent,
    lag_note,
    limited,
    lined_up,
    peak_safe,
    read_mono,
    refine_estimate,
    styled_estimate,
    to_rate,
)
from pimodule.laptop.fx.push import parse_target, push
from pimodule.laptop.fx.refine import RefineConfig, Refined

log = logging.getLogger(__name__)


EXAMPLES = (
    "pimodule estimate export/fx-dry.onnx --input wet.wav --dry dry.wav",
    "pimodule estimate export/fx.onnx --input wet.wav --apply-to guitar.wav --out guitar_fx.wav",
    "pimodule estimate export/fx-ref.onnx --input guitar.wav --reference ref.wav --out guitar_styled.wav",
    "pimodule estimate export/fx-dry.onnx --input wet.wav --dry dry.wav --send pimodule.local",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="training run folder or exported .onnx")
    parser.add_argument("--input", type=Path, required=True, help="processed (wet) recording")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--dry", type=Path, help="the dry recording the input was made from")
    group.add_argument("--reference", type=Path, help="a recording whose effects to copy onto the input")
    parser.add_argument("--apply-to", type=Path, dest="apply_to", help="render the estimate on this file")
    parser.add_argument("--out", type=Path, help="output wav for --apply-to / --reference")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--send",
        metavar="HOST[:PORT]",
        help="push the estimate to a running module over OSC (port 9000 by default): "
        "held there and matched on input R (pimodule.laptop.fx.push)",
    )
    refine = parser.add_mutually_exclusive_group()
    refine.add_argument(
        "--refine",
        action="store_true",
        default=True,
        help="with --dry (the default): fit the chain to the audio by analysis by synthesis (about 10 s)",
    )
    refine.add_argument(
        "--no-refine",
        action="store_false",
        dest="refine",
        help="with --dry: only check the network's chain against the audio (no fitting; a second)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar while refining")


def format_chain(desc: dict) -> str:
    """One line per effect in words, then the parameters of those that are on."""
    lines = in_words(desc)
    for name, entry in desc.items():
        if entry.get("active") and name != "gain":
            lines += [f"    {name}.{k:<20} {v:10.3f}" for k, v in entry["params"].items()]
    return "\n".join(lines)


def _fail(message: str, code: int = 2) -> int:
    print(f"pimodule estimate: {message}")
    return code


def _described(result: Refined) -> dict:
    """A checked or refined estimate as the user reads it: the chain with each effect's words."""
    desc = describe(result.chain, 0)
    for name, word in result.confidence.items():
        desc[name]["confidence"] = word
    return desc


def _estimate(args, est: LoadedEstimator) -> tuple[dict | None, list[str], int]:
    """(the chain described, notes for the user, exit code); None when there is nothing to say."""
    notes: list[str] = []
    wet, sr = read_mono(args.input)
    if is_silent(wet, sr):
        return None, [f"no signal in {args.input} (quieter than -60 dBFS throughout): no estimate"], 1
    if args.reference:
        ref, ref_sr = read_mono(args.reference)
        if is_silent(ref, ref_sr):
            return None, [f"no signal in {args.reference}: no estimate"], 1
        if est.conditioning == "reference":
            result = styled_estimate(est, wet, sr, ref, ref_sr)
            desc, said = limited(_described(result), est.sample_rate, sr, ref_sr)
            notes += said
            notes.append(
                f"checked in {result.seconds:.1f} s: {result.choice} brings the input closest to the reference's "
                f"sound (distance {result.distance[0]:.2f}; the input as it is {result.level_only[0]:.2f})"
            )
            return desc, notes, 0
        if est.conditioning == "blind":  # the reference's own chain, played on the input
            notes.append("a blind model: the reference's chain is estimated and played on the input")
            desc, said = limited(
                keep_confident(describe(est.estimate(ref, ref_sr), 0), est.keep, est.strength), est.sample_rate, ref_sr
            )
            return desc, notes + said, 0
        raise ValueError("a dry-conditioned model needs --dry, not --reference")
    if args.dry:
        if est.conditioning == "blind":
            raise ValueError(
                f"{args.model} is a blind estimator: it hears the wet signal only and cannot use --dry "
                "(use a dry-conditioned model such as export/fx-dry.onnx)"
            )
        dry, dry_sr = read_mono(args.dry)
        if is_silent(dry, dry_sr):
            return None, [f"no signal in the dry file {args.dry}: no estimate"], 1
        rate = est.sample_rate
        raw_wet, raw_dry = wet, dry
        wet, dry, lag = lined_up(wet, sr, dry, dry_sr, rate)
        if min(sr, dry_sr) < rate:
            notes.append(
                f"{args.input if sr < dry_sr else args.dry} is at {min(sr, dry_sr)} Hz: the files are compared "
                f"up to {min(sr, dry_sr) / 2000:g} kHz only"
            )
        # judged on the lined-up pair when the start was found (its lengths then agree by construction)
        if lag.found:
            mismatch = dry_mismatch(wet, dry, rate)
        else:
            mismatch = dry_mismatch(to_rate(raw_wet, sr, rate), to_rate(raw_dry, dry_sr, rate), rate)
        said = lag_note(lag, rate)
        if said:
            notes.append(said)
        chain = est.estimate(wet, rate, other=dry, other_rate=rate)
        config = RefineConfig() if args.refine else RefineConfig(steps=0)
        bar = None
        if args.refine and not args.no_progress:
            bar = tqdm(total=config.steps, desc="refining", unit="step", file=sys.stderr, leave=False)

        def progress(step: int, total: int, elapsed: float) -> None:
            if bar is not None:
                bar.n = step
                bar.set_postfix_str(f"{elapsed:.1f} s", refresh=True)

        try:
            result = refine_estimate(est, chain, wet, dry, config, progress)
        finally:
            if bar is not None:
                bar.close()
        desc, said = limited(_described(result), rate, sr, dry_sr)
        what = "refined" if args.refine else "checked"
        notes.append(
            f"{what} in {result.seconds:.1f} s ({result.steps} fitting steps): {result.choice} was closest to the "
            f"recording (levels matched: MRSTFT {result.distance[0]:.3f}, level alone {result.level_only[0]:.3f})"
        )
        if mismatch:
            notes.append("warning: the dry file may not be the source of the input: " + "; ".join(mismatch))
            for name in result.confidence:
                desc[name]["confidence"] = "unsure (dry file?)"
        return desc, notes + said, 0
    if est.conditioning != "blind":
        raise ValueError(f"this estimator is {est.conditioning}-conditioned: give --{est.conditioning}")
    desc, said = limited(
        keep_confident(describe(est.estimate(wet, sr), 0), est.keep, est.strength), est.sample_rate, sr
    )
    return desc, notes + said, 0


def main(args: argparse.Namespace) -> int:
    if args.apply_to and args.out is None:
        return _fail("--apply-to needs --out")
    try:
        target_host = parse_target(args.send) if args.send else None
    except ValueError as err:
        return _fail(str(err))
    target = args.apply_to or (args.input if args.reference else None)
    audio = None
    try:
        if target is not None and args.out is not None:  # refused before the estimate, not after it
            if not args.out.parent.is_dir():
                return _fail(f"--out {args.out}: there is no folder {args.out.parent}")
            if args.out.is_dir() or args.out.suffix.lstrip(".").upper() not in sf.available_formats():
                return _fail(f"--out {args.out}: give a file name ending in .wav or .flac")
            audio, rate = read_audio(target)
        est = LoadedEstimator(args.model)
        desc, notes, code = _estimate(args, est)
    except (ValueError, FileNotFoundError) as err:
        return _fail(str(err))
    if desc is None:
        for note in notes:
            print(note)
        return code
    print(json.dumps(desc, indent=1) if args.json else format_chain(desc))
    for note in notes:
        print(note, file=sys.stderr if args.json else sys.stdout)
    if audio is not None:
        rendered, scaled_db = peak_safe(apply_estimate(desc, audio, rate))
        try:
            sf.write(str(args.out), rendered, rate, subtype="FLOAT")
        except (OSError, RuntimeError, TypeError) as err:  # LibsndfileError is a RuntimeError
            return _fail(f"cannot write {args.out}: {err}", 1)
        said = f"wrote {args.out}"
        if scaled_db < 0:
            said += f" (normalised by {scaled_db:.1f} dB to peak at -1 dBFS: it would have clipped)"
        print(said, file=sys.stderr if args.json else sys.stdout)
    if target_host is not None:
        try:
            refused = push(desc, *target_host)
        except (TimeoutError, OSError) as err:
            return _fail(f"the module at {args.send} did not take the chain: {err}", 1)
        for line in refused:
            print(f"pimodule estimate: the module refused {line}")
        if refused:
            return 1
        print(f"sent to {target_host[0]}:{target_host[1]}: held and matched on input R")
    return 0
