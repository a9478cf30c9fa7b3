"""The one pattern every background part of the daemon shares: a daemon thread running
``_run()`` until ``_stop`` is set, with idempotent ``start()`` / ``stop()``."""

from __future__ import annotations

import threading


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
