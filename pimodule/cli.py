"""The ``pimodule`` command: argument parsing and dispatch only.

Each subcommand lives in its own module, imported only when that subcommand runs (so
``pimodule run`` on the module never imports the laptop's torch code). A subcommand module
defines ``configure(parser)``, ``main(args) -> int`` and ``EXAMPLES`` (command lines shown under
``--help``); its docstring's first line is the one-line description. ``train`` and ``eval`` take
a model family (``ddsp`` or ``fx``) first.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from importlib import metadata

# name -> module, or family -> module for commands that take a model family first
COMMANDS: dict[str, str | dict[str, str]] = {
    "demo": "pimodule.laptop.demo",
    "data": "pimodule.laptop.data.cli",
    "train": {"ddsp": "pimodule.laptop.ddsp.train", "fx": "pimodule.laptop.fx.train"},
    "export": "pimodule.laptop.export_cli",
    "eval": {"ddsp": "pimodule.laptop.ddsp.evaluate", "fx": "pimodule.laptop.fx.evaluate"},
    "render": "pimodule.laptop.render",
    "estimate": "pimodule.laptop.fx.estimate",
    "prune": "pimodule.laptop.ddsp.prune",
    "quantize": "pimodule.laptop.quantize",
    "flash": "pimodule.laptop.flash_cli",
    "flash-receive": "pimodule.device.flash_receive",
    "models": "pimodule.device.models_cli",
    "run": "pimodule.device.daemon_cli",
    "bench": "pimodule.device.bench",
    "calibrate": "pimodule.device.cv_calibrate",
}
# what each command is for, in the overview (the module docstrings say it at length)
SUMMARIES = {
    "demo": "set up nothing, play everything: timbre transfer and the daemon on the shipped voices",
    "data": "render soundfont phrases, or prepare your own recordings as a training set",
    "train": "train a DDSP voice (ddsp) or an effect-chain estimator (fx)",
    "export": "turn a training run into one streaming .onnx model file",
    "eval": "quality numbers of voices (ddsp) or estimators (fx) on held-out material",
    "render": "offline timbre transfer of a recording or a MIDI line through a voice",
    "estimate": "estimate the effect chain of a recording (and apply it to another)",
    "prune": "cut a voice to fewer units per layer and fine-tune it",
    "quantize": "int8-quantize an exported model",
    "flash": "send a model to the module (over SSH, TCP on loopback, or serial)",
    "flash-receive": "the module's end of `pimodule flash --to HOST` over SSH (relays to the daemon)",
    "models": "the models on this module: list them, roll one back to its previous version",
    "run": "the module's daemon: audio and CV in, the voice, audio out, OSC",
    "bench": "real-time response of each model on this machine",
    "calibrate": "two-point 1 V/oct calibration of CV1",
}
GLOBAL_FLAGS = ("-v", "--verbose")


def version() -> str:
    try:
        return metadata.version("pimodule")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option's help; descriptions and examples keep their lines."""


def _usage() -> str:
    lines = [
        "usage: pimodule COMMAND [options]   (pimodule COMMAND --help for its options and examples)",
        "",
        "commands:",
    ]
    for name, target in COMMANDS.items():
        families = f" {'|'.join(target)}" if isinstance(target, dict) else ""
        lines.append(f"  {name + families:<12} {SUMMARIES[name]}")
    lines += ["", "global options (anywhere on the line): -v/--verbose (debug log, tracebacks), --version"]
    return "\n".join(lines)


def _import(name: str, module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("pimodule"):
            raise
        print(
            f"pimodule {name}: needs a package that is not installed ({err.name}); install the "
            f"matching extra, e.g. pip install 'pimodule[train]'",
            file=sys.stderr,
        )
        return None


def _plain(text: str) -> str:
    """Docstring markup out of --help: ``x`` and :role:`x` read as x."""
    text = re.sub(r":[a-z]+:`~?([^`]*)`", r"\1", text)
    return text.replace("``", "")


def _parser(prog: str, module) -> argparse.ArgumentParser:
    doc = _plain((module.__doc__ or "").strip())
    examples = getattr(module, "EXAMPLES", ())
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples) if examples else None
    parser = argparse.ArgumentParser(prog=prog, description=doc, epilog=epilog, formatter_class=HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    module.configure(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in GLOBAL_FLAGS for a in argv)
    argv = [a for a in argv if a not in GLOBAL_FLAGS]
    if "--version" in argv[:1]:
        print(f"pimodule {version()}")
        return 0
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    target = COMMANDS.get(name)
    if target is None:
        print(f"pimodule: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    prog = f"pimodule {name}"
    if isinstance(target, dict):
        family = rest[0] if rest else None
        if family not in target:
            if family in ("-h", "--help"):
                print(
                    f"usage: {prog} {{{','.join(target)}}} [options]\n\n{SUMMARIES[name]}; "
                    f"{prog} FAMILY --help for each"
                )
                return 0
            print(f"usage: {prog} {{{','.join(target)}}} ...: say which ({', '.join(target)})", file=sys.stderr)
            return 2
        prog, module_name, rest = f"{prog} {family}", target[family], rest[1:]
    else:
        module_name = target
    module = _import(name, module_name)
    if module is None:
        return 2
    args = _parser(prog, module).parse_args(rest)
    args.verbose = args.verbose or verbose
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(module.main(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as err:  # bad input: one clear line (the traceback with -v)
        if args.verbose:
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
