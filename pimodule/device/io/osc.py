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

Every address, argument and reply is documented in docs/osc.md. Encoding and parsing are
python-osc's (``OscMessageBuilder``, ``OscPacket``); the socket loop is ours so that size limits,
the allow-list, reply routing and the status timer live in one thread that mostly sleeps in
``recvfrom``. Nothing raised by a packet or by the controller leaves that thread.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pythonosc.osc_packet import ParseError

from pimodule.core.controls import CV_VOLTS, GAIN_SPEC
from pimodule.device.io.controller import Controller
from pimodule.device.io.osc_args import Refused, no_args, one_number, one_port, one_string
from pimodule.device.io.osc_client import OscClient, decode, encode, is_loopback
from pimodule.device.io.osc_fx import FX_PATHS, dispatch_fx
from pimodule.device.io.worker import BackgroundThread

__all__ = ["OscClient", "OscConfig", "OscServer", "decode", "encode"]

log = logging.getLogger(__name__)
PREFIX = "/pimodule/"
ERROR_ADDRESS = "/pimodule/error"
# Bounds of the server's own knobs (the one table; OscConfig values are clamped into these).
STATUS_RATE_HZ = (0.2, 30.0)  # allowed subscription rates; the default is DEFAULT_STATUS_RATE_HZ
DEFAULT_STATUS_RATE_HZ = 4.0


@dataclass(frozen=True)
class OscConfig:
    host: str = "127.0.0.1"  # bind address; anything but loopback needs allow_hosts
    port: int = 9000
    allow_hosts: tuple[str, ...] = ()  # remote hosts allowed (loopback always is)
    max_packet_bytes: int = 4096
    max_subscribers: int = 8
    subscription_ttl_s: float = 60.0  # a subscription ends unless renewed within this time
    error_replies_per_s: float = 20.0  # token bucket for /pimodule/error replies (burst = rate)

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.allow_hosts:
            raise ValueError(f"OSC bound to {self.host!r} needs an allow_hosts list (remote control)")
        if not 0 <= self.port <= 65535 or self.max_packet_bytes < 64:
            raise ValueError("bad OSC port or max_packet_bytes")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OscConfig:
        """From the ``[osc]`` table of the daemon's TOML config (unknown keys refused)."""
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown [osc] keys: {sorted(unknown)}")
        kw = dict(d)
        if "allow_hosts" in kw:
            kw["allow_hosts"] = tuple(kw["allow_hosts"])
        return cls(**kw)


@dataclass
class OscCounters:
    packets: int = 0
    messages: int = 0
    refused_host: int = 0  # from hosts outside the allow-list: dropped without a reply
    malformed: int = 0  # not OSC / oversized
    errors: int = 0  # requests answered with /pimodule/error (or that would have been)
    errors_suppressed: int = 0  # error replies dropped by the rate limit
    clamped: int = 0
    wakeups: int = 0  # loop iterations: packets + status ticks + idle timeouts (≤ 5/s when idle)


@dataclass
class _Subscriber:
    addr: tuple[str, int]
    period_s: float
    expires: float
    next_due: float = field(default=0.0)


