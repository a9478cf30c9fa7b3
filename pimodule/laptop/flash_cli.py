"""Send a model file to the module: checked, installed atomically, and played.

The module verifies it (size, SHA-256), validates it (onnxruntime loads it; a voice the engine
can play, warmed to a finite output, or an effect estimator), installs it atomically in its
models directory and swaps to it with a crossfade; anything short of that leaves the module as
it was and the refusal is printed here. Protocol: :mod:`pimodule.device.io.flashlink`, docs/flash.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pimodule.device.io import flashlink
from pimodule.device.session import open_model

EXAMPLES = (
    "pimodule flash export/flute.onnx --to pi@pimodule.local",
    "pimodule flash export/flute.onnx --to 127.0.0.1:9100",
    "pimodule flash export/flute.onnx --serial /dev/ttyACM0",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, nargs="?", help="the .onnx model file (pimodule export)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--to", metavar="HOST[:PORT]", help=f"the module on the network (port {flashlink.DEFAULT_PORT} by default)"
    )
    where.add_argument("--serial", metavar="PORT", help="the module on a serial line, e.g. /dev/ttyACM0")
    parser.add_argument("--baud", type=int, default=115200, help="serial baud rate")
    parser.add_argument("--name", help="install under this name (default: the file's stem)")
    parser.add_argument("--no-activate", action="store_true", help="install only; do not swap to it")
    parser.add_argument("--ping", action="store_true", help="only check that the module answers")
    parser.add_argument("--quiet", action="store_true", help="no progress")


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and host and not host.endswith(":"):
        return host.strip("[]"), int(port)
    return text.strip("[]"), flashlink.DEFAULT_PORT


def precheck(path: Path) -> str:
    """A clear error here, before sending, for a file the module would refuse anyway; the kind."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    return open_model(path)[1].kind  # ModelFileError (a ValueError) with the reason


class _Progress:
    """A line on stderr, rewritten every 10 %."""

    def __init__(self):
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        percent = int(100 * done / total)
        if percent // 10 != self.last // 10 or done == total:
            self.last = percent
            print(
                f"\rflash: {percent:3d} % of {total} bytes",
                end="\n" if done == total else "",
                file=sys.stderr,
                flush=True,
            )


def main(args: argparse.Namespace) -> int:
    if args.model is None and not args.ping:
        print("pimodule flash: give a model file (or --ping)", file=sys.stderr)
        return 2
    kind = None if args.ping else precheck(args.model)
    if args.to:
        host, port = _address(args.to)
        link = flashlink.SocketLink.connect(host, port)  # OSError: cannot reach it
        where = f"{host}:{port}"
    else:
        link = flashlink.SerialLink.open(args.serial, args.baud)
        where = args.serial
    try:
        if args.ping:
            print(f"{where}: {flashlink.ping(link)}")
            return 0
        print(f"flash: {args.model} ({kind}, {args.model.stat().st_size} bytes) -> {where}", file=sys.stderr)
        record = flashlink.flash_file(
            args.model,
            link,
            name=args.name,
            activate=not args.no_activate,
            progress=None if args.quiet else _Progress(),
        )
    except flashlink.FlashError as err:
        print(f"pimodule flash: {err}", file=sys.stderr)
        return 1
    finally:
        link.close()
    print(json.dumps(record))
    return 0
