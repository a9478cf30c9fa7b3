"""The flash link: how a model file travels from a laptop to the module, over TCP or a serial
line (pyserial), with the same line protocol on both (docs/flash.md).

Lines are ASCII, ``\\n``-terminated, at most :data:`MAX_LINE_BYTES`. The client sends::

    PIMODULE-FLASH 1 {"name": ..., "size": ..., "sha256": ..., "activate": true}
    DATA <seq> <crc32, 8 hex digits> <base64 of at most chunk_bytes bytes>     (seq = 0, 1, ...)
    END                   (or ABORT)

and the module answers ``READY {"chunk_bytes": ...}``, ``ACK <seq>`` / ``NAK <seq> <reason>`` per
chunk (the client sends a NAKed chunk again), then ``DONE {...}`` once the file is verified,
validated and installed, or ``ERROR <message>`` at any point (the session is over). ``PING``
gets ``PONG pimodule-flash 1``. A corrupted or lost byte spoils one line only: the newline
resynchronises the stream, the CRC catches the damage, the chunk is sent again.

This module holds the framing and the client (:func:`flash_file`); the links (TCP, serial, ssh)
are in :mod:`pimodule.device.io.flash_links`, the module's side is :mod:`pimodule.device.flash`.
No torch, no onnxruntime.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

PROTOCOL = "PIMODULE-FLASH"
VERSION = 1
MAX_LINE_BYTES = 16384
CHUNK_BYTES = 3072  # decoded payload per DATA line (4 kB of base64)
DEFAULT_PORT = 9100
LINE_TIMEOUT_S = 10.0  # either side gives up when a line is this late
DONE_TIMEOUT_S = 120.0  # validation (load + warm) may take a while on a Pi
MAX_TRIES = 5  # sends of one chunk before the client gives up
MAX_HEADER_BYTES = 2048  # the header's JSON
MAX_HEADER_DEPTH = 2  # a flat object (nesting beyond this is refused before parsing)
DEFAULT_REMOTE_COMMAND = "/opt/pimodule/venv/bin/pimodule flash-receive"  # where provision.sh installs it
EX_UNAVAILABLE = 69  # flash-receive: no daemon to relay to


class FlashError(RuntimeError):
    """A flash that did not happen (the message says why; the module's model is unchanged)."""


class LinkClosed(ConnectionError):
    """The other end went away."""


class Link(Protocol):
    def send_line(self, text: str) -> None: ...
    def read_line(self, timeout_s: float) -> str | None: ...
    def close(self) -> None: ...


# -- framing -----------------------------------------------------------------------------------
def crc32_hex(payload: bytes) -> str:
    return f"{zlib.crc32(payload) & 0xFFFFFFFF:08x}"


def data_line(seq: int, payload: bytes) -> str:
    return f"DATA {seq} {crc32_hex(payload)} {base64.b64encode(payload).decode('ascii')}"


def parse_data(line: str) -> tuple[int, bytes]:
    """``DATA`` line → (seq, payload); ValueError with the reason if it is damaged."""
    parts = line.split(" ")
    if len(parts) != 4 or parts[0] != "DATA":
        raise ValueError("malformed DATA line")
    try:
        seq = int(parts[1])
        payload = base64.b64decode(parts[3], validate=True)
    except (ValueError, binascii.Error) as err:
        raise ValueError(f"undecodable chunk ({err})") from None
    if seq < 0:
        raise ValueError("negative sequence number")
    if crc32_hex(payload) != parts[2].lower():
        raise ValueError("crc mismatch")
    return seq, payload


def header_line(meta: dict) -> str:
    return f"{PROTOCOL} {VERSION} {json.dumps(meta, separators=(',', ':'))}"


def _depth(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_header(line: str) -> dict:
    """``PIMODULE-FLASH 1 {...}`` → the dict; ValueError if it is not one we speak. Bounded: at
    most :data:`MAX_HEADER_BYTES` of JSON, one flat object, ASCII only."""
    parts = line.split(" ", 2)
    if len(parts) != 3 or parts[0] != PROTOCOL:
        raise ValueError("not a flash header")
    if parts[1] != str(VERSION):
        raise ValueError(f"protocol version {ascii(parts[1])[:20]}, this module speaks {VERSION}")
    body = parts[2]
    if len(body) > MAX_HEADER_BYTES:
        raise ValueError(f"header longer than {MAX_HEADER_BYTES} bytes")
    if not body.isascii() or "\ufffd" in body:
        raise ValueError("header is not ASCII (names are a-z 0-9 _ -)")
    if _depth(body) > MAX_HEADER_DEPTH:
        raise ValueError("header nests too deep (a flat JSON object is expected)")
    try:
        meta = json.loads(body)
    except (json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"header is not JSON ({getattr(err, 'msg', type(err).__name__)})") from None
    if not isinstance(meta, dict):
        raise ValueError("header is not a JSON object")
    return meta


# -- the client (laptop) ---------------------------------------------------------------------------
def _expect(link: Link, timeout_s: float, *prefixes: str) -> str:
    while True:
        line = link.read_line(timeout_s)
        if line is None:
            raise FlashError(f"the module did not answer within {timeout_s:.0f} s")
        if line.startswith("ERROR"):
            raise FlashError(f"the module refused: {line[6:]}")
        if line.startswith(prefixes):
            return line


def flash_file(
    path: str | Path,
    link: Link,
    *,
    name: str | None = None,
    activate: bool = True,
    replace_kind: bool = False,
    progress: Callable[[int, int], None] | None = None,
    line_timeout_s: float = LINE_TIMEOUT_S,
    done_timeout_s: float = DONE_TIMEOUT_S,
) -> dict:
    """Send a model file over ``link``; returns the module's ``DONE`` record. Raises FlashError
    (the module refused, or the link failed: then the module discards what it got).
    ``replace_kind``: install even where the name holds a model of another kind."""
    path = Path(path)
    data = path.read_bytes()
    meta = {
        "name": name or path.stem,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "activate": bool(activate),
    }
    if replace_kind:
        meta["replace_kind"] = True
    try:
        link.send_line(header_line(meta))
        ready = _expect(link, line_timeout_s, "READY")
        try:
            chunk = int(json.loads(ready[6:] or "{}").get("chunk_bytes", CHUNK_BYTES))
        except (ValueError, AttributeError):
            raise FlashError(f"unreadable READY line {ready!r}") from None
        chunk = max(1, min(chunk, CHUNK_BYTES))
        n_chunks = -(-len(data) // chunk)
        for seq in range(n_chunks):
            payload = data[seq * chunk : (seq + 1) * chunk]
            for attempt in range(MAX_TRIES):
                link.send_line(data_line(seq, payload))
                reply = _expect(link, line_timeout_s, "ACK", "NAK")
                if reply == f"ACK {seq}":
                    break
                if attempt == MAX_TRIES - 1:
                    raise FlashError(f"chunk {seq} refused {MAX_TRIES} times (last: {reply})")
            if progress is not None:
                progress(min((seq + 1) * chunk, len(data)), len(data))
        link.send_line("END")
        done = _expect(link, done_timeout_s, "DONE")
    except LinkClosed as err:
        raise FlashError(str(err)) from None
    try:
        return json.loads(done[5:])
    except json.JSONDecodeError:
        raise FlashError(f"unreadable DONE line {done!r}") from None


def ping(link: Link, timeout_s: float = 2.0) -> str:
    """``PONG ...`` from the module, or FlashError."""
    link.send_line("PING")
    try:
        return _expect(link, timeout_s, "PONG")
    except LinkClosed as err:
        raise FlashError(str(err)) from None
