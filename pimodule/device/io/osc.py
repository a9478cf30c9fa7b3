"""OSC under ``/pimodule/``: a UDP server in front of a :class:`~pimodule.device.io.controller.Controller`.

Usage (daemon)::

    from pimodule.device.io.osc import OscConfig, OscServer
    server = OscServer(controller, OscConfig.from_dict(toml.get("osc", {})))
    server.start()                         # one thread; blocks in recvfrom() between packets
    server.notify_error("/pimodule/model/load", "model.onnx: NaN output")   # async failures
    server.broadcast("/pimodule/fx/eq/gain_db", 3.5)                        # to status subscribers
    server.stop()

Client (tests, scripts)::

    with OscClient("127.0.0.1", 9000) as c:
        c.send("/pimodule/control/noise_gain_db", -12.0)
        addr, args = c.request("/pimodule/ping", expect="/pimodule/pong")

Every address, argument and reply is documented in docs/osc.md. The socket loop is ours so that
size limits, the allow-list, signatures, reply routing and the status timer live in one thread
that mostly sleeps in ``recvfrom``. Requests that may touch the disk (``model/load``,
``fx/model``, ``model/list``, ``fx/list``) are handed to a second thread, latest request wins, so
the OSC thread never waits for a controller that reads files. Nothing raised by a packet or by the
controller leaves these threads; what is logged about them is rate limited (:class:`LogLimiter`).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from typing import Any

from pimodule.core.controls import CV_VOLTS, GAIN_SPEC
from pimodule.device.io.controller import Controller
from pimodule.device.io.osc_args import Refused, echo_args, model_name, no_args, one_number, one_port, one_string
from pimodule.device.io.osc_auth import SignedPackets
from pimodule.device.io.osc_client import (
    AUTH_ADDRESS,
    INT32,
    NONCE_ADDRESS,
    OscClient,
    OscDecodeError,
    OscEncodeError,
    decode,
    encode,
    is_loopback,
    load_key,
)
from pimodule.device.io.osc_config import LogLimiter, OscConfig, OscCounters, names, status_fields
from pimodule.device.io.osc_fx import FX_PATHS, dispatch_fx
from pimodule.device.io.osc_status import Subscriptions, requested
from pimodule.device.io.worker import BackgroundThread, LatestWins

__all__ = ["LogLimiter", "OscClient", "OscConfig", "OscCounters", "OscServer", "decode", "encode"]

log = logging.getLogger(__name__)
PREFIX = "/pimodule/"
ERROR_ADDRESS = "/pimodule/error"
# Bounds of the server's own knobs (the one table; OscConfig values are clamped into these).
MAX_SLOW_REQUESTS = 16  # list/load requests waiting for the request thread
SLOW_PATHS = ("model/load", "model/list", "fx/model", "fx/list")


class OscServer(BackgroundThread):
    """See the module docstring and docs/osc.md."""

    def __init__(self, controller: Controller, config: OscConfig = OscConfig(), clock=time.monotonic):
        self.controller = controller
        self.config = config
        self.counters = OscCounters()
        self._clock = clock
        self._allowed = {socket.gethostbyname(h) for h in config.allow_hosts}
        self._subs = Subscriptions(config)
        self._reply_ports: dict[tuple[str, int], int] = {}
        self._tokens = config.error_replies_per_s
        self._tokens_t = clock()
        self._lock = threading.Lock()  # error bucket and counters shared with the request thread
        #: the latest refusal of any kind (address, reason), repeated in the status: a client that
        #: missed the /pimodule/error datagram (UDP) still learns what was refused
        self.last_error: tuple[str, str] | None = None
        self.limiter = LogLimiter(log)
        key: bytes | None = None
        if config.key_file:
            key = load_key(config.key_file)
            mode = os.stat(os.path.expanduser(config.key_file)).st_mode
            if mode & 0o077:
                log.warning("OSC key file %s is readable by other users: chmod 600 it", config.key_file)
        elif not is_loopback(config.host):
            log.warning("OSC on %s without [osc] key_file: other hosts cannot control the module", config.host)
        self.auth = SignedPackets(key)
        self._slow = LatestWins("pimodule-osc-requests", self._serve_slow, MAX_SLOW_REQUESTS)
        super().__init__("pimodule-osc")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((config.host, config.port))
        self.port = self.sock.getsockname()[1]  # the real port when config.port == 0

    @property
    def nonce(self) -> str:
        """This run's nonce: signed packets must carry it."""
        return self.auth.nonce

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        super().start()
        self._slow.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        super().stop(timeout_s)
        self._slow.stop(timeout_s)
        self.sock.close()

    def _run(self) -> None:
        bufsize = self.config.max_packet_bytes + 1
        while not self._stop.is_set():
            self.counters.wakeups += 1
            now = self._clock()
            due = min((s.next_due for s in self._subs.values()), default=now + 0.2)
            self.sock.settimeout(min(max(due - now, 0.001), 0.2))
            try:
                data, src = self.sock.recvfrom(bufsize)
            except TimeoutError:
                data = None
            except OSError:
                if self._stop.is_set():
                    return
                continue
            try:
                if data is not None:
                    self.handle_packet(data, src)
                self._send_status_if_due()
            except Exception as err:  # the server never dies from one bad packet or controller bug
                self.counters.internal += 1
                self.limiter.log(logging.ERROR, f"loop {type(err).__name__}", "OSC handling failed", exc=err)
            self.limiter.flush()

    # -- sending -------------------------------------------------------------------------------
    def _send(self, addr: tuple[str, int], address: str, *args: Any) -> bool:
        try:
            data = encode(address, *args)
        except OscEncodeError as err:  # replies are built from checked values: this is a bug
            self.counters.unencodable += 1
            self.limiter.log(logging.ERROR, "unencodable", f"OSC reply {address} not sent: {err}")
            return False
        try:
            self.sock.sendto(data, addr)
        except OSError as err:  # e.g. nobody listening / buffer full: not our problem
            log.debug("OSC send to %s failed: %s", addr, err)
            return False
        return True

    def _reply_to(self, src: tuple[str, int]) -> tuple[str, int]:
        return (src[0], self._reply_ports.get(src, src[1]))

    def _error(self, src: tuple[str, int], address: str, reason: str) -> None:
        with self._lock:
            self.counters.errors += 1
            address, reason = address[:200], reason[:300]
            self.last_error = (address, reason)
            now = self._clock()
            rate = self.config.error_replies_per_s
            self._tokens = min(rate, self._tokens + (now - self._tokens_t) * rate)
            self._tokens_t = now
            if self._tokens < 1.0:
                self.counters.errors_suppressed += 1
                return
            self._tokens -= 1.0
        self._send(self._reply_to(src), ERROR_ADDRESS, address, reason)

    def notify_error(self, address: str, reason: str) -> None:
        """An asynchronous failure (e.g. a model load refused later): to every subscriber."""
        self.limiter.log(logging.WARNING, f"notify {address}", f"{address}: {reason}")
        self.last_error = (address[:200], reason[:300])
        self.broadcast(ERROR_ADDRESS, address, reason)

    def broadcast(self, address: str, *args: Any) -> None:
        """Send one message to every status subscriber (fx estimates, async errors)."""
        for sub in list(self._subs.values()):
            self._send(sub.addr, address, *args)

    # -- receiving -----------------------------------------------------------------------------
    def handle_packet(self, data: bytes, src: tuple[str, int]) -> None:
        self.counters.packets += 1
        local = is_loopback(src[0])
        if not local and src[0] not in self._allowed:
            self.counters.refused_host += 1
            return
        if len(data) > self.config.max_packet_bytes:
            self.counters.malformed += 1
            self._error(src, "", f"packet larger than {self.config.max_packet_bytes} bytes")
            return
        try:
            messages = decode(data)
        except OscDecodeError as err:
            self.counters.malformed += 1
            self._error(src, "", f"not an OSC packet: {str(err)[:80]}")
            return
        for address, args in messages:
            if address == AUTH_ADDRESS:
                self._handle_signed(args, src)
            elif local or address == NONCE_ADDRESS:
                self._handle_message(address, args, src)
            else:
                self.counters.messages += 1
                self.counters.unsigned_remote += 1
                self._error(src, address, "from another host every request must be signed (docs/osc.md)")

    def _handle_message(self, address: str, args: list, src: tuple[str, int]) -> None:
        self.counters.messages += 1
        try:
            self._dispatch(address, args, src)
        except Refused as err:
            self._error(src, address, str(err))
        except (KeyError, ValueError) as err:
            self._error(src, address, str(err.args[0] if err.args else err))
        except Exception as err:  # a controller bug: logged (rate limited), answered, the server goes on
            self.counters.internal += 1
            self.limiter.log(logging.ERROR, f"{address[:40]} {type(err).__name__}", f"OSC {address} failed", exc=err)
            self._error(src, address, f"internal error: {type(err).__name__}")

    def _handle_signed(self, args: list, src: tuple[str, int]) -> None:
        """``/pimodule/auth s nonce, s client, i counter, b packet, b mac`` (docs/osc.md)."""
        self.counters.messages += 1
        try:
            packet = self.auth.verify(args)
            inner = decode(packet)
        except Refused as err:
            self.counters.auth_refused += 1
            self._error(src, AUTH_ADDRESS, str(err))
            return
        except OscDecodeError as err:
            self.counters.malformed += 1
            self._error(src, AUTH_ADDRESS, f"signed packet is not OSC: {str(err)[:80]}")
            return
        self.counters.auth_ok += 1
        for address, inner_args in inner:
            if address == AUTH_ADDRESS:
                self._error(src, address, "a signed packet cannot hold another signed one")
            else:
                self._handle_message(address, inner_args, src)

    def _dispatch(self, address: str, args: list, src: tuple[str, int]) -> None:
        if not address.startswith(PREFIX):
            raise Refused("unknown address (everything lives under /pimodule/)")
        path = address[len(PREFIX) :]
        reply = self._reply_to(src)
        c = self.controller
        if path.startswith("control/"):
            name = path[len("control/") :]
            if name not in c.controls():
                raise Refused(f"unknown control {name[:64]!r}")
            value = one_number(args)
            applied = float(c.set_control(name, value))
            if applied != value:
                self.counters.clamped += 1
                self._send(reply, address, applied)
        elif path.startswith("cv/"):
            volts = one_number(args)
            applied = min(max(volts, CV_VOLTS[0]), CV_VOLTS[1])
            set_cv = getattr(c, "set_cv", None)
            if set_cv is None:
                raise Refused("this daemon reads its CV itself (no external CV)")
            set_cv(path[len("cv/") :], applied)
            if applied != volts:
                self.counters.clamped += 1
                self._send(reply, address, float(applied))
        elif path == "gain":
            value = one_number(args)
            applied = float(c.set_gain_db(GAIN_SPEC.clamp(value)))
            if applied != value:
                self.counters.clamped += 1
                self._send(reply, address, applied)
        elif path == "mute":
            on = bool(one_number(args))
            c.set_mute(on)
            self._send(reply, address, int(on))
        elif path in SLOW_PATHS:
            self._queue_slow(path, address, args, src)
        elif path in FX_PATHS:
            dispatch_fx(path, address, args, c, lambda *msg: self._send(reply, *msg))
        elif path == "mode":
            mode = one_string(args)
            c.set_mode(mode)
            self._send(reply, address, mode)
        elif path == "controls":
            no_args(args)
            table = c.controls()
            for s in table:
                self._send(
                    reply,
                    "/pimodule/controls/spec",
                    s.name,
                    s.unit,
                    float(s.min),
                    float(s.max),
                    float(s.default),
                    s.scale,
                )
            self._send(reply, "/pimodule/controls/end", len(table))
        elif path == "ping":
            self._send(reply, "/pimodule/pong", *echo_args(args))
        elif path == "auth/nonce":
            no_args(args)
            self._send(reply, NONCE_ADDRESS, self.auth.nonce)
        elif path == "reply/port":
            port = one_port(args)
            if src not in self._reply_ports and len(self._reply_ports) >= 256:
                self._reply_ports.pop(next(iter(self._reply_ports)))  # bounded: oldest forgotten
            self._reply_ports[src] = port
            self._send((src[0], port), address, port)
        elif path == "status/subscribe":
            self._subscribe(src, args)
        elif path == "status/unsubscribe":
            port = one_port(args) if args else self._reply_to(src)[1]
            key = (src[0], port)
            sub = self._subs.get(key)
            if sub is not None and src not in (sub.owner, key):
                raise Refused("not your subscription (only the client that subscribed may end it)")
            self._subs.pop(key, None)
            self._send(key, address, port)
        else:
            raise Refused("unknown address")

    # -- requests that may read files: the request thread, latest wins ----------------------------
    def _queue_slow(self, path: str, address: str, args: list, src: tuple[str, int]) -> None:
        if path in ("model/load", "fx/model"):
            name = model_name(args)  # checked here: names only, never paths
            key: tuple = (path,)  # one load of each kind waits; a newer request replaces it
        else:
            no_args(args)
            name = ""
            key = (path, self._reply_to(src))
        try:
            old = self._slow.put(key, (path, address, name, src))
        except queue.Full:
            raise Refused("busy: too many requests waiting") from None
        if old is not None and path in ("model/load", "fx/model"):
            self.counters.superseded += 1
            self._error(old[3], old[1], f"superseded by a later request ({name})")

    def _serve_slow(self, request: tuple) -> None:
        path, address, name, src = request
        try:
            self._run_one_slow(path, address, name, src)
        except Refused as err:
            self._error(src, address, str(err))
        except (KeyError, ValueError) as err:
            self._error(src, address, str(err.args[0] if err.args else err))
        except Exception as err:  # noqa: BLE001 - a controller bug: logged, answered
            self.counters.internal += 1
            self.limiter.log(logging.ERROR, f"{path} {type(err).__name__}", f"OSC {address} failed", exc=err)
            self._error(src, address, f"internal error: {type(err).__name__}")

    def _run_one_slow(self, path: str, address: str, name: str, src: tuple[str, int]) -> None:
        c = self.controller
        reply = self._reply_to(src)
        if path == "model/load":
            c.load_model(name)
            self._send(reply, "/pimodule/model/loading", name)
        elif path == "model/list":
            self._send(reply, "/pimodule/models", *names(c.list_models()))
        else:
            send = lambda *msg: self._send(reply, *msg)  # noqa: E731
            dispatch_fx(path, address, [name] if name else [], c, send)

    def wait_requests(self, timeout_s: float = 5.0) -> bool:
        """True once no list/load request waits (tests)."""
        return self._slow.wait_idle(timeout_s)

    # -- status --------------------------------------------------------------------------------
    def _subscribe(self, src: tuple[str, int], args: list) -> None:
        port, rate = requested(args, self._reply_to(src)[1])
        key = (src[0], port)
        self._subs.add(src, key, rate, self._clock())
        self._send(key, "/pimodule/status/subscribed", port, float(rate))

    def _send_status_if_due(self) -> None:
        due = self._subs.due(self._clock())
        if not due:
            return
        fields = status_fields(self.controller.status())
        fields["errors"] = min(self.counters.errors, INT32[1])
        if self.last_error is not None:
            fields["last_error"] = self.last_error
        for s in due:
            for name, value in fields.items():
                if isinstance(value, tuple):
                    self._send(s.addr, f"/pimodule/status/{name}", *value)
                else:
                    self._send(s.addr, f"/pimodule/status/{name}", value)

    @property
    def subscribers(self) -> list[tuple[str, int]]:
        return list(self._subs)
