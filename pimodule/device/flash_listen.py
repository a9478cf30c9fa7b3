"""Where flashed model files arrive and what the daemon does with them: the loopback TCP listener
(``pimodule flash-receive`` relays SSH sessions to it), the serial listener, the daemon's
validator and its receivers. The receiving itself (verify, validate, install, swap) is
:class:`pimodule.device.flash.FlashReceiver`."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from pimodule.device import validate as validation
from pimodule.device.flash import FlashReceiver
from pimodule.device.io import flash_links, flashlink
from pimodule.device.io.osc_client import is_loopback
from pimodule.device.io.worker import BackgroundThread

log = logging.getLogger(__name__)

TCP_IDLE_TIMEOUT_S = 30.0  # a connection with neither a PING nor a session for this long is closed
TCP_MAX_CONNECTION_S = 900.0  # and none lives longer than this
MAX_CONNECTIONS = 4


class FlashServer(BackgroundThread):
    """The loopback TCP listener (local tools, and ``pimodule flash-receive`` relaying an SSH
    session): a thread per connection, at most ``max_connections`` at once (more are answered
    ``ERROR busy`` and closed without a thread), the receiver's lock keeping uploads one at a
    time. From another host, flashing goes over SSH: the listener refuses any other address."""

    def __init__(
        self,
        receiver: FlashReceiver,
        host: str = "127.0.0.1",
        port: int = flashlink.DEFAULT_PORT,
        *,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout_s: float = TCP_IDLE_TIMEOUT_S,
        max_connection_s: float = TCP_MAX_CONNECTION_S,
    ):
        if not is_loopback(host):
            raise ValueError(
                f"flash server bound to {host!r}: the TCP listener is loopback only; from another host "
                "flash over SSH (pimodule flash MODEL --to [user@]HOST)"
            )
        super().__init__("pimodule-flash")
        self.receiver = receiver
        self.max_connections = int(max_connections)
        self.idle_timeout_s = float(idle_timeout_s)
        self.max_connection_s = float(max_connection_s)
        self._sock = socket.create_server((host, port), reuse_port=False)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self.n_open = 0
        self.n_refused_hosts = 0
        self.n_refused_busy = 0

    def stop(self, timeout_s: float = 2.0) -> None:
        super().stop(timeout_s)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, (addr, *_) = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            if not is_loopback(addr):  # cannot happen on a loopback socket; kept as a second lock
                self.n_refused_hosts += 1
                conn.close()
                continue
            with self._lock:
                full = self.n_open >= self.max_connections
                if not full:
                    self.n_open += 1
            if full:
                self.n_refused_busy += 1
                if self.n_refused_busy in (1, 10, 100) or self.n_refused_busy % 1000 == 0:
                    log.warning("flash: %d connections refused (%d open)", self.n_refused_busy, self.max_connections)
                try:
                    conn.setblocking(False)
                    conn.send(
                        f"ERROR busy: {self.max_connections} flash connections are open; try again later\n".encode()
                    )
                except OSError:
                    pass
                conn.close()
                continue
            try:
                threading.Thread(target=self._serve, args=(conn,), name="pimodule-flash-conn", daemon=True).start()
            except RuntimeError:  # no thread to be had: refuse this one
                with self._lock:
                    self.n_open -= 1
                conn.close()

    def _serve(self, conn: socket.socket) -> None:
        link = flash_links.SocketLink(conn)
        try:
            self.receiver.serve(
                link, self._stop.is_set, idle_timeout_s=self.idle_timeout_s, max_s=self.max_connection_s
            )
        finally:
            link.close()
            with self._lock:
                self.n_open -= 1


class SerialFlashListener(BackgroundThread):
    """Listens for flash sessions on a serial port (e.g. the Pi's USB gadget ``/dev/ttyGS0``)."""

    def __init__(self, receiver: FlashReceiver, device: str, baud: int = 115200):
        super().__init__("pimodule-flash-serial")
        self.receiver = receiver
        self.link = flash_links.SerialLink.open(device, baud)  # OSError if it cannot be opened
        self.device = device

    def stop(self, timeout_s: float = 2.0) -> None:
        super().stop(timeout_s)
        self.link.close()

    def _run(self) -> None:
        self.receiver.serve(self.link, self._stop.is_set)
        if not self._stop.is_set():
            log.error("flash: serial port %s went away", self.device)


def daemon_validator(
    engine,
    budget: validation.ValidationBudget | None = None,
    engine_cost: Callable[[Path], dict] | None = None,
    kind: str | None = None,
) -> Callable[[Path], str]:
    """What the daemon accepts, decided in a child process with limits
    (:func:`pimodule.device.validate.validate`): a voice at the engine's rate and block, finite
    and bounded over 2000 frames and within the board's real-time budget, or an effect estimator
    whose outputs check out on test windows (``kind``: only that kind). Returns
    ``validate(path) -> kind``, raising ModelFileError with the reason; at start the daemon
    passes ``daemon_validator(engine, kind="ddsp")`` to :func:`pimodule.device.store.load_with_fallback`."""
    budget = budget or validation.ValidationBudget()
    rate = getattr(engine, "model_rate_hz", None)
    block = getattr(engine, "model_block", None)

    def validate(path: Path) -> str:
        report = validation.validate(path, kind, budget, expect_rate=rate, expect_block=block, engine_cost=engine_cost)
        report.raise_if_refused()
        log.info(
            "flash: %s validated in %.1f s (%s, cpu p99 %.0f us of %.0f us)",
            Path(path).name,
            report.elapsed_s,
            report.kind,
            report.timing.get("cpu_p99_us", 0.0),
            report.timing.get("budget_us", 0.0),
        )
        return str(report.kind)

    return validate


def daemon_receivers(cfg, d, broadcast: Callable[[list], None]) -> list:
    """The daemon's receivers for ``pimodule flash`` (``cfg``: its ``[flash]`` section, ``d``: the
    :class:`pimodule.device.daemon.Daemon`): loopback TCP (where ``pimodule flash-receive``
    relays SSH sessions), and a serial port when configured. Flashed files land in the models
    dir and are swapped in; events go to OSC through ``broadcast``."""
    store = d.loader.store
    store.clean_partials()

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
        store,
        daemon_validator(d.engine),
        activate=activate,
        on_event=on_event,
        max_bytes=cfg.max_bytes,
        allow_activate=cfg.activate,
        default_voice=d.cfg.models.default,
    )
    host = cfg.host
    if not is_loopback(host):
        log.error(
            "flash: flash.host = %r ignored: the TCP listener is loopback only; from another host, flash over "
            "SSH (pimodule flash MODEL --to [user@]HOST)",
            host,
        )
        host = "127.0.0.1"
    if getattr(cfg, "allow_hosts", ()):
        log.warning("flash: flash.allow_hosts is ignored: remote hosts flash over SSH")
    parts: list = []
    try:
        server = FlashServer(receiver, host, cfg.port)
        parts.append(server)
        log.info("flash: receiving model files on %s:%d (into %s)", host, server.port, store.directory)
    except OSError as err:
        log.error("flash: cannot listen on %s:%d (%s): no flashing over TCP or SSH", host, cfg.port, err)
    if cfg.serial_port:
        try:
            parts.append(SerialFlashListener(receiver, cfg.serial_port, cfg.baud))
            log.info("flash: receiving model files on serial %s at %d baud", cfg.serial_port, cfg.baud)
        except OSError as err:
            log.error("flash: %s: no serial flashing", err)
    return parts
