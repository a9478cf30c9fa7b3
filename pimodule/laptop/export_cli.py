"""Turn a training run into one streaming .onnx model file (a DDSP voice or an effect estimator).

The file is self-contained (no external data) and carries its contract as metadata: kind, rate,
block, control table, state, provenance (docs/model-file.md). The run folder says which family
it is; the latest checkpoint is exported unless one is named.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pimodule.laptop import runs
from pimodule.laptop.ddsp import export as ddsp_export
from pimodule.laptop.fx import export as fx_export
from pimodule.laptop.quiet import quiet_onnx_export

EXAMPLES = (
    "pimodule export runs/violin --out export/violin.onnx",
    "pimodule export runs/mine --out export/mine.onnx --name mine",
    "pimodule export runs/fx_dry_wide --out export/fx-dry.onnx",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="training run folder (pimodule train ... --out RUN)")
    parser.add_argument("--out", type=Path, required=True, help="where to write NAME.onnx")
    parser.add_argument("--name", help="model name (default: the file's stem)")
    parser.add_argument("--checkpoint", help="checkpoint step or file in the run (default: the latest)")


def main(args: argparse.Namespace) -> int:
    quiet_onnx_export()
    family = runs.family(args.run)
    return (fx_export if family == "fx" else ddsp_export).main(args)
