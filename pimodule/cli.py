"""The ``pimodule`` command: argument parsing and dispatch only.

Each subcommand lives in its own module, imported only when that subcommand runs (so
``pimodule run`` on the module never imports the laptop's torch code). A subcommand module
defines ``configure(parser)`` and ``main(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("pimodule.laptop.data.cli", "render soundfont phrases or prepare your own recordings"),
    "train": ("pimodule.laptop.train_cli", "train a DDSP voice (ddsp) or an effect estimator (fx)"),
    "export": ("pimodule.laptop.ddsp.export", "export a trained run to one streaming ONNX file"),
    "render": ("pimodule.laptop.render", "offline timbre transfer of a recording or a MIDI line"),
    "eval": ("pimodule.laptop.eval_cli", "quality numbers on held-out data"),
    "prune": ("pimodule.laptop.ddsp.prune", "cut a DDSP voice to fewer units per layer and fine-tune it"),
    "quantize": ("pimodule.laptop.quantize", "int8-quantize an exported model"),
    "estimate": ("pimodule.laptop.fx.estimate", "estimate the effect chain of a recording"),
    "flash": ("pimodule.laptop.flash_cli", "send a model file to the module (network or serial)"),
    "run": ("pimodule.device.daemon", "the module's daemon: audio + CV in, model, audio out, OSC"),
    "bench": ("pimodule.device.bench", "real-time headroom of each model"),
    "calibrate": ("pimodule.device.cv_calibrate", "two-point 1 V/oct calibration of CV1"),
}


def _usage() -> str:
    lines = ["usage: pimodule COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "pimodule COMMAND --help for a command's options"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"pimodule: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, help_ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        print(f"pimodule {name}: needs a package that is not installed ({err.name}); "
              f"install the matching extra, e.g. pip install 'pimodule[train]'", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"pimodule {name}", description=help_)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    module.configure(parser)
    args = parser.parse_args(rest)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(module.main(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as err:  # bad input: one clear line (the traceback with -v)
        if args.verbose:
            raise
        print(f"pimodule {name}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
