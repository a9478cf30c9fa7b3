"""OSC 1.0 encoding/decoding, message signing, and a small UDP client for the ``/pimodule/`` space.

Usage::

    from pimodule.device.io.osc_client import OscClient
    with OscClient("127.0.0.1", 9000) as c:
        c.send("/pimodule/control/noise_gain_db", -12.0)
        addr, args = c.request("/pimodule/ping", expect="/pimodule/pong")   # resends until a reply

    with OscClient("192.168.1.30", 9000, key=load_key("~/.config/pimodule/osc.key")) as c:
        c.send("/pimodule/mode", "fx")                                      # signed (docs/osc.md)

``encode``/``decode`` are shared with the server (pimodule/device/io/osc.py). They are this
module's own, strict and bounded: a packet that is not OSC 1.0 with the types below raises
:class:`OscDecodeError` (no logging: python-osc's parser logged one warning per unknown type-tag
character, an unbounded log under a packet storm), and a value that cannot be encoded raises
:class:`OscEncodeError` instead of being sent truncated. Types: ``i`` int32, ``h`` int64, ``f``
float32, ``d`` float64, ``s`` string (UTF-8), ``b`` blob, ``t`` time tag, ``T F N``, arrays ``[ ]``.
Addresses: docs/osc.md.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

INT32 = (-(2**31), 2**31 - 1)
FLOAT32_MAX = 3.4028234663852886e38
MAX_BUNDLE_DEPTH = 4
MAX_ARRAY_DEPTH = 4
AUTH_ADDRESS = "/pimodule/auth"
NONCE_ADDRESS = "/pimodule/auth/nonce"
AUTH_CONTEXT = b"pimodule-osc-v1\x00"
CLIENT_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
MIN_KEY_BYTES = 16


class OscDecodeError(ValueError):
    """Bytes that are not an OSC 1.0 packet of the supported types."""


class OscEncodeError(ValueError):
    """A value that has no faithful OSC encoding (int outside int32, float beyond float32, ...)."""


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


# -- encoding ------------------------------------------------------------------------------------
def _pad(b: bytes) -> bytes:
    return b + b"\x00" * (-len(b) % 4)


def _osc_string(text: str) -> bytes:
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as err:  # lone surrogates
        raise OscEncodeError(f"string not encodable as UTF-8: {err.reason}") from None
    if b"\x00" in raw:
        raise OscEncodeError("string contains a NUL character")
    return raw + b"\x00" * (4 - len(raw) % 4)


def encode(address: str, *args: Any) -> bytes:
    """One OSC message: bool → T/F, int → i (int32 only), float → f (finite values beyond float32
    are refused), str → s, bytes → b. OscEncodeError for anything else."""
    tags = [","]
    body = []
    for a in args:
        if isinstance(a, bool):
            tags.append("T" if a else "F")
        elif isinstance(a, int):
            if not INT32[0] <= a <= INT32[1]:
                raise OscEncodeError(f"integer {a} does not fit an OSC int32")
            tags.append("i")
            body.append(struct.pack(">i", a))
        elif isinstance(a, float):
            if abs(a) > FLOAT32_MAX and a == a and abs(a) != float("inf"):
                raise OscEncodeError(f"float {a!r} does not fit an OSC float32")
            try:
                packed = struct.pack(">f", a)
            except OverflowError:
                raise OscEncodeError(f"float {a!r} does not fit an OSC float32") from None
            tags.append("f")
            body.append(packed)
        elif isinstance(a, str):
            tags.append("s")
            body.append(_osc_string(a))
        elif isinstance(a, (bytes, bytearray)):
            tags.append("b")
            body.append(struct.pack(">i", len(a)) + _pad(bytes(a)))
        else:
            raise OscEncodeError(f"no OSC type for {type(a).__name__}")
    return _osc_string(address) + _osc_string("".join(tags)) + b"".join(body)


def encode_bundle(*messages: bytes, timetag: int = 1) -> bytes:
    """A bundle of already encoded messages (time tag 1 = immediately)."""
    return b"#bundle\x00" + struct.pack(">Q", timetag) + b"".join(struct.pack(">i", len(m)) + m for m in messages)


# -- decoding ------------------------------------------------------------------------------------
def _read_string(data: bytes, i: int) -> tuple[str, int]:
    end = data.find(b"\x00", i)
    if end < 0:
        raise OscDecodeError("string without its terminating NUL")
    try:
        text = data[i:end].decode("utf-8")
    except UnicodeDecodeError:
        raise OscDecodeError("string is not UTF-8") from None
    return text, end + 4 - (end - i) % 4


def _read(data: bytes, i: int, n: int) -> tuple[bytes, int]:
    if n < 0 or i + n > len(data):
        raise OscDecodeError("packet ends inside an argument")
    return data[i : i + n], i + n


def _message(data: bytes) -> tuple[str, list]:
    address, i = _read_string(data, 0)
    if not address.startswith("/"):
        raise OscDecodeError("an OSC address starts with '/'")
    if i >= len(data):
        return address, []
    tags, i = _read_string(data, i)
    if not tags.startswith(","):
        raise OscDecodeError("type tags must start with ','")
    args: list = []
    stack = [args]
    for tag in tags[1:]:
        if tag in "ifhdt":
            size = 8 if tag in "hdt" else 4
            raw, i = _read(data, i, size)
            value = struct.unpack({"i": ">i", "f": ">f", "h": ">q", "d": ">d", "t": ">Q"}[tag], raw)[0]
            stack[-1].append(value)
        elif tag == "s":
            if i >= len(data):
                raise OscDecodeError("packet ends inside an argument")
            text, i = _read_string(data, i)
            stack[-1].append(text)
        elif tag == "b":
            raw, i = _read(data, i, 4)
            (n,) = struct.unpack(">i", raw)
            blob, i = _read(data, i, n)
            i += -n % 4
            stack[-1].append(blob)
        elif tag in "TFN":
            stack[-1].append({"T": True, "F": False, "N": None}[tag])
        elif tag == "[":
            if len(stack) > MAX_ARRAY_DEPTH:
                raise OscDecodeError("arrays nested too deep")
            inner: list = []
            stack[-1].append(inner)
            stack.append(inner)
        elif tag == "]":
            if len(stack) < 2:
                raise OscDecodeError("']' without '['")
            stack.pop()
        else:
            raise OscDecodeError(f"unsupported OSC type tag {tag!r}")
    if len(stack) != 1:
        raise OscDecodeError("'[' without ']'")
    if i > len(data):
        raise OscDecodeError("packet ends inside an argument")
    return address, args


def _packet(data: bytes, out: list, depth: int) -> None:
    if data.startswith(b"#bundle\x00"):
        if depth >= MAX_BUNDLE_DEPTH:
            raise OscDecodeError("bundles nested too deep")
        i = 16
        if len(data) < i:
            raise OscDecodeError("bundle without its time tag")
        while i < len(data):
            raw, i = _read(data, i, 4)
            (n,) = struct.unpack(">i", raw)
            if n <= 0 or n % 4:
                raise OscDecodeError("bundle element size must be a positive multiple of 4")
            element, i = _read(data, i, n)
            _packet(element, out, depth + 1)
    elif data.startswith(b"/"):
        out.append(_message(data))
    else:
        raise OscDecodeError("neither an OSC message nor a bundle")


def decode(dgram: bytes) -> list[tuple[str, list]]:
    """(address, args) of every message in a packet (bundles flattened, time tags ignored).
    OscDecodeError if it is not OSC 1.0 with the supported types."""
    if len(dgram) % 4:
        raise OscDecodeError(f"size {len(dgram)} is not a multiple of 4")
    out: list[tuple[str, list]] = []
    _packet(bytes(dgram), out, 0)
    return out


# -- signing (docs/osc.md "Authentication") ------------------------------------------------------
def load_key(path: str | Path) -> bytes:
    """The shared key: the file's content without surrounding whitespace (at least 16 bytes).
    ``python -m pimodule.device.io.osc_tool --make-key PATH`` writes one."""
    key = Path(path).expanduser().read_bytes().strip()
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"{path}: an OSC key has at least {MIN_KEY_BYTES} bytes (got {len(key)})")
    return key


def make_key(path: str | Path) -> Path:
    """Write a new random key (64 hex characters) readable by its owner only."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    os.chmod(path, 0o600)
    return path