class OscServer(BackgroundThread):
    """See the module docstring and docs/osc.md."""

    def __init__(self, controller: Controller, config: OscConfig = OscConfig(), clock=time.monotonic):
        self.controller = controller
        self.config = config
        self.counters = OscCounters()
        self._clock = clock
        self._allowed = {socket.gethostbyname(h) for h in config.allow_hosts}
        self._subs: dict[tuple[str, int], _Subscriber] = {}
        self._reply_ports: dict[tuple[str, int], int] = {}
        self._tokens = config.error_replies_per_s
        self._tokens_t = clock()
        self._last_error_to: tuple[str, int] | None = None
        super().__init__("pimodule-osc")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((config.host, config.port))
        self.port = self.sock.getsockname()[1]  # the real port when config.port == 0

    # -- lifecycle -----------------------------------------------------------------------------
    def stop(self, timeout_s: float = 2.0) -> None:
        super().stop(timeout_s)
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
            except Exception:  # the server never dies from one bad packet or controller bug
                log.exception("OSC handling failed")

    # -- sending -------------------------------------------------------------------------------
    def _send(self, addr: tuple[str, int], address: str, *args: Any) -> None:
        try:
            self.sock.sendto(encode(address, *args), addr)
        except OSError as err:  # e.g. nobody listening / buffer full: not our problem
            log.debug("OSC send to %s failed: %s", addr, err)

    def _reply_to(self, src: tuple[str, int]) -> tuple[str, int]:
        return (src[0], self._reply_ports.get(src, src[1]))

    def _error(self, src: tuple[str, int], address: str, reason: str) -> None:
        self.counters.errors += 1
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
        log.warning("%s: %s", address, reason)
        self.broadcast(ERROR_ADDRESS, address, reason)

    def broadcast(self, address: str, *args: Any) -> None:
        """Send one message to every status subscriber (fx estimates, async errors)."""
        for sub in list(self._subs.values()):
            self._send(sub.addr, address, *args)

    # -- receiving -----------------------------------------------------------------------------
    def handle_packet(self, data: bytes, src: tuple[str, int]) -> None:
        self.counters.packets += 1
        if not is_loopback(src[0]) and src[0] not in self._allowed:
            self.counters.refused_host += 1
            return
        if len(data) > self.config.max_packet_bytes:
            self.counters.malformed += 1
            self._error(src, "", f"packet larger than {self.config.max_packet_bytes} bytes")
            return
        try:
            messages = decode(data)
        except (ParseError, ValueError, IndexError, OverflowError) as err:
            self.counters.malformed += 1
            self._error(src, "", f"not an OSC packet: {str(err)[:80]}")
            return
        for address, args in messages:
            self.counters.messages += 1
            try:
                self._dispatch(address, args, src)
            except Refused as err:
                self._error(src, address, str(err))
            except (KeyError, ValueError) as err:
                self._error(src, address, str(err.args[0] if err.args else err))
            except Exception as err:  # a controller bug: logged, answered, the server goes on
                log.exception("OSC %s failed", address)
                self._error(src, address, f"internal error: {type(err).__name__}")

    def _dispatch(self, address: str, args: list, src: tuple[str, int]) -> None:
        if not address.startswith(PREFIX):
            raise Refused("unknown address (everything lives under /pimodule/)")
        path = address[len(PREFIX) :]
        reply = self._reply_to(src)
        c = self.controller
        if path.startswith("control/"):
            name = path[len("control/") :]
            if name not in c.controls():
                raise Refused(f"unknown control {name!r}")
            value = one_number(args)
            applied = c.set_control(name, value)
            if applied != value:
                self.counters.clamped += 1
                self._send(reply, address, float(applied))
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
            applied = c.set_gain_db(GAIN_SPEC.clamp(value))
            if applied != value:
                self.counters.clamped += 1
                self._send(reply, address, float(applied))
        elif path == "mute":
            c.set_mute(bool(one_number(args)))
            self._send(reply, address, int(bool(one_number(args))))
        elif path in FX_PATHS:
            dispatch_fx(path, address, args, c, lambda *msg: self._send(reply, *msg))
        elif path == "mode":
            c.set_mode(one_string(args))
            self._send(reply, address, one_string(args))
        elif path == "model/load":
            name = one_string(args)
            c.load_model(name)
            self._send(reply, "/pimodule/model/loading", name)
        elif path == "model/list":
            no_args(args)
            self._send(reply, "/pimodule/models", *c.list_models())
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
            self._send(reply, "/pimodule/pong", *[a for a in args if isinstance(a, (int, float, str))])
        elif path == "reply/port":
            port = one_port(args)
            self._reply_ports[src] = port
            self._send((src[0], port), address, port)
        elif path == "status/subscribe":
            self._subscribe(src, args)
        elif path == "status/unsubscribe":
            port = one_port(args) if args else self._reply_to(src)[1]
            self._subs.pop((src[0], port), None)
            self._send((src[0], port), address, port)
        else:
            raise Refused("unknown address")

    def _subscribe(self, src: tuple[str, int], args: list) -> None:
        if len(args) > 2:
            raise Refused("expected [port i] [rate f]")
        port = one_port(args[:1]) if args else self._reply_to(src)[1]
        rate = DEFAULT_STATUS_RATE_HZ
        if len(args) == 2:
            rate = one_number(args[1:])
            rate = min(max(rate, STATUS_RATE_HZ[0]), STATUS_RATE_HZ[1])
        key = (src[0], port)
        if key not in self._subs and len(self._subs) >= self.config.max_subscribers:
            raise Refused(f"too many subscribers (max {self.config.max_subscribers})")
        now = self._clock()
        old = self._subs.get(key)
        first_due = now if old is None else min(old.next_due, now + 1.0 / rate)  # renewal: keep pace
        self._subs[key] = _Subscriber(key, 1.0 / rate, now + self.config.subscription_ttl_s, first_due)
        self._send(key, "/pimodule/status/subscribed", port, float(rate))

    def _send_status_if_due(self) -> None:
        now = self._clock()
        due = [s for s in self._subs.values() if s.next_due <= now]
        if not due:
            return
        for s in due:
            if now > s.expires:
                del self._subs[s.addr]
                continue
            s.next_due = max(s.next_due + s.period_s, now)  # never bursts to catch up
        due = [s for s in due if s.addr in self._subs]
        if not due:
            return
        fields = _flatten(self.controller.status())
        fields["errors"] = self.counters.errors
        for s in due:
            for name, value in fields.items():
                self._send(s.addr, f"/pimodule/status/{name}", value)

    @property
    def subscribers(self) -> list[tuple[str, int]]:
        return list(self._subs)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "/"))
        elif isinstance(v, bool):
            out[key] = int(v)
        elif isinstance(v, (int, str)):
            out[key] = v
        elif isinstance(v, float):
            out[key] = v if math.isfinite(v) else 0.0
        else:
            try:
                out[key] = float(v)  # numpy scalars
            except (TypeError, ValueError):
                out[key] = str(v)
    return out
