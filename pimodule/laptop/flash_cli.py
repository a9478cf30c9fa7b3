"""Send a model file to the module: checked, installed atomically, and played.

From another machine the model goes over SSH: ``--to [user@]HOST`` runs ``ssh HOST pimodule
flash-receive`` (the module's own sshd and your key: set it up once with ``ssh-copy-id``), which
relays to the module's daemon. ``--to HOST:PORT`` speaks to a daemon's TCP port directly, which
listens on loopback only (local tools, tests); ``--serial PORT`` uses a serial line. The module
verifies the file (size, SHA-256), validates it in a child process with memory and time limits
(a voice the engine can play for 8 s, finite, within this board's real-time budget, or an
effect estimator), installs it atomically (keeping the version it replaces: ``pimodule models
rollback``) and swaps to it with a crossfade; anything short of that leaves the module as it was
and the refusal is printed here. Protocol: :mod:`pimodule.device.io.flashlink`, docs/flash.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pimodule.core.modelfile import ModelFileError
from pimodule.device.io import flash_links, flashlink
from pimodule.device.io.osc_client import is_loopback
from pimodule.device.session import open_model
from pimodule.device.store import check_name

EXAMPLES = (
    "pimodule flash export/flute.onnx --to pi@pimodule.local",
    "pimodule flash export/flute.onnx --to pimodule.local --name cello --no-activate",
    "pimodule flash export/flute.onnx --to 127.0.0.1:9100",
    "pimodule flash export/flute.onnx --serial /dev/ttyACM0",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, nargs="?", help="the .onnx model file (pimodule export)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--to",
        metavar="[USER@]HOST | HOST:PORT",
        help="the module over SSH ([user@]host), or a daemon's loopback TCP port (host:port, this machine only)",
    )
    where.add_argument("--serial", metavar="PORT", help="the module on a serial line, e.g. /dev/ttyACM0")
    parser.add_argument("--baud", type=int, default=115200, help="serial baud rate")
    parser.add_argument("--name", help="install under this name (default: the file's stem; a-z 0-9 _ -)")
    parser.add_argument("--no-activate", action="store_true", help="install only; do not swap to it")
    parser.add_argument(
        "--replace-kind", action="store_true", help="replace a model of another kind under the same name (on purpose)"
    )
    parser.add_argument("--ping", action="store_true", help="only check that the module answers")
    parser.add_argument("--quiet", action="store_true", help="no progress")
    parser.add_argument(
        "--remote-command",
        default=flashlink.DEFAULT_REMOTE_COMMAND,
        help="SSH: the command the module runs (its pimodule and flash-receive, with any options)",
    )
    parser.add_argument("--ssh-config", type=Path, help="SSH: a config file for ssh -F (default: ~/.ssh/config)")
    parser.add_argument(
        "--ssh-option", action="append", default=[], metavar="KEY=VALUE", help="SSH: an ssh -o option (repeatable)"
    )


def _tcp_address(text: str) -> tuple[str, int] | None:
    """``host:port`` (or ``[v6]:port``) → (host, port); None for an SSH destination."""
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and host and not host.endswith(":") and "@" not in host:
        return host.strip("[]"), int(port)
    return None


def precheck(path: Path, name: str | None) -> str:
    """A clear error here, before sending, for a file the module would refuse anyway; the kind."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    check_name(name if name is not None else path.stem)  # ModelFileError with the rule
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


def _open(args: argparse.Namespace):
    """(link, where) or raises FlashError/ValueError with what to do."""
    if args.serial:
        return flash_links.SerialLink.open(args.serial, args.baud), args.serial
    tcp = _tcp_address(args.to)
    if tcp is not None:
        host, port = tcp
        if not is_loopback(host) and host != "localhost":
            raise ValueError(
                f"{host}:{port}: the TCP flash port listens on the module itself only; from this machine "
                f"flash over SSH: --to [user@]{host}"
            )
        try:
            return flash_links.SocketLink.connect(host, port), f"{host}:{port}"
        except ConnectionRefusedError:
            raise flashlink.FlashError(
                f"nothing listens on {host}:{port}: is the pimodule daemon running (pimodule run), with flashing on?"
            ) from None
    link = flash_links.SshLink.open(
        args.to, args.remote_command, config_file=args.ssh_config, options=tuple(args.ssh_option)
    )
    return link, f"{args.to} (ssh)"


def main(args: argparse.Namespace) -> int:
    if args.model is None and not args.ping:
        print("pimodule flash: give a model file (or --ping)", file=sys.stderr)
        return 2
    try:
        kind = None if args.ping else precheck(args.model, args.name)
    except ModelFileError as err:
        print(f"pimodule flash: {err}", file=sys.stderr)
        return 1
    try:
        link, where = _open(args)
    except flashlink.FlashError as err:
        print(f"pimodule flash: {err}", file=sys.stderr)
        return 1
    try:
        if args.ping:
            print(f"{where}: {flashlink.ping(link, 30.0 if isinstance(link, flash_links.SshLink) else 2.0)}")
            return 0
        print(f"flash: {args.model} ({kind}, {args.model.stat().st_size} bytes) -> {where}", file=sys.stderr)
        record = flashlink.flash_file(
            args.model,
            link,
            name=args.name,
            activate=not args.no_activate,
            replace_kind=args.replace_kind,
            progress=None if args.quiet else _Progress(),
            line_timeout_s=30.0 if isinstance(link, flash_links.SshLink) else flashlink.LINE_TIMEOUT_S,
        )
    except flashlink.FlashError as err:
        print(f"pimodule flash: {err}", file=sys.stderr)
        return 1
    finally:
        link.close()
    print(json.dumps(record))
    return 0
