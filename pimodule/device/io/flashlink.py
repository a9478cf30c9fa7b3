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

This module holds the framing, the links (TCP, serial, and :class:`SshLink`: ``ssh HOST pimodule
flash-receive`` as a subprocess whose stdin/stdout carry the lines) and the client
(:func:`flash_file`); the module's side is :mod:`pimodule.device.flash`. No torch, no onnxruntime.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
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


# -- links ---------------------------------------------------------------------------------------
def _encode(text: str) -> bytes:
    """One line on the wire: ASCII (anything else escaped), no inner newlines, bounded."""
    data = text.replace("\n", " ").replace("\r", " ").encode("ascii", "backslashreplace")
    return data[:MAX_LINE_BYTES] + b"\n"


class _Lines:
    """Splits received bytes into lines; an over-long line is cut and reported as damaged."""

    def __init__(self):
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def pop(self) -> str | None:
        i = self._buf.find(b"\n")
        if i < 0:
            if len(self._buf) > MAX_LINE_BYTES:  # no newline in sight: drop it, it is garbage
                self._buf.clear()
                return "\x00overlong"
            return None
        raw = bytes(self._buf[:i])
        del self._buf[: i + 1]
        if len(raw) > MAX_LINE_BYTES:
            return "\x00overlong"
        return raw.decode("ascii", errors="replace").rstrip("\r")


