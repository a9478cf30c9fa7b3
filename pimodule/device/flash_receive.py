"""The module's end of ``pimodule flash MODEL --to [user@]HOST``: run by ``ssh HOST`` (the module's
own sshd and keys), it relays the flash line protocol between its stdin/stdout and the running
daemon's loopback flash port, so the daemon verifies, validates, installs and swaps to the model
exactly as for a local sender. Nothing is written here: with no daemon to relay to it says so
(exit 69) and the sender prints that line. Not for interactive use.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import sys
from pathlib import Path

from pimodule.device import config as config_mod
from pimodule.device.io.flashlink import EX_UNAVAILABLE

EXAMPLES = (
    "ssh pi@pimodule.local /opt/pimodule/venv/bin/pimodule flash-receive",
    "pimodule flash-receive --port 9100 < session.txt",
)
SYSTEM_CONFIG = Path("/etc/pimodule/config.toml")
BUFFER = 65536


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help=f"the daemon's config TOML (default: {SYSTEM_CONFIG} if present)")
    parser.add_argument("--port", type=int, help="the daemon's flash port on 127.0.0.1 (default: the config's)")
    parser.add_argument(
        "--connect-timeout", type=float, default=5.0, help="seconds to wait for the daemon to accept the connection"
    )


def _settings(args: argparse.Namespace) -> tuple[int, bool, str]:
    path = args.config if args.config is not None else (SYSTEM_CONFIG if SYSTEM_CONFIG.is_file() else None)
    try:
        cfg = config_mod.load_config(path)
    except PermissionError:  # the config may be the service's own: its port is the default then
        print(f"cannot read {path}: assuming the default flash port", file=sys.stderr)
        cfg = config_mod.load_config(None)
    port = args.port if args.port is not None else cfg.flash.port
    return port, cfg.flash.enabled, str(path or "the default config")


def relay(stdin_fd: int, stdout_fd: int, sock: socket.socket) -> None:
    """Copy bytes both ways until the daemon closes the connection (after the sender's input
    ended, what the daemon still says is delivered)."""
    sock_fd = sock.fileno()
    inputs = [stdin_fd, sock_fd]
    while sock_fd in inputs:
        ready, _, _ = select.select(inputs, [], [], 1.0)
        for fd in ready:
            data = os.read(fd, BUFFER) if fd == stdin_fd else sock.recv(BUFFER)
            if fd == stdin_fd:
                if not data:  # the sender is gone: let the daemon see the end, hear its last words
                    inputs.remove(stdin_fd)
                    try:
                        sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                else:
                    sock.sendall(data)
            else:
                if not data:
                    inputs.remove(sock_fd)
                    break
                view = memoryview(data)
                while view:
                    view = view[os.write(stdout_fd, view) :]


def main(args: argparse.Namespace) -> int:
    host = socket.gethostname()
    port, enabled, where = _settings(args)
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=args.connect_timeout)
    except OSError as err:
        if not enabled:
            reason = f"flashing is switched off on {host} (flash.enabled = false in {where})"
        elif isinstance(err, ConnectionRefusedError):
            reason = (
                f"the pimodule daemon is not running on {host} (nothing listens on 127.0.0.1:{port}; "
                "systemctl status pimodule)"
            )
        else:
            reason = f"cannot reach the pimodule daemon on {host} at 127.0.0.1:{port} ({err})"
        print(reason, file=sys.stderr, flush=True)
        return EX_UNAVAILABLE
    sock.settimeout(None)
    try:
        relay(sys.stdin.fileno(), sys.stdout.fileno(), sock)
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sock.close()
    return 0
