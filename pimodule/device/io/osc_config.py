"""The OSC server's settings (the daemon's ``[osc]`` table), its counters, its rate-limited log
and the status report's encoding. Used by :mod:`pimodule.device.io.osc`, which re-exports them."""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pimodule.device.io.osc_client import FLOAT32_MAX, INT32, is_loopback

MAX_STATUS_STRING = 256


@dataclass(frozen=True)
class OscConfig:
    host: str = "127.0.0.1"  # bind address; anything but loopback needs allow_hosts
    port: int = 9000
    allow_hosts: tuple[str, ...] = ()  # remote hosts allowed (loopback always is); they must sign
    max_packet_bytes: int = 4096
    max_subscribers: int = 8
    max_subscribers_per_host: int = 3  # one host cannot hold every slot (Pd's panel stays in)
    subscription_ttl_s: float = 60.0  # a subscription ends unless renewed within this time
    error_replies_per_s: float = 20.0  # token bucket for /pimodule/error replies (burst = rate)
    key_file: str = ""  # shared key for signed OSC from other hosts ("" = loopback only)

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.allow_hosts:
            raise ValueError(f"OSC bound to {self.host!r} needs an allow_hosts list (remote control)")
        if not 0 <= self.port <= 65535 or self.max_packet_bytes < 64:
            raise ValueError("bad OSC port or max_packet_bytes")
        if self.max_subscribers < 1 or self.max_subscribers_per_host < 1:
            raise ValueError("max_subscribers and max_subscribers_per_host must be at least 1")
        if self.max_subscribers_per_host > self.max_subscribers:  # e.g. max_subscribers = 2 alone
            object.__setattr__(self, "max_subscribers_per_host", self.max_subscribers)

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
    unsigned_remote: int = 0  # requests from another host without a valid signature
    auth_refused: int = 0  # bad signature, stale nonce, replayed counter
    auth_ok: int = 0
    unencodable: int = 0  # replies that could not be encoded (a bug: the fuzz tests keep it 0)
    internal: int = 0  # controller bugs (exceptions other than KeyError/ValueError)
    superseded: int = 0  # load requests replaced by a later one before they ran
    wakeups: int = 0  # loop iterations: packets + status ticks + idle timeouts (≤ 5/s when idle)


class LogLimiter:
    """At most ``burst`` log lines per ``interval_s``; the rest are counted by kind and summed up
    in one line when the interval ends (``flush``, called from the server loop). A traceback is
    logged only the first time a kind is seen."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0, burst: int = 5, clock=time.monotonic):
        self.logger = logger
        self.interval_s = interval_s
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        self._n = 0
        self._dropped: collections.Counter[str] = collections.Counter()
        self._traced: set[str] = set()
        self.total_dropped = 0

    def log(self, level: int, kind: str, message: str, *, exc: BaseException | None = None) -> None:
        with self._lock:
            self._roll()
            if self._n >= self.burst:
                if len(self._dropped) < 32 or kind in self._dropped:
                    self._dropped[kind] += 1
                else:
                    self._dropped["other"] += 1
                self.total_dropped += 1
                return
            self._n += 1
            trace = exc is not None and kind not in self._traced and len(self._traced) < 64
            if trace:
                self._traced.add(kind)
        text = message
        if trace:
            text += "\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
        self.logger.log(level, "%s", text)

    def flush(self) -> None:
        with self._lock:
            self._roll()

    def _roll(self) -> None:
        now = self._clock()
        if now - self._start < self.interval_s:
            return
        if self._dropped:
            kinds = ", ".join(f"{k} x{n}" for k, n in self._dropped.most_common(8))
            self.logger.warning(
                "OSC: %d more log lines dropped in the last %.0f s (%s)",
                sum(self._dropped.values()),
                now - self._start,
                kinds,
            )
        self._dropped.clear()
        self._n = 0
        self._start = now


def names(values: Any) -> tuple[str, ...]:
    """Values as OSC strings (cut to 256 characters, no NUL)."""
    return tuple(str(v)[:MAX_STATUS_STRING].replace("\x00", "") for v in values)


def status_fields(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A status dict flattened to OSC-ready values: nested keys joined with ``/``; bool → int;
    int clamped to int32; float: non-finite → 0, clamped to float32; str cut to 256 characters;
    a list or tuple → a tuple of strings (one message with several ``s`` arguments)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(status_fields(v, key + "/"))
        elif isinstance(v, bool):
            out[key] = int(v)
        elif isinstance(v, int):
            out[key] = min(max(v, INT32[0]), INT32[1])
        elif isinstance(v, str):
            out[key] = v[:MAX_STATUS_STRING].replace("\x00", "")
        elif isinstance(v, (list, tuple)):
            out[key] = names(v)
        else:
            try:
                x = float(v)  # float, numpy scalars
            except (TypeError, ValueError, OverflowError):
                out[key] = str(v)[:MAX_STATUS_STRING].replace("\x00", "")
                continue
            out[key] = min(max(x, -FLOAT32_MAX), FLOAT32_MAX) if math.isfinite(x) else 0.0
    return out
