"""The one pattern every background part of the daemon shares: a daemon thread running
``_run()`` until ``_stop`` is set, with idempotent ``start()`` / ``stop()``; and on it, a queue of
requests where the latest of each kind wins (:class:`LatestWins`)."""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any


class BackgroundThread:
    """Base for CV polling, buttons, the watchdog, the OSC server and the model loader.

    Subclasses call ``super().__init__(name)`` and implement ``_run`` (which should return soon
    after ``self._stop`` is set, e.g. by waiting on it).
    """

    def __init__(self, thread_name: str) -> None:
        self._thread_name = thread_name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:  # pragma: no cover - subclasses implement it
        raise NotImplementedError


class LatestWins(BackgroundThread):
    """Keyed requests served one at a time, oldest first, by ``handle(item)`` on a thread of their
    own; a request put under a key that still waits replaces it (latest wins), and at most
    ``limit`` wait (``put`` raises :class:`queue.Full` beyond)."""

    def __init__(self, thread_name: str, handle: Callable[[Any], None], limit: int) -> None:
        super().__init__(thread_name)
        self._handle = handle
        self._limit = limit
        self._waiting: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()
        self._cv = threading.Condition()

    def put(self, key: Hashable, item: Any) -> Any:
        """Queue ``item`` under ``key``; returns the request it replaced (None if none)."""
        with self._cv:
            old = self._waiting.pop(key, None)
            if old is None and len(self._waiting) >= self._limit:
                raise queue.Full
            self._waiting[key] = item
            self._cv.notify()
        return old

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """True once no request waits (the one being served may still run)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with self._cv:
                if not self._waiting:
                    return True
            time.sleep(0.01)
        return False

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        super().stop(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cv:
                while not self._waiting and not self._stop.is_set():
                    self._cv.wait(0.5)
                if self._stop.is_set():
                    return
                _, item = self._waiting.popitem(last=False)
            self._handle(item)
