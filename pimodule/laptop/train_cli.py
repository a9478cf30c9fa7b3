"""``pimodule train ddsp|fx``: dispatch to the DDSP trainer or the effect-estimator trainer."""

from __future__ import annotations

import argparse
import importlib

TRAINERS = {"ddsp": "pimodule.laptop.ddsp.train", "fx": "pimodule.laptop.fx.train"}


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="family", required=True)
    for name, module_name in TRAINERS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue
        p = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.configure(p)
        p.set_defaults(_module=module)


def main(args: argparse.Namespace) -> int:
    return args._module.main(args)
