"""The module's side of ``pimodule flash``: receive a model file over TCP or a serial line,
verify it (size, SHA-256), validate it (onnxruntime loads it, it is a model this module can
play, its output is finite), install it atomically in the models directory, and hot-swap to it.

Nothing is lost on bad input: the file is written to a hidden ``.<name>.onnx.partial`` next to
the models and only renamed over ``<name>.onnx`` (one ``os.replace``) once it has passed every
check, so an interrupted, corrupt or unplayable upload leaves the installed models and the one
playing exactly as they were; what was refused is answered on the link, logged, and reported
through ``on_event`` (the daemon forwards it over OSC). Partial files left by a power cut are
removed at start (:func:`clean_partials`). Protocol: :mod:`pimodule.device.io.flashlink`, docs/flash.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from pimodule.core.modelfile import ModelFileError
from pimodule.device.fx.mode import checked_estimator
from pimodule.device.io import flashlink
from pimodule.device.io.flashlink import LinkClosed
from pimodule.device.io.osc_client import is_loopback
from pimodule.device.io.worker import BackgroundThread
from pimodule.device.models import load_session
from pimodule.device.session import open_model

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PARTIAL_SUFFIX = ".onnx.partial"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # the runtime refuses larger model files anyway
TCP_IDLE_TIMEOUT_S = 30.0


def partial_path(directory: Path, name: str) -> Path:
    return directory / f".{name}{PARTIAL_SUFFIX}"


def clean_partials(directory: str | Path) -> list[Path]:
    """Remove the partial uploads an interrupted flash (or a power cut) left behind."""
    directory = Path(directory)
    removed = sorted(directory.glob(f".*{PARTIAL_SUFFIX}")) if directory.is_dir() else []
    for path in removed:
        path.unlink(missing_ok=True)
        log.warning("removed %s: an interrupted flash", path.name)
    return removed


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _Refused(Exception):
    """One session ends with ``ERROR <message>``."""


class FlashReceiver:
    """Serves flash sessions on line links; one upload at a time (a second one is told ``busy``).

    ``validate(path) -> kind`` raises ModelFileError for a file this module must not install;
    ``activate(name, kind) -> bool`` starts the hot swap; ``on_event(kind, message)`` hears
    ``installed`` and ``error`` (both optional).
    """

    def __init__(
        self,
        directory: str | Path,
        validate: Callable[[Path], str],
        *,
        activate: Callable[[str, str], bool] | None = None,
        on_event: Callable[[str, str], None] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        line_timeout_s: float = flashlink.LINE_TIMEOUT_S,
        allow_activate: bool = True,
    ):
        self.directory = Path(directory)
        self.validate = validate
        self.activate = activate
        self.on_event = on_event
        self.max_bytes = int(max_bytes)
        self.line_timeout_s = float(line_timeout_s)
        self.allow_activate = allow_activate  # False: install only, whatever the sender asks
        self._busy = threading.Lock()
        self.n_installed = 0
        self.n_refused = 0
        self.last_error = ""

    # -- a link's lines ------------------------------------------------------------------------
    def serve(self, link, should_stop: Callable[[], bool] = lambda: False, idle_timeout_s: float | None = None) -> None:
        """Answer PINGs and run flash sessions until the link closes, ``should_stop()``, or
        (with ``idle_timeout_s``) nothing arrives for that long. Other lines are ignored."""
        idle = 0.0
        try:
            while not should_stop():
                line = link.read_line(0.2)
                if line is None:
                    idle += 0.2
                    if idle_timeout_s is not None and idle >= idle_timeout_s:
                        return
                    continue
                idle = 0.0
                if line == "PING":
                    link.send_line(f"PONG {flashlink.PROTOCOL.lower()} {flashlink.VERSION}")
                elif line.startswith(flashlink.PROTOCOL):
                    self.session(link, line)
        except LinkClosed:
            return

    def session(self, link, header: str) -> dict | None:
        """One upload, from its header line on; returns the DONE record or None if refused."""
        if not self._busy.acquire(blocking=False):
            link.send_line("ERROR busy: another flash is in progress")
            return None
        partial = None
        try:
            meta = self._check_header(header)
            name = meta["name"]
            self.directory.mkdir(parents=True, exist_ok=True)
            partial = partial_path(self.directory, name)
            link.send_line("READY " + json.dumps({"chunk_bytes": flashlink.CHUNK_BYTES}))
            self._receive(link, meta, partial)
            kind = self._validate(partial, name)
            final = self.directory / f"{name}.onnx"
            os.replace(partial, final)  # the one step that changes what is installed
            partial = None
            _fsync_dir(self.directory)
            activated = False
            if meta["activate"] and self.activate is not None:
                activated = bool(self.activate(name, kind))
            record = {
                "name": name,
                "kind": kind,
                "path": str(final),
                "bytes": meta["size"],
                "sha256": meta["sha256"],
                "activated": activated,
            }
            self.n_installed += 1
            log.info(
                "flash: installed %s (%s, %d bytes)%s",
                final,
                kind,
                meta["size"],
                ", swapping to it" if activated else "",
            )
            self._event("installed", f"{name} {kind}")
            try:
                link.send_line("DONE " + json.dumps(record))
            except LinkClosed:  # installed all the same: the sender left before hearing it
                log.warning("flash: %s installed, but the sender left before the reply", name)
            return record
        except (_Refused, LinkClosed) as err:
            if partial is not None:  # gone before anyone hears of the refusal
                partial.unlink(missing_ok=True)
                partial = None
            if isinstance(err, LinkClosed):
                self._refuse(None, f"flash interrupted ({err}); nothing installed")
            else:
                self._refuse(link, str(err))
            return None
        finally:
            if partial is not None:
                partial.unlink(missing_ok=True)
            self._busy.release()

    # -- steps ---------------------------------------------------------------------------------
    def _check_header(self, header: str) -> dict:
        try:
            meta = flashlink.parse_header(header)
        except ValueError as err:
            raise _Refused(str(err)) from None
        name, size, digest = meta.get("name"), meta.get("size"), meta.get("sha256")
        if not isinstance(name, str) or not NAME_RE.match(name) or name.endswith(".onnx"):
            raise _Refused(f"bad model name {name!r} (letters, digits, _ . -; at most 64; no path)")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= self.max_bytes:
            raise _Refused(f"size {size!r} outside 1..{self.max_bytes} bytes")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise _Refused("sha256 must be 64 lowercase hex digits")
        activate = bool(meta.get("activate", True)) and self.allow_activate
        return {"name": name, "size": size, "sha256": digest, "activate": activate}

    def _receive(self, link, meta: dict, partial: Path) -> None:
        digest = hashlib.sha256()
        received, expected = 0, 0
        with open(partial, "wb") as f:
            while True:
                line = link.read_line(self.line_timeout_s)
                if line is None:
                    raise _Refused(
                        f"flash interrupted: nothing for {self.line_timeout_s:.0f} s "
                        f"after {received} of {meta['size']} bytes; nothing installed"
                    )
                if line == "ABORT":
                    raise _Refused("aborted by the sender; nothing installed")
                if line == "END":
                    break
                try:
                    seq, payload = flashlink.parse_data(line)
                except ValueError as err:
                    link.send_line(f"NAK {expected} {err}")
                    continue
                if seq == expected - 1:  # our ACK was lost: the sender repeats the last chunk
                    link.send_line(f"ACK {seq}")
                    continue
                if seq != expected:
                    link.send_line(f"NAK {expected} expected chunk {expected}, got {seq}")
                    continue
                if received + len(payload) > meta["size"]:
                    raise _Refused(f"more data than the announced {meta['size']} bytes")
                f.write(payload)
                digest.update(payload)
                received += len(payload)
                expected += 1
                link.send_line(f"ACK {seq}")
            f.flush()
            os.fsync(f.fileno())
        if received != meta["size"]:
            raise _Refused(f"got {received} of {meta['size']} bytes; nothing installed")
        if digest.hexdigest() != meta["sha256"]:
            raise _Refused("sha256 mismatch: the file was damaged on the way; nothing installed")

    def _validate(self, partial: Path, name: str) -> str:
        try:
            return self.validate(partial)
        except (ModelFileError, ValueError, OSError) as err:
            text = str(err).replace(str(partial), f"{name}.onnx")
            raise _Refused(f"{text}; nothing installed") from None

    def _refuse(self, link, message: str) -> None:
        self.n_refused += 1
        self.last_error = message
        log.error("flash refused: %s", message)
        self._event("error", message)  # before the sender hears it: it may look right away
        if link is not None:
            try:
                link.send_line("ERROR " + message.replace("\n", " "))
            except LinkClosed:
                pass

    def _event(self, kind: str, message: str) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, message)
            except Exception:  # noqa: BLE001 - a reporting failure must not undo an install
                log.exception("flash event handler failed")


class FlashServer(BackgroundThread):
    """TCP listener (loopback by default; remote senders only from ``allow_hosts``), a thread
    per connection, the receiver's lock keeping uploads one at a time."""

    def __init__(
        self,
        receiver: FlashReceiver,
        host: str = "127.0.0.1",
        port: int = flashlink.DEFAULT_PORT,
        allow_hosts: tuple[str, ...] = (),
    ):
        if not is_loopback(host) and not allow_hosts:
            raise ValueError(f"flash server bound to {host!r} needs allow_hosts (remote flashing)")
        super().__init__("pimodule-flash")
        self.receiver = receiver
        self._allowed = {socket.gethostbyname(h) for h in allow_hosts}
        self._sock = socket.create_server((host, port), reuse_port=False)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.n_refused_hosts = 0

    def stop(self, timeout_s: float = 2.0) -> None:
        super().stop(timeout_s)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, (addr, *_) = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            if not is_loopback(addr) and addr not in self._allowed:
                self.n_refused_hosts += 1
                log.warning("flash: connection from %s refused (not in flash.allow_hosts)", addr)
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), name="pimodule-flash-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        link = flashlink.SocketLink(conn)
        try:
            self.receiver.serve(link, self._stop.is_set, idle_timeout_s=TCP_IDLE_TIMEOUT_S)
        finally:
            link.close()


