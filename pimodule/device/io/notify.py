"""systemd readiness and watchdog (sd_notify) for ``Type=notify`` units, via ``sdnotify``.

Usage (daemon)::

    from pimodule.device.io.notify import Notifier, Watchdog
    notifier = Notifier()                  # a no-op when NOTIFY_SOCKET is unset (not under systemd)
    ...open audio, start threads...
    notifier.ready("playing violin")       # READY=1 + STATUS=...
    dog = Watchdog(notifier, is_healthy=lambda: engine.blocks != last_seen())
    dog.start()                            # WATCHDOG=1 every WatchdogSec/2, only while healthy
    ...
    notifier.stopping(); dog.stop()

``is_healthy`` lets the daemon withhold the ping when the audio callback has stalled, so systemd
restarts the service (``Restart=on-failure`` after a watchdog timeout). The interval comes from
``WATCHDOG_USEC`` (set by systemd from ``WatchdogSec=``); without it the watchdog does nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from pimodule.device.io.worker import BackgroundThread

log = logging.getLogger(__name__)


class Notifier:
    """READY / STATUS / WATCHDOG / STOPPING messages to $NOTIFY_SOCKET (nothing when unset)."""

    def __init__(self, socket_path: str | None = None):
        path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET")
        self.enabled = bool(path)
        self.sent: list[str] = []  # what was sent (for logs and tests)
        self._notifier = None
        if self.enabled:
            import sdnotify  # noqa: PLC0415  (device extra)

            if socket_path is not None:
                old = os.environ.get("NOTIFY_SOCKET")
                os.environ["NOTIFY_SOCKET"] = socket_path
                try:
                    self._notifier = sdnotify.SystemdNotifier(debug=True)
                finally:
                    if old is None:
                        del os.environ["NOTIFY_SOCKET"]
                    else:
                        os.environ["NOTIFY_SOCKET"] = old
            else:
                self._notifier = sdnotify.SystemdNotifier(debug=True)

    def notify(self, state: str) -> bool:
        """Send one raw state string; False (and a log line) if it could not be sent."""
        if not self.enabled or self._notifier is None:
            return False
        try:
            self._notifier.notify(state)
        except OSError as err:
            log.warning("sd_notify %r failed: %s", state, err)
            return False
        self.sent.append(state)
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def watchdog_interval_s(environ: dict | None = None) -> float | None:
    """Half of $WATCHDOG_USEC in seconds (ping twice per timeout), or None when not set."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


class Watchdog(BackgroundThread):
    """A thread that sends WATCHDOG=1 every interval while ``is_healthy()`` is true."""

    def __init__(
        self, notifier: Notifier, is_healthy: Callable[[], bool] = lambda: True, interval_s: float | None = None
    ):
        self.notifier = notifier
        self.is_healthy = is_healthy
        self.interval_s = interval_s if interval_s is not None else watchdog_interval_s()
        self.withheld = 0  # pings not sent because the daemon was unhealthy
        super().__init__("pimodule-watchdog")

    def start(self) -> None:
        if self.interval_s is not None and self.notifier.enabled:
            super().start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                healthy = bool(self.is_healthy())
            except Exception:
                log.exception("health check failed")
                healthy = False
            if healthy:
                self.notifier.watchdog()
            else:
                self.withheld += 1
