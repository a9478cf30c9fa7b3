"""The loader thread (the model store is :mod:`pimodule.device.store`) that loads,
validates and warms models off the audio thread, then offers them to the engine for a swap."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pimodule.core.modelfile import ModelFileError
from pimodule.device.io.worker import BackgroundThread
from pimodule.device.session import ModelSession
from pimodule.device.store import ModelStore

log = logging.getLogger(__name__)

SWAP_PICKUP_TIMEOUT_S = 5.0  # how long the loader waits for the callback to take a model
POLL_S = 0.002


def load_session(path: Path, engine) -> object:
    """Load, check against the engine and warm a model (any thread but the audio thread)."""

    session = ModelSession(path, expect_kind="ddsp")
    engine.check_compatible(session)
    session.warm()
    return session


class ModelLoader(BackgroundThread):
    """Worker thread: ``request(name)`` → load + validate + warm → ``engine.offer_model``.

    Refusals (corrupt file, wrong kind/rate/block, NaN output, unknown name) are logged and
    reported through ``on_error(message)``; the playing model is untouched.
    """

    def __init__(
        self,
        engine,
        store: ModelStore,
        *,
        on_error: Callable[[str], None] | None = None,
        on_loaded: Callable[[str], None] | None = None,
        validate: Callable[[Path], object] | None = None,
    ):
        self.engine = engine
        self.store = store
        #: decides in a child process with limits whether a file may play (pimodule.device.flash.
        #: daemon_validator); each version of a file is validated once (by path, size, mtime)
        self.validate = validate
        self._validated: dict[Path, tuple[int, int]] = {}
        self.on_error = on_error
        self.on_loaded = on_loaded
        self._pending: str | None = None  # the newest request: a newer one replaces it (latest wins)
        self._wake = threading.Event()
        super().__init__("pimodule-loader")
        self._busy = False
        self.n_loaded = 0
        self.n_refused = 0
        self.last_error = ""
        self.current_name = ""
        self.history: list[str] = []  # names loaded successfully, oldest first

    def stop(self, timeout_s: float = 5.0) -> None:
        super().stop(timeout_s)
        self.engine.collect_retired()

    def request(self, name_or_path: str) -> None:
        """Load this model next; a request not yet started is replaced (latest wins)."""
        self._pending = str(name_or_path)
        self._wake.set()

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        """True once no request is queued or loading and no swap is pending."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._pending is None and not self._busy and not self.engine.swap_pending:
                return True
            time.sleep(0.01)
        return False

    def load(self, name_or_path: str) -> bool:
        """Load one model in the calling thread (startup, tests); True if it was offered."""
        try:
            path = self.store.resolve(name_or_path)
            self._check(path)
            session = load_session(path, self.engine)
            self.engine.offer_model(session)
        except (ModelFileError, OSError, ValueError, KeyError) as err:
            self.n_refused += 1
            self.last_error = f"model {name_or_path!r} refused: {err}"
            log.error("%s", self.last_error)
            if self.on_error is not None:
                self.on_error(self.last_error)
            return False
        self.n_loaded += 1
        self.current_name = session.info.name
        self.history = [n for n in self.history if n != str(name_or_path)][-7:] + [str(name_or_path)]
        log.info("model %s (%s) loaded, swapping in", session.info.name, path)
        if self.on_loaded is not None:
            self.on_loaded(session.info.name)
        return True

    def mark_validated(self, path: Path) -> None:
        """``path`` as it is now passed validation elsewhere (at start, by the store's fallback)."""
        st = Path(path).stat()
        self._validated[Path(path)] = (st.st_size, st.st_mtime_ns)

    def _check(self, path: Path) -> None:
        if self.validate is None:
            return
        st = path.stat()
        key = (st.st_size, st.st_mtime_ns)
        if self._validated.get(path) != key:
            self.validate(path)  # ModelFileError with the reason
            self._validated[path] = key

    def previous_good(self, bad_name: str) -> str | None:
        """The most recent model loaded before ``bad_name`` (the one to go back to)."""
        for name in reversed(self.history):
            if name != bad_name and Path(name).stem != bad_name:
                return name
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.engine.collect_retired()
            if not self._wake.wait(0.05):
                continue
            self._wake.clear()
            name, self._pending = self._pending, None
            if name is None:
                continue
            self._busy = True
            try:
                if self.load(name):
                    deadline = time.monotonic() + SWAP_PICKUP_TIMEOUT_S
                    while self.engine.swap_pending and not self._stop.is_set() and time.monotonic() < deadline:
                        time.sleep(POLL_S)
                        self.engine.collect_retired()
            except Exception as err:  # keep the loader alive whatever happens
                log.exception("model loader failed")
                if self.on_error is not None:
                    self.on_error(f"model loader failed: {err}")
            finally:
                self._busy = False
