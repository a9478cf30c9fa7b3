"""Status subscriptions over OSC (docs/osc.md "Status"): who gets ``/pimodule/status/*``, how
often, until when; bounded in number, per host, and with slots kept for the module's own host."""

from __future__ import annotations

from dataclasses import dataclass, field

from pimodule.device.io.osc_args import Refused, one_number, one_port
from pimodule.device.io.osc_client import is_loopback
from pimodule.device.io.osc_config import OscConfig

STATUS_RATE_HZ = (0.2, 30.0)  # allowed subscription rates; the default is DEFAULT_STATUS_RATE_HZ
DEFAULT_STATUS_RATE_HZ = 4.0


def requested(args: list, reply_port: int) -> tuple[int, float]:
    """``/pimodule/status/subscribe [port i] [rate f]``: the port (the reply port if none) and
    the rate, clamped to :data:`STATUS_RATE_HZ`; Refused for more arguments or bad ones."""
    if len(args) > 2:
        raise Refused("expected [port i] [rate f]")
    port = one_port(args[:1]) if args else reply_port
    rate = DEFAULT_STATUS_RATE_HZ
    if len(args) == 2:
        rate = min(max(one_number(args[1:]), STATUS_RATE_HZ[0]), STATUS_RATE_HZ[1])
    return port, rate


@dataclass
class Subscriber:
    addr: tuple[str, int]
    period_s: float
    expires: float
    next_due: float = field(default=0.0)
    owner: tuple[str, int] = ("", 0)  # the source address that subscribed (or renewed) last


class Subscriptions(dict):
    """Subscribers by the address their status goes to."""

    def __init__(self, config: OscConfig):
        super().__init__()
        self.config = config

    def add(self, src: tuple[str, int], key: tuple[str, int], rate_hz: float, now: float) -> None:
        """Subscribe (or renew) ``key`` for ``src``, or Refused when the limits are reached."""
        if key not in self:
            cfg = self.config
            per_host = cfg.max_subscribers_per_host
            if len(self) >= cfg.max_subscribers:
                raise Refused(f"too many subscribers (max {cfg.max_subscribers})")
            if sum(1 for h, _ in self if h == src[0]) >= per_host:
                raise Refused(f"too many subscriptions from {src[0]} (max {per_host} per host)")
            remote = sum(1 for h, _ in self if not is_loopback(h))
            if not is_loopback(src[0]) and remote >= cfg.max_subscribers - per_host:
                raise Refused(f"too many subscribers from other hosts ({per_host} slots are kept for this one)")
        old = self.get(key)
        first_due = now if old is None else min(old.next_due, now + 1.0 / rate_hz)  # renewal: keep pace
        self[key] = Subscriber(key, 1.0 / rate_hz, now + self.config.subscription_ttl_s, first_due, src)

    def due(self, now: float) -> list[Subscriber]:
        """The subscribers whose status is due now (the expired ones forgotten), advanced."""
        due = [s for s in self.values() if s.next_due <= now]
        for s in due:
            if now > s.expires:
                del self[s.addr]
                continue
            s.next_due = max(s.next_due + s.period_s, now)  # never bursts to catch up
        return [s for s in due if s.addr in self]
