"""A small command-line OSC tool: serve with an in-memory controller, or send one message.

    python -m pimodule.device.io.osc_tool --serve [--port 9000]       # answers like the daemon (no audio)
    python -m pimodule.device.io.osc_tool --send /pimodule/ping       # prints the replies
    python -m pimodule.device.io.osc_tool --send /pimodule/control/noise_gain_db -12

Arguments after the address are sent as int if they parse as int, else float, else string.
Useful to try PureData patches without a daemon (see firmware/pd_patches/README.md).
"""

from __future__ import annotations

import argparse
import logging
import time

from pimodule.device.io.controller import MemoryController
from pimodule.device.io.osc import OscClient, OscConfig, OscServer


def _parse_arg(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pimodule.device.io.osc_tool", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--serve", action="store_true", help="serve with an in-memory controller")
    g.add_argument("--send", nargs="+", metavar=("ADDRESS", "ARG"), help="send one message")
    p.add_argument("--wait", type=float, default=1.0, help="seconds to wait for replies")
    args = p.parse_args(argv)
    if args.serve:
        logging.basicConfig(level=logging.INFO)
        server = OscServer(MemoryController(), OscConfig(host=args.host, port=args.port))
        server.start()
        print(f"serving /pimodule/ on {args.host}:{server.port} (Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
        return 0
    address, *rest = args.send
    with OscClient(args.host, args.port) as client:
        client.send(address, *[_parse_arg(a) for a in rest])
        while (msg := client.receive(args.wait)) is not None:
            print(msg[0], *msg[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
