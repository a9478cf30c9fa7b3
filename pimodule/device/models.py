"""The model store (a directory of ``.onnx`` files, by name) and the loader thread that loads,
validates and warms models off the audio thread, then offers them to the engine for a swap."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from pathlib import Path

from pimodule.core.modelfile import ModelFileError
from pimodule.device.io.worker import BackgroundThread
from pimodule.device.session import ModelSession

log = logging.getLogger(__name__)

SWAP_PICKUP_TIMEOUT_S = 5.0  # how long the loader waits for the callback to take a model
POLL_S = 0.002


class ModelStore:
    """Models by name: ``<dir>/<name>.onnx``; an explicit path to an ``.onnx`` file also works."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._kinds: dict[Path, tuple[float, str | None]] = {}  # path -> (mtime, declared kind)

    def list(self, kind: str | None = None) -> list[str]:
        """Model names, all of them or only those of one kind (``ddsp`` voices, ``fx`` estimators)."""
        if not self.directory.is_dir():
            return []
        paths = sorted(p for p in self.directory.glob("*.onnx") if p.is_file())
        return [p.stem for p in paths if kind is None or self.kind_of(p) == kind]

    def kind_of(self, path: Path) -> str | None:
        """The kind a file declares (cached per modification time; None if unreadable)."""

        mtime = path.stat().st_mtime
        cached = self._kinds.get(path)
        if cached is None or cached[0] != mtime:
            cached = (mtime, ModelSession.peek_kind(path))
            self._kinds[path] = cached
        return cached[1]

    def resolve(self, name_or_path: str | Path) -> Path:
        """The file for a name in the store or a path; ModelFileError if there is none."""
        text = str(name_or_path).strip()
        if not text:
            raise ModelFileError("empty model name")
        candidate = Path(text)
        if candidate.suffix == ".onnx" and candidate.is_file():
            return candidate
        if "/" not in text and "\\" not in text and text not in (".", ".."):
            path = self.directory / f"{Path(text).stem}.onnx"
            if path.is_file():
                return path
        known = ", ".join(self.list()) or "none"
        raise ModelFileError(f"no model {text!r} in {self.directory} (known: {known})")


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
    ):
        self.engine = engine
        self.store = store
        self.on_error = on_error
        self.on_loaded = on_loaded
        self._queue: queue.Queue[str] = queue.Queue()
        super().__init__("pimodule-loader")
        self._busy = False
        self.n_loaded = 0
        self.n_refused = 0
        self.last_error = ""
        self.current_name = ""

    def stop(self, timeout_s: float = 5.0) -> None:
        super().stop(timeout_s)
        self.engine.collect_retired()

    def request(self, name_or_path: str) -> None:
        self._queue.put(str(name_or_path))

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        """True once no request is queued or loading and no swap is pending."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._queue.empty() and not self._busy and not self.engine.swap_pending:
                return True
            time.sleep(0.01)
        return False

    def load(self, name_or_path: str) -> bool:
        """Load one model in the calling thread (startup, tests); True if it was offered."""
        try:
            path = self.store.resolve(name_or_path)
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
        log.info("model %s (%s) loaded, swapping in", session.info.name, path)
        if self.on_loaded is not None:
            self.on_loaded(session.info.name)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self.engine.collect_retired()
            try:
                name = self._queue.get(timeout=0.05)
            except queue.Empty:
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
