"""OSC encoding/decoding (python-osc) and a small UDP client for the ``/pimodule/`` address space.

Usage::

    from pimodule.device.io.osc_client import OscClient
    with OscClient("127.0.0.1", 9000) as c:
        c.send("/pimodule/control/noise_gain_db", -12.0)
        addr, args = c.request("/pimodule/ping", expect="/pimodule/pong")   # resends until a reply

``encode``/``decode`` are shared with the server (pimodule/io/osc.py). Addresses: docs/osc.md.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from typing import Any

from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def encode(address: str, *args: Any) -> bytes:
    """One OSC message: float → f, int → i, str → s, bool → T/F."""
    b = OscMessageBuilder(address)
    for a in args:
        if isinstance(a, bool):
            b.add_arg(a)
        elif isinstance(a, int):
            b.add_arg(a, "i")
        elif isinstance(a, float):
            b.add_arg(a, "f")
        else:
            b.add_arg(str(a), "s")
    return b.build().dgram


def decode(dgram: bytes) -> list[tuple[str, list]]:
    """(address, args) of every message in a packet (bundles flattened). ParseError if not OSC."""
    return [(m.message.address, list(m.message.params)) for m in OscPacket(dgram).messages]


class OscClient:
    """A UDP OSC client with its own socket, so replies come back to it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 9000, bind_port: int = 0):
        self.target = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1" if is_loopback(host) else "0.0.0.0", bind_port))
        self.port = self.sock.getsockname()[1]

    def __enter__(self) -> OscClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, address: str, *args: Any) -> None:
        self.sock.sendto(encode(address, *args), self.target)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)

    def receive(self, timeout_s: float = 1.0) -> tuple[str, list] | None:
        """The next message (first of a bundle), or None after the timeout."""
        self.sock.settimeout(timeout_s)
        try:
            data, _ = self.sock.recvfrom(65536)
        except TimeoutError:
            return None
        return decode(data)[0]

    def request(
        self,
        address: str,
        *args: Any,
        expect: str | None = None,
        timeout_s: float = 5.0,
        resend_s: float = 0.25,
        accept: Callable[[tuple[str, list]], bool] | None = None,
    ) -> tuple[str, list]:
        """Send, resending every ``resend_s`` until a message whose address starts with ``expect``
        (or, given ``accept``, one it accepts) arrives; other messages are skipped. TimeoutError
        after ``timeout_s``."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.send(address, *args)
            resend_at = min(end, time.monotonic() + resend_s)
            while (left := resend_at - time.monotonic()) > 0:
                msg = self.receive(left)
                if msg is None:
                    continue
                if accept(msg) if accept is not None else (expect is None or msg[0].startswith(expect)):
                    return msg
        raise TimeoutError(f"no reply to {address} (expected {expect or 'an accepted reply'})")