class SerialFlashListener(BackgroundThread):
    """Listens for flash sessions on a serial port (e.g. the Pi's USB gadget ``/dev/ttyGS0``)."""

    def __init__(self, receiver: FlashReceiver, device: str, baud: int = 115200):
        super().__init__("pimodule-flash-serial")
        self.receiver = receiver
        self.link = flashlink.SerialLink.open(device, baud)  # OSError if it cannot be opened
        self.device = device

    def stop(self, timeout_s: float = 2.0) -> None:
        super().stop(timeout_s)
        self.link.close()

    def _run(self) -> None:
        self.receiver.serve(self.link, self._stop.is_set)
        if not self._stop.is_set():
            log.error("flash: serial port %s went away", self.device)


def daemon_validator(engine) -> Callable[[Path], str]:
    """What the daemon accepts: a voice the engine can play (loaded, checked, warmed: finite
    output) or an effect estimator whose outputs check out on a test window."""

    def validate(path: Path) -> str:

        kind = open_model(path)[1].kind  # ModelFileError: not loadable / no pimodule metadata
        if kind == "ddsp":
            load_session(path, engine)
        elif kind == "fx":
            checked_estimator(path)
        else:
            raise ModelFileError(f"a {kind!r} model: this module plays 'ddsp' and 'fx' models")
        return kind

    return validate


