"""A small command-line OSC tool: serve with an in-memory controller, send one message, or relay
PureData's OSC to a module on another host, signed.

    python -m pimodule.device.io.osc_tool --serve [--port 9000]       # answers like the daemon (no audio)
    python -m pimodule.device.io.osc_tool --send /pimodule/ping       # prints the replies
    python -m pimodule.device.io.osc_tool --send /pimodule/control/noise_gain_db -12
    python -m pimodule.device.io.osc_tool --make-key ~/.config/pimodule/osc.key
    python -m pimodule.device.io.osc_tool --relay --to 192.168.1.30:9000 --key-file ~/.config/pimodule/osc.key

Arguments after the address are sent as int if they parse as int, else float, else string.
``--serve`` is for trying PureData patches without a daemon (firmware/pd_patches/README.md);
``--relay`` listens on 127.0.0.1:9000 (``--listen``) and signs every packet it gets there for the
module (Pd vanilla cannot compute an HMAC): docs/osc.md, "Authentication".
"""

from __future__ import annotations

import argparse
import collections
import logging
import selectors
import socket
import threading
import time

from pimodule.device.io.controller import MemoryController
from pimodule.device.io.osc import OscClient, OscConfig, OscServer
from pimodule.device.io.osc_client import (
    AUTH_ADDRESS,
    NONCE_ADDRESS,
    OscDecodeError,
    Signer,
    decode,
    encode,
    load_key,
    make_key,
)

log = logging.getLogger(__name__)
MAX_RELAY_CLIENTS = 16
MAX_WAITING = 32


def _parse_arg(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _host_port(text: str, default_port: int = 9000) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host:
        return text, default_port
    return host, int(port)


class Relay:
    """Local OSC clients (Pd) → signed packets → the module; the module's replies to each
    upstream socket go back to the local client that caused them. Bounded: at most 16 local
    clients (least recently heard one dropped), 32 packets held while a nonce is fetched."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], key: bytes):
        self.target = target
        self.signer = Signer(key)
        self.listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.listen.bind(listen)
        self.port = self.listen.getsockname()[1]
        self._up: collections.OrderedDict[tuple[str, int], socket.socket] = collections.OrderedDict()
        self._waiting: collections.deque[tuple[tuple[str, int], bytes]] = collections.deque(maxlen=MAX_WAITING)
        self._asked_nonce = 0.0
        self._stop = threading.Event()
        self.forwarded = 0
        self.replies = 0

    def _upstream(self, client: tuple[str, int], sel: selectors.BaseSelector) -> socket.socket:
        up = self._up.get(client)
        if up is None:
            up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            up.bind(("127.0.0.1" if self.target[0].startswith("127.") else "0.0.0.0", 0))
            sel.register(up, selectors.EVENT_READ, client)
            self._up[client] = up
            while len(self._up) > MAX_RELAY_CLIENTS:
                _, old = self._up.popitem(last=False)
                sel.unregister(old)
                old.close()
        self._up.move_to_end(client)
        return up

    def _ask_nonce(self, up: socket.socket) -> None:
        now = time.monotonic()
        if now - self._asked_nonce > 0.25:
            self._asked_nonce = now
            up.sendto(encode(NONCE_ADDRESS), self.target)

    def _forward(self, client: tuple[str, int], data: bytes, sel: selectors.BaseSelector) -> None:
        up = self._upstream(client, sel)
        if self.signer.nonce is None:
            self._waiting.append((client, data))
            self._ask_nonce(up)
            return
        up.sendto(self.signer.wrap(data), self.target)
        self.forwarded += 1

    def _from_module(self, client: tuple[str, int], up: socket.socket, data: bytes, sel) -> None:
        try:
            address, args = decode(data)[0]
        except (OscDecodeError, IndexError):
            address, args = "", []
        if address == NONCE_ADDRESS and args and isinstance(args[0], str):
            self.signer.nonce = args[0]
            while self._waiting:
                self._forward(*self._waiting.popleft(), sel)
            return
        if address == "/pimodule/error" and args[:1] == [AUTH_ADDRESS] and "stale nonce" in str(args[1:2]):
            self.signer.nonce = None  # the module restarted: ask again, then go on
            self._ask_nonce(up)
        self.replies += 1
        self.listen.sendto(data, client)

    def run(self, duration_s: float | None = None) -> None:
        end = None if duration_s is None else time.monotonic() + duration_s
        with selectors.DefaultSelector() as sel:
            sel.register(self.listen, selectors.EVENT_READ, None)
            while not self._stop.is_set() and (end is None or time.monotonic() < end):
                for key, _ in sel.select(0.2):
                    try:
                        data, src = key.fileobj.recvfrom(65536)
                    except OSError:
                        continue
                    if key.data is None:
                        self._forward(src, data, sel)
                    else:
                        self._from_module(key.data, key.fileobj, data, sel)
        self.close()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        for up in self._up.values():
            up.close()
        self._up.clear()
        self.listen.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pimodule.device.io.osc_tool", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="the module's address (--send) or bind address (--serve)")
    p.add_argument("--port", type=int, default=9000, help="the module's OSC port (default 9000)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--serve", action="store_true", help="serve with an in-memory controller")
    g.add_argument("--send", nargs="+", metavar=("ADDRESS", "ARG"), help="send one message")
    g.add_argument("--relay", action="store_true", help="sign what local clients (Pd) send, for --to")
    g.add_argument("--make-key", metavar="PATH", help="write a new random key file (mode 600)")
    p.add_argument("--wait", type=float, default=1.0, help="seconds to wait for replies (--send)")
    p.add_argument("--key-file", help="shared key: sign what is sent (--send, --relay; docs/osc.md)")
    p.add_argument("--to", metavar="HOST[:PORT]", help="the module (--relay)")
    p.add_argument("--listen", metavar="HOST:PORT", default="127.0.0.1:9000", help="where --relay listens")
    args = p.parse_args(argv)
    if args.make_key:
        print(f"wrote {make_key(args.make_key)}: copy it to the module's [osc] key_file (mode 600)")
        return 0
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
    key = load_key(args.key_file) if args.key_file else None
    if args.relay:
        if not args.to or key is None:
            p.error("--relay needs --to HOST[:PORT] and --key-file")
        relay = Relay(_host_port(args.listen), _host_port(args.to), key)
        print(f"relaying 127.0.0.1:{relay.port} -> {args.to}, signed (Ctrl-C stops)", flush=True)
        try:
            relay.run()
        except KeyboardInterrupt:
            relay.close()
        return 0
    address, *rest = args.send
    with OscClient(args.host, args.port, key=key) as client:
        client.send(address, *[_parse_arg(a) for a in rest])
        while (msg := client.receive(args.wait)) is not None:
            print(msg[0], *msg[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
