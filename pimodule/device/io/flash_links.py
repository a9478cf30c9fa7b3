"""The flash link's transports: a TCP socket, a serial line (pyserial) and ``ssh HOST pimodule
flash-receive`` as a subprocess whose stdin/stdout carry the lines (:class:`SshLink`). Each reads
and writes the lines of :mod:`pimodule.device.io.flashlink`'s protocol; an over-long or damaged
line is cut and reported, never buffered without bound."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from pimodule.device.io.flashlink import (
    DEFAULT_PORT,
    DEFAULT_REMOTE_COMMAND,
    EX_UNAVAILABLE,
    MAX_LINE_BYTES,
    LinkClosed,
)


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
