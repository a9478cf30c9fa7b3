"""``pimodule eval ddsp|fx``: quality numbers on held-out data."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path


def configure_ddsp(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, nargs="+", help="exported .onnx files or training run folders")
    parser.add_argument("--data", type=Path, nargs="+", required=True,
                        help="dataset folder per model (one for all, or one each)")
    parser.add_argument("--json", type=Path, help="also write the results here")


def main_ddsp(args: argparse.Namespace) -> int:
    from pimodule.laptop.ddsp.evaluate import evaluate_model_file, evaluate_run

    data_dirs = args.data if len(args.data) == len(args.model) else args.data[:1] * len(args.model)
    results = {}
    for model, data in zip(args.model, data_dirs):
        metrics = evaluate_run(model, data) if model.is_dir() else evaluate_model_file(model, data)
        results[str(model)] = metrics
    print("| model | spectral loss | loudness error (dB) | f0 error (cents, median) |")
    print("| --- | --- | --- | --- |")
    for name, m in results.items():
        print(f"| {name} | {m['spectral_loss']:.3f} | {m['loudness_error_db']:.2f} | "
              f"{m['f0_error_cents_median']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="family", required=True)
    p = sub.add_parser("ddsp", help="held-out resynthesis quality of DDSP voices")
    configure_ddsp(p)
    p.set_defaults(_main=main_ddsp)
    try:
        fx = importlib.import_module("pimodule.laptop.fx.evaluate")
    except ModuleNotFoundError:
        return
    p = sub.add_parser("fx", help="effect-estimation quality")
    fx.configure(p)
    p.set_defaults(_main=fx.main)


def main(args: argparse.Namespace) -> int:
    return args._main(args)