def auth_mac(key: bytes, nonce: str, client: str, counter: int, packet: bytes) -> bytes:
    """HMAC-SHA256 over the context, the module's nonce, the client id, the counter and the packet."""
    msg = AUTH_CONTEXT + nonce.encode() + b"\x00" + client.encode() + b"\x00" + struct.pack(">I", counter) + packet
    return hmac.new(key, msg, hashlib.sha256).digest()


class Signer:
    """Wraps packets into signed ``/pimodule/auth`` envelopes: one client id, a counter that only
    goes up (the module refuses a counter it has seen: no replay)."""

    def __init__(self, key: bytes, client: str | None = None):
        self.key = key
        self.client = client or secrets.token_hex(8)
        self.counter = 0
        self.nonce: str | None = None

    def wrap(self, packet: bytes) -> bytes:
        if self.nonce is None:
            raise RuntimeError("no nonce yet: ask the module with /pimodule/auth/nonce")
        self.counter += 1
        if self.counter > INT32[1]:  # ~2e9 messages: start over as a new client
            self.client, self.counter = secrets.token_hex(8), 1
        mac = auth_mac(self.key, self.nonce, self.client, self.counter, packet)
        return encode(AUTH_ADDRESS, self.nonce, self.client, self.counter, packet, mac)


class OscClient:
    """A UDP OSC client with its own socket, so replies come back to it. With ``key`` every
    packet is signed (needed from a host other than the module itself)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 9000, bind_port: int = 0, key: bytes | None = None):
        self.target = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1" if is_loopback(host) else "0.0.0.0", bind_port))
        self.port = self.sock.getsockname()[1]
        self.signer = Signer(key) if key is not None else None
        self._early: list[tuple[str, list]] = []  # replies that arrived while fetching a nonce

    def __enter__(self) -> OscClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def fetch_nonce(self, timeout_s: float = 5.0) -> str:
        """Ask the module for its nonce (unsigned request), resending until it answers."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.sock.sendto(encode(NONCE_ADDRESS), self.target)
            resend_at = min(end, time.monotonic() + 0.25)
            while (left := resend_at - time.monotonic()) > 0:
                msg = self._receive_raw(left)
                if msg is None:
                    continue
                if msg[0] == NONCE_ADDRESS and msg[1] and isinstance(msg[1][0], str):
                    if self.signer is not None:
                        self.signer.nonce = msg[1][0]
                    return msg[1][0]
                self._early.append(msg)
        raise TimeoutError(f"no nonce from {self.target[0]}:{self.target[1]}")

    def send(self, address: str, *args: Any) -> None:
        self.send_raw(encode(address, *args))

    def send_raw(self, data: bytes) -> None:
        if self.signer is not None:
            if self.signer.nonce is None:
                self.fetch_nonce()
            data = self.signer.wrap(data)
        self.sock.sendto(data, self.target)

    def _receive_raw(self, timeout_s: float) -> tuple[str, list] | None:
        self.sock.settimeout(max(timeout_s, 1e-3))
        try:
            data, _ = self.sock.recvfrom(65536)
        except TimeoutError:
            return None
        try:
            return decode(data)[0]
        except (OscDecodeError, IndexError):
            return None

    def receive(self, timeout_s: float = 1.0) -> tuple[str, list] | None:
        """The next message (first of a bundle), or None after the timeout."""
        if self._early:
            return self._early.pop(0)
        return self._receive_raw(timeout_s)

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
