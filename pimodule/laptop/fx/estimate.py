"""Estimate which effects (EQ, compressor, distortion, reverb) shaped a recording, and how set.

Blind: the chain of ``--input``. With ``--dry``: the chain that turns the dry file into the input.
With ``--reference`` (style transfer): the chain that makes ``--input`` sound like the reference.
``--apply-to x.wav --out y.wav`` renders the estimate on another file with the real-time twins
(with ``--reference`` the input itself is restyled when ``--apply-to`` is not given). ``--refine``
(with ``--dry``) checks and fits the estimate against the audio (:mod:`pimodule.laptop.fx.refine`); the
probabilities printed are then its decisions (0 or 1). ``--send HOST[:PORT]`` pushes the estimate
to a running module, where it is held and matched on input R (:mod:`pimodule.laptop.fx.push`).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import soundfile as sf

from pimodule.laptop.fx.chain import describe
from pimodule.laptop.fx.infer import LoadedEstimator, apply_estimate, read_mono, refine_estimate
from pimodule.laptop.fx.push import parse_target, push

log = logging.getLogger(__name__)


EXAMPLES = (
    "pimodule estimate export/fx-dry.onnx --input wet.wav --dry dry.wav",
    "pimodule estimate export/fx.onnx --input wet.wav --apply-to guitar.wav --out guitar_fx.wav",
    "pimodule estimate export/fx-dry.onnx --input wet.wav --dry dry.wav --refine --send pimodule.local",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="training run folder or exported .onnx")
    parser.add_argument("--input", type=Path, required=True, help="processed (wet) recording")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--dry", type=Path, help="the dry recording the input was made from")
    group.add_argument("--reference", type=Path, help="a recording whose effects to copy")
    parser.add_argument("--apply-to", type=Path, dest="apply_to", help="render the estimate on this file")
    parser.add_argument("--out", type=Path, help="output wav for --apply-to / --reference")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--send",
        metavar="HOST[:PORT]",
        help="push the estimate to a running module over OSC (port 9000 by default): "
        "held there and matched on input R (pimodule.laptop.fx.push)",
    )
    parser.add_argument(
        "--refine",
        action="store_true",
        help="with --dry: check and fit the estimate against the audio (analysis by "
        "synthesis, pimodule.laptop.fx.refine; slower, more often right)",
    )


def format_chain(desc: dict) -> str:
    lines = []
    for name, entry in desc.items():
        state = "on " if entry["active"] else "off"
        extra = f" ({entry['mode']})" if "mode" in entry and entry["active"] else ""
        lines.append(f"{name:<11} {state} p={entry['probability']:.2f}{extra}")
        if entry["active"]:
            lines += [f"    {k:<20} {v:10.3f}" for k, v in entry["params"].items()]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.apply_to and args.out is None:
        print("pimodule estimate: --apply-to needs --out")
        return 2
    if args.refine and not args.dry:
        print("pimodule estimate: --refine needs --dry (the estimate is checked by rendering the dry file)")
        return 2
    try:
        target_host = parse_target(args.send) if args.send else None
    except ValueError as err:
        print(f"pimodule estimate: {err}")
        return 2
    try:
        est = LoadedEstimator(args.model)
        wet, sr = read_mono(args.input)
        if args.reference:
            ref, ref_sr = read_mono(args.reference)
            chain = est.estimate(ref, ref_sr, other=wet, other_rate=sr)
        elif args.dry:
            dry, dry_sr = read_mono(args.dry)
            chain = est.estimate(wet, sr, other=dry, other_rate=dry_sr)
            if args.refine:
                chain = refine_estimate(est, chain, wet, sr, dry, dry_sr)
        else:
            chain = est.estimate(wet, sr)
    except (ValueError, FileNotFoundError) as err:
        print(f"pimodule estimate: {err}")
        return 2
    desc = describe(chain, 0)
    print(json.dumps(desc, indent=1) if args.json else format_chain(desc))
    target = args.apply_to or (args.input if args.reference else None)
    if target is not None and args.out is not None:
        audio, rate = sf.read(str(target), dtype="float32", always_2d=True)
        rendered = apply_estimate(desc, audio, rate)
        sf.write(str(args.out), rendered, rate, subtype="FLOAT")
        log.info("wrote %s", args.out)
    if target_host is not None:
        try:
            refused = push(desc, *target_host)
        except (TimeoutError, OSError) as err:
            print(f"pimodule estimate: the module at {args.send} did not take the chain: {err}")
            return 1
        for line in refused:
            print(f"pimodule estimate: the module refused {line}")
        if refused:
            return 1
        print(f"sent to {target_host[0]}:{target_host[1]}: held and matched on input R")
    return 0