class _LineLink:
    """Line reading over a byte transport: subclasses give ``_recv(timeout_s) -> bytes`` (empty
    when nothing came in time; LinkClosed when the other end is gone)."""

    def __init__(self):
        self._lines = _Lines()

    def read_line(self, timeout_s: float) -> str | None:
        """The next line, or None when none arrived within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            line = self._lines.pop()
            if line is not None:
                return line
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._lines.feed(self._recv(left))

    def _recv(self, timeout_s: float) -> bytes:  # pragma: no cover - subclasses implement it
        raise NotImplementedError


class SocketLink(_LineLink):
    """A connected TCP socket as a line link."""

    def __init__(self, sock: socket.socket):
        super().__init__()
        self.sock = sock

    @classmethod
    def connect(cls, host: str, port: int = DEFAULT_PORT, timeout_s: float = 5.0) -> SocketLink:
        return cls(socket.create_connection((host, port), timeout=timeout_s))

    def send_line(self, text: str) -> None:
        try:
            self.sock.sendall(_encode(text))
        except OSError as err:
            raise LinkClosed(f"connection lost ({err})") from None

    def _recv(self, timeout_s: float) -> bytes:
        self.sock.settimeout(timeout_s)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return b""
        except OSError as err:
            raise LinkClosed(f"connection lost ({err})") from None
        if not data:
            raise LinkClosed("the other end closed the connection")
        return data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class SerialLink(_LineLink):
    """A serial port (pyserial) as a line link: a USB gadget serial (/dev/ttyGS0 on the Pi), a
    UART, or a pty in tests."""

    def __init__(self, port):
        super().__init__()
        self.port = port

    @classmethod
    def open(cls, device: str, baud: int = 115200) -> SerialLink:
        import serial

        try:
            return cls(serial.Serial(device, baudrate=baud, timeout=0.1))
        except serial.SerialException as err:
            raise OSError(f"cannot open serial port {device}: {err}") from None

    def send_line(self, text: str) -> None:
        import serial

        try:
            self.port.write(_encode(text))
            self.port.flush()
        except serial.SerialException as err:
            raise LinkClosed(f"serial port lost ({err})") from None

    def _recv(self, timeout_s: float) -> bytes:
        import serial

        try:
            self.port.timeout = min(timeout_s, 0.1)
            return self.port.read(max(1, self.port.in_waiting))
        except serial.SerialException as err:
            raise LinkClosed(f"serial port lost ({err})") from None

    def close(self) -> None:
        try:
            self.port.close()
        except Exception:  # noqa: BLE001 - closing a dead port may raise anything
            pass


_TARGET_RE = re.compile(r"(?:[A-Za-z0-9._-]{1,64}@)?[A-Za-z0-9._:%\[\]-]{1,253}\Z")


class SshLink(_LineLink):
    """``ssh [user@]HOST <remote command>`` as a line link: the module's ``pimodule flash-receive``
    relays the lines to its daemon's loopback flash port. BatchMode (keys only, never a password
    prompt), the user's own ``~/.ssh`` config and keys unless ``config_file`` is given. When the
    link closes early, :class:`LinkClosed` says what to do (no key, host unreachable, daemon not
    running, ...), read from ssh's exit status and messages."""

    def __init__(self, proc: subprocess.Popen, target: str, remote_command: str, stderr):
        super().__init__()
        self.proc, self.target, self.remote_command, self._stderr = proc, target, remote_command, stderr
        self.host = target.rpartition("@")[2]

    @classmethod
    def open(
        cls,
        target: str,
        remote_command: str = DEFAULT_REMOTE_COMMAND,
        *,
        config_file: str | os.PathLike | None = None,
        options: tuple[str, ...] = (),
        connect_timeout_s: float = 10.0,
        ssh: str = "ssh",
    ) -> SshLink:
        if target.startswith("-") or not _TARGET_RE.match(target):
            raise ValueError(f"not an SSH destination: {target!r} (expected [user@]host)")
        if shutil.which(ssh) is None:
            raise OSError(f"{ssh} not found: install the OpenSSH client (apt install openssh-client)")
        argv = [ssh, "-T", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(connect_timeout_s))}"]
        argv += ["-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3"]
        if config_file is not None:
            argv += ["-F", str(config_file)]
        for option in options:
            argv += ["-o", option]
        argv += [target, remote_command]
        stderr = tempfile.TemporaryFile()
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, bufsize=0)
        return cls(proc, target, remote_command, stderr)

    def send_line(self, text: str) -> None:
        try:
            self.proc.stdin.write(_encode(text))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise LinkClosed(self.diagnosis()) from None

    def _recv(self, timeout_s: float) -> bytes:
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], max(0.0, timeout_s))
        if not ready:
            return b""
        data = os.read(fd, 65536)
        if not data:
            raise LinkClosed(self.diagnosis())
        return data

    def diagnosis(self) -> str:
        """Why the link ended, and what to do about it (waits briefly for ssh to exit)."""
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            return f"the SSH link to {self.host} stopped answering"
        self._stderr.seek(0)
        text = self._stderr.read()[-4000:].decode("utf-8", "replace")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("Warning: Permanently")]
        last = lines[-1] if lines else ""
        host, target = self.host, self.target
        program = self.remote_command.split()[0] if self.remote_command.split() else "pimodule"
        if rc == 255:
            if "Permission denied" in text:
                return (
                    f"{host} refused the SSH login: none of your keys is authorized there. Copy yours once with "
                    f"`ssh-copy-id {target}` (or make one first with `ssh-keygen`)"
                )
            if "Could not resolve hostname" in text or "Name or service not known" in text:
                return f"cannot find {host} on the network (the name does not resolve): check it, or use its IP address"
            if "Host key verification failed" in text or "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
                return (
                    f"{host}'s SSH host key is unknown or has changed: connect once with `ssh {target}` to check "
                    "and accept it"
                )
            if "Connection refused" in text:
                return f"{host} refuses SSH connections: is the module up, with its sshd running (provision.sh enables it)?"
            if any(s in text for s in ("timed out", "No route to host", "Network is unreachable", "Connection closed")):
                return f"cannot reach {host} over SSH ({last}): is the module powered and on this network?"
            return f"ssh to {host} failed: {last or 'exit 255'}"
        if rc == 127:
            return f"{program} not found on {host}: is pimodule installed there? (set the path with --remote-command)"
        if rc == 126:
            return f"permission denied running {program} on {host}"
        if rc == EX_UNAVAILABLE and last:
            return last
        if rc is not None and rc < 0:
            return f"the SSH link to {host} was ended ({signal.Signals(-rc).name})"
        return f"the module's end of the link closed (exit {rc}){': ' + last if last else ''}"

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._stderr.close()


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