def daemon_receivers(cfg, d, broadcast: Callable[[list], None]) -> list:
    """The daemon's receivers for ``pimodule flash`` (``cfg``: its ``[flash]`` section, ``d``: the
    :class:`pimodule.device.daemon.Daemon`): TCP, and a serial port when configured. Flashed
    files land in the models dir and are swapped in; events go to OSC through ``broadcast``."""
    store_dir = d.loader.store.directory
    clean_partials(store_dir)

    def activate(name: str, kind: str) -> bool:
        if kind == "ddsp":
            d.loader.request(name)
            return True
        if kind == "fx" and d.fx is not None:
            d.controller.set_fx_model(name)
            return True
        return False

    def on_event(kind: str, message: str) -> None:
        if kind == "installed":
            broadcast([("/pimodule/model/installed", tuple(message.split(" ", 1)))])
        else:
            d.report_error(message, "/pimodule/flash")

    receiver = FlashReceiver(
        store_dir,
        daemon_validator(d.engine),
        activate=activate,
        on_event=on_event,
        max_bytes=cfg.max_bytes,
        allow_activate=cfg.activate,
    )
    parts: list = []
    try:
        server = FlashServer(receiver, cfg.host, cfg.port, cfg.allow_hosts)
        parts.append(server)
        log.info("flash: receiving model files on %s:%d (into %s)", cfg.host, server.port, store_dir)
    except OSError as err:
        log.error("flash: cannot listen on %s:%d (%s): no network flashing", cfg.host, cfg.port, err)
    if cfg.serial_port:
        try:
            parts.append(SerialFlashListener(receiver, cfg.serial_port, cfg.baud))
            log.info("flash: receiving model files on serial %s at %d baud", cfg.serial_port, cfg.baud)
        except OSError as err:
            log.error("flash: %s: no serial flashing", err)
    return parts
