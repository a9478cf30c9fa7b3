"""The module's side of ``pimodule flash``: receive a model file over a line link (loopback
TCP, which ``pimodule flash-receive`` relays SSH sessions to, or a serial line), verify it
(size, SHA-256), validate it in a child process with limits (:mod:`pimodule.device.validate`),
install it atomically in the model store (the replaced file kept as the previous version), and
hot-swap to it.

Nothing is lost on bad input: the file is written to a hidden ``.<name>.onnx.partial`` next to
the models and only renamed over ``<name>.onnx`` once it has passed every check, so an
interrupted, corrupt or unplayable upload leaves the installed models and the one playing
exactly as they were; what was refused is answered on the link (``ERROR <reason>``), logged,
and reported through ``on_event`` (the daemon forwards it over OSC).

Limits: one upload at a time; a session ends when it stops making progress for
``line_timeout_s`` (NAKed or repeated chunks are no progress) or passes its deadline
(``session_timeout_s`` plus one second per ``min_bytes_per_s`` announced bytes); validation has
its own deadline and memory cap; the TCP listener is loopback only and serves at most
``max_connections`` connections (more are told ``ERROR busy`` and closed, no thread started).
A model name keeps its kind (a voice stays a voice) unless the sender asks ``replace_kind``, and
the configured default voice's name only ever holds a voice. Protocol:
:mod:`pimodule.device.io.flashlink`, docs/flash.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pimodule.core.modelfile import ModelFileError
from pimodule.device.io import flashlink
from pimodule.device.io.flashlink import LinkClosed
from pimodule.device.store import NAME_RULE, ModelStore, check_name

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".onnx.partial"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # the runtime refuses larger model files anyway
SESSION_TIMEOUT_S = 120.0  # a session's deadline: this, plus a second per MIN_BYTES_PER_S announced
MIN_BYTES_PER_S = 4096  # below the payload rate of a 115 200 baud serial line (about 8 kB/s)
KIND_LABELS = {"ddsp": "a voice (ddsp)", "fx": "an effect estimator (fx)"}


def partial_path(directory: Path, name: str) -> Path:
    return Path(directory) / f".{name}{PARTIAL_SUFFIX}"


def clean_partials(directory: str | Path) -> list[Path]:
    """Remove the partial uploads an interrupted flash (or a power cut) left behind."""
    return ModelStore(directory).clean_partials()


class _Refused(Exception):
    """One session ends with ``ERROR <message>``."""


class FlashReceiver:
    """Serves flash sessions on line links; one upload at a time (a second one is told ``busy``).

    ``validate(path) -> kind`` raises ModelFileError for a file this module must not install
    (:func:`daemon_validator`); ``activate(name, kind) -> bool`` starts the hot swap;
    ``on_event(kind, message)`` hears ``installed`` and ``error`` (both optional).
    ``default_voice``: the name the daemon plays at start; only a voice is installed under it.
    """

    def __init__(
        self,
        store: ModelStore | str | Path,
        validate: Callable[[Path], str],
        *,
        activate: Callable[[str, str], bool] | None = None,
        on_event: Callable[[str, str], None] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        line_timeout_s: float = flashlink.LINE_TIMEOUT_S,
        session_timeout_s: float = SESSION_TIMEOUT_S,
        min_bytes_per_s: float = MIN_BYTES_PER_S,
        allow_activate: bool = True,
        default_voice: str = "",
    ):
        self.store = store if isinstance(store, ModelStore) else ModelStore(store)
        self.directory = self.store.directory
        self.validate = validate
        self.activate = activate
        self.on_event = on_event
        self.max_bytes = int(max_bytes)
        self.line_timeout_s = float(line_timeout_s)
        self.session_timeout_s = float(session_timeout_s)
        self.min_bytes_per_s = float(min_bytes_per_s)
        self.allow_activate = allow_activate  # False: install only, whatever the sender asks
        self.default_voice = default_voice
        self._busy = threading.Lock()
        self.n_installed = 0
        self.n_refused = 0
        self.last_error = ""

    # -- a link's lines ------------------------------------------------------------------------
    def serve(
        self,
        link,
        should_stop: Callable[[], bool] = lambda: False,
        idle_timeout_s: float | None = None,
        max_s: float | None = None,
    ) -> None:
        """Answer PINGs and run flash sessions until the link closes, ``should_stop()``, nothing
        but noise arrives for ``idle_timeout_s`` (other lines do not count), or ``max_s`` passes."""
        start = last = time.monotonic()
        try:
            while not should_stop():
                now = time.monotonic()
                if idle_timeout_s is not None and now - last >= idle_timeout_s:
                    return
                if max_s is not None and now - start >= max_s:
                    return
                line = link.read_line(0.2)
                if line is None:
                    continue
                if line == "PING":
                    link.send_line(f"PONG {flashlink.PROTOCOL.lower()} {flashlink.VERSION}")
                    last = time.monotonic()
                elif line.startswith(flashlink.PROTOCOL):
                    self.session(link, line)
                    last = time.monotonic()
        except LinkClosed:
            return

    def session(self, link, header: str) -> dict | None:
        """One upload, from its header line on; returns the DONE record or None if refused.
        The last word (DONE or ERROR) is sent once the upload lock is free again: a sender that
        hears it may start its next upload at once."""
        if not self._busy.acquire(blocking=False):
            _send_quietly(link, "ERROR busy: another flash is in progress; try again when it is done")
            return None
        try:
            record, reply = self._session(link, header)
        finally:
            self._busy.release()
        if reply is not None:
            try:
                link.send_line(reply)
            except LinkClosed:  # installed all the same: the sender left before hearing it
                if record is not None:
                    log.warning("flash: %s installed, but the sender left before the reply", record["name"])
        return record

    def _session(self, link, header: str) -> tuple[dict | None, str | None]:
        """The upload (the lock held): its record (None if refused) and the last line to send."""
        partial = None
        try:
            meta = self._check_header(header)
            name = meta["name"]
            self.directory.mkdir(parents=True, exist_ok=True)
            partial = self.store.partial_path(name)
            deadline = time.monotonic() + self.session_timeout_s + meta["size"] / self.min_bytes_per_s
            link.send_line("READY " + json.dumps({"chunk_bytes": flashlink.CHUNK_BYTES}))
            self._receive(link, meta, partial, deadline)
            kind = self._validate(partial, name)
            self._check_kind(name, kind, meta["replace_kind"])
            final = self.store.install(name, partial)  # the one step that changes what is installed
            partial = None
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
                "previous": self.store.previous_path(name).is_file(),
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
            return record, "DONE " + json.dumps(record)
        except (_Refused, LinkClosed) as err:
            if partial is not None:  # gone before anyone hears of the refusal
                partial.unlink(missing_ok=True)
                partial = None
            if isinstance(err, LinkClosed):
                self._refuse(f"flash interrupted ({err}); nothing installed")
                return None, None
            return None, self._refuse(str(err))
        except Exception as err:  # noqa: BLE001 - a bug must not cost the connection its answer
            log.exception("flash: session failed")
            return None, self._refuse(f"internal error ({type(err).__name__}); nothing installed")
        finally:
            if partial is not None:
                partial.unlink(missing_ok=True)

    # -- steps ---------------------------------------------------------------------------------
    def _check_header(self, header: str) -> dict:
        try:
            meta = flashlink.parse_header(header)
        except ValueError as err:
            raise _Refused(str(err)) from None
        name, size, digest = meta.get("name"), meta.get("size"), meta.get("sha256")
        try:
            check_name(name)
        except ModelFileError:
            raise _Refused(f"bad model name {ascii(name)[:80]}: a name is {NAME_RULE}") from None
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= self.max_bytes:
            raise _Refused(f"size {ascii(size)[:40]} outside 1..{self.max_bytes} bytes")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise _Refused("sha256 must be 64 lowercase hex digits")
        for flag in ("activate", "replace_kind"):
            if not isinstance(meta.get(flag, False), bool):
                raise _Refused(f"{flag} must be true or false")
        activate = bool(meta.get("activate", True)) and self.allow_activate
        return {
            "name": name,
            "size": size,
            "sha256": digest,
            "activate": activate,
            "replace_kind": bool(meta.get("replace_kind", False)),
        }

    def _receive(self, link, meta: dict, partial: Path, deadline: float) -> None:
        digest = hashlib.sha256()
        received, expected = 0, 0
        progress_by = time.monotonic() + self.line_timeout_s  # NAKs and repeats do not move it
        with open(partial, "wb") as f:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    raise _Refused(
                        f"flash took too long: {received} of {meta['size']} bytes by the session's deadline; "
                        "nothing installed"
                    )
                if now >= progress_by:
                    raise _Refused(
                        f"flash interrupted: nothing for {self.line_timeout_s:.0f} s "
                        f"after {received} of {meta['size']} bytes; nothing installed"
                    )
                line = link.read_line(min(progress_by, deadline) - now)
                if line is None:
                    continue
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
                    raise _Refused(f"more data than the announced {meta['size']} bytes; nothing installed")
                f.write(payload)
                digest.update(payload)
                received += len(payload)
                expected += 1
                progress_by = time.monotonic() + self.line_timeout_s
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
            text = str(err).replace(str(partial), f"{name}.onnx").replace(partial.name, f"{name}.onnx")
            raise _Refused(f"{text}; nothing installed") from None

    def _check_kind(self, name: str, kind: str, replace_kind: bool) -> None:
        if name == self.default_voice and kind != "ddsp":
            raise _Refused(
                f"{name} is the module's default voice (models.default): only a voice (ddsp) is installed "
                f"under that name, this file is {KIND_LABELS.get(kind, kind)}; flash it under another name; "
                "nothing installed"
            )
        current = self.store.path_for(name)
        if not current.is_file():
            return
        installed = self.store.kind_of(current)
        if installed is not None and installed != kind and not replace_kind:
            raise _Refused(
                f"{name} is installed as {KIND_LABELS.get(installed, installed)} and this file is "
                f"{KIND_LABELS.get(kind, kind)}: flash it under another name, or replace it on purpose with "
                "--replace-kind; nothing installed"
            )

    def _refuse(self, message: str) -> str:
        """Count, log and report a refusal; returns the line that tells the sender."""
        self.n_refused += 1
        self.last_error = message
        log.error("flash refused: %s", message)
        self._event("error", message)  # before the sender hears it: it may look right away
        return ("ERROR " + message).replace("\n", " ").replace("\r", " ")

    def _event(self, kind: str, message: str) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, message)
            except Exception:  # noqa: BLE001 - a reporting failure must not undo an install
                log.exception("flash event handler failed")


def _send_quietly(link, text: str) -> None:
    try:
        link.send_line(text.replace("\n", " ").replace("\r", " "))
    except LinkClosed:
        pass
