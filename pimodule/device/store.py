"""The model store: a directory of ``<name>.onnx`` files, addressed by name only, keeping the
previous version of each model.

- **Names, never paths.** One rule (:data:`NAME_RE`): 1-64 of ``a-z 0-9 _ -``, starting with a
  letter or digit: no dots, no slashes, no upper case, no trailing newline (``\\Z``, not ``$``).
  :meth:`ModelStore.resolve` takes a name and returns a file *inside* the directory: a symlink
  whose target lies elsewhere is refused.
- **The previous version is kept.** Installing over a name first hard-links the installed file
  to ``<dir>/.previous/<name>.onnx`` (replacing the older previous one), then renames the new
  file over ``<name>.onnx``: at every instant ``<name>.onnx`` is a whole file, the old or the
  new one. :meth:`ModelStore.rollback` exchanges the two (``renameat2(RENAME_EXCHANGE)``, one
  atomic step; two renames where the kernel lacks it).
- **Kinds are read without onnxruntime**: :mod:`pimodule.device.modelcheck` parses the file as
  data (no external data, bounded) and reads its metadata.
- :func:`load_with_fallback`: at start, the daemon validates a model and falls back to its
  previous version (rolled back on disk, so the name plays what works) when the installed file
  fails, with a note that says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pimodule.core.modelfile import ModelFileError
from pimodule.device import modelcheck

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\Z")
NAME_RULE = "1-64 characters of a-z 0-9 _ -, starting with a letter or a digit (no dots, no paths)"
SUFFIX = ".onnx"
PREVIOUS_DIR = ".previous"
PARTIAL_SUFFIX = ".onnx.partial"


def check_name(name: object) -> str:
    """``name`` if it follows :data:`NAME_RE`; ModelFileError naming the rule otherwise."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        shown = ascii(name)[:80]
        raise ModelFileError(f"bad model name {shown}: a name is {NAME_RULE}")
    return name


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2``); False where that is not available."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


@dataclass(frozen=True)
class Entry:
    """One installed model, as ``pimodule models list`` shows it."""

    name: str
    kind: str | None
    sample_rate: int | None
    block_size: int | None
    bytes: int
    sha256: str
    provenance: str
    previous: bool
    error: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class ModelStore:
    """Models by name: ``<dir>/<name>.onnx``, the previous versions in ``<dir>/.previous``."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._kinds: dict[Path, tuple[tuple[int, int, int], str | None]] = {}  # path -> (stat key, kind)

    # -- names and paths -----------------------------------------------------------------------
    def path_for(self, name: str) -> Path:
        """Where the model ``name`` lives (whether or not it exists); ModelFileError for a bad name."""
        return self.directory / f"{check_name(name)}{SUFFIX}"

    def previous_path(self, name: str) -> Path:
        return self.directory / PREVIOUS_DIR / f"{check_name(name)}{SUFFIX}"

    def partial_path(self, name: str) -> Path:
        return self.directory / f".{check_name(name)}{PARTIAL_SUFFIX}"

    def _inside(self, path: Path) -> bool:
        """A regular file whose real location is in this store (not a symlink pointing out)."""
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return False
        root = self.directory.resolve()
        return real.is_file() and real.parent in (root, root / PREVIOUS_DIR)

    def resolve(self, name: str) -> Path:
        """The file of the model ``name``; ModelFileError for a bad name, a missing model or a
        file that lies outside the store (a symlink pointing out). Names only, never paths."""
        path = self.path_for(name)
        if not path.exists() and not path.is_symlink():
            known = ", ".join(self.list()) or "none"
            raise ModelFileError(f"no model {name!r} in {self.directory} (known: {known})")
        if not self._inside(path):
            raise ModelFileError(f"model {name!r} is not a file inside {self.directory} (a link pointing out?)")
        return path

    # -- listing -------------------------------------------------------------------------------
    def list(self, kind: str | None = None) -> list[str]:
        """Model names (valid names, files inside the store), all or only those of one kind."""
        if not self.directory.is_dir():
            return []
        names = sorted(p.name[: -len(SUFFIX)] for p in self.directory.glob(f"*{SUFFIX}"))
        names = [n for n in names if NAME_RE.match(n) and self._inside(self.directory / f"{n}{SUFFIX}")]
        return [n for n in names if kind is None or self.kind_of(self.directory / f"{n}{SUFFIX}") == kind]

    def kind_of(self, path: Path) -> str | None:
        """The kind a file declares, read as data (cached per inode and mtime; None if refused)."""
        try:
            st = path.stat()
        except OSError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._kinds.get(path)
        if cached is None or cached[0] != key:
            try:
                kind = modelcheck.check_file(path).info.kind
            except ModelFileError:
                kind = None
            cached = (key, kind)
            self._kinds[path] = cached
        return cached[1]

    def entry(self, name: str) -> Entry:
        path = self.resolve(name)
        data = path.read_bytes()
        kind = rate = block = None
        provenance, error = "", ""
        try:
            checked = modelcheck.check_bytes(data, f"{name}{SUFFIX}")
            info = checked.info
            kind, rate, block = info.kind, info.sample_rate, info.block_size
            provenance = provenance_summary(info.provenance)
        except ModelFileError as err:
            error = str(err)
        return Entry(
            name,
            kind,
            rate,
            block,
            len(data),
            hashlib.sha256(data).hexdigest(),
            provenance,
            self.previous_path(name).is_file(),
            error,
        )

    def entries(self) -> list[Entry]:
        return [self.entry(n) for n in self.list()]

    # -- changing what is installed --------------------------------------------------------------
    def install(self, name: str, source: Path) -> Path:
        """Move ``source`` (a checked file in this directory, e.g. the flash's partial) to
        ``<name>.onnx``; the installed file, if any, becomes the previous version. Each step is
        one rename: the name always holds a whole file."""
        final = self.path_for(name)
        previous = self.previous_path(name)
        if final.exists() and self._inside(final) and not final.is_symlink():
            previous.parent.mkdir(exist_ok=True)
            staged = previous.parent / f".{name}{PARTIAL_SUFFIX}"
            staged.unlink(missing_ok=True)
            os.link(final, staged)  # the installed bytes, under a second name
            os.replace(staged, previous)
            _fsync_dir(previous.parent)
        os.replace(source, final)  # the one step that changes what the name plays
        _fsync_dir(self.directory)
        return final

    def rollback(self, name: str) -> Path:
        """The previous version of ``name`` back; the replaced one becomes the previous."""
        final = self.resolve(name)
        previous = self.previous_path(name)
        if not previous.is_file() or previous.is_symlink():
            raise ModelFileError(f"model {name!r} has no previous version to roll back to")
        if not _exchange(final, previous):
            staged = previous.parent / f".{name}{PARTIAL_SUFFIX}"
            staged.unlink(missing_ok=True)
            os.link(final, staged)
            os.replace(previous, final)
            os.replace(staged, previous)
        _fsync_dir(previous.parent)
        _fsync_dir(self.directory)
        log.info("model %s rolled back to its previous version", name)
        return final

    def clean_partials(self) -> list[Path]:
        """Remove the partial uploads an interrupted flash (or a power cut) left behind."""
        removed = []
        for folder in (self.directory, self.directory / PREVIOUS_DIR):
            if folder.is_dir():
                removed += sorted(folder.glob(f".*{PARTIAL_SUFFIX}"))
        for path in removed:
            path.unlink(missing_ok=True)
            log.warning("removed %s: an interrupted flash", path.name)
        return removed


def provenance_summary(provenance: dict) -> str:
    """A short line from a model's provenance: recipe, steps, commit, variant."""
    if not isinstance(provenance, dict):
        return ""
    parts = []
    for key in ("recipe", "config", "data", "steps", "commit", "variant"):
        value = provenance.get(key)
        if value in (None, "", {}):
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in list(value.items())[:3])
        parts.append(f"{key} {str(value)[:40]}")
    return "; ".join(parts)[:160]


def load_with_fallback(store: ModelStore, name: str, validate: Callable[[Path], object]) -> tuple[Path, str]:
    """The file to play for ``name``, validated by ``validate(path)`` (raises ModelFileError,
    e.g. ``lambda p: validate.validate(p, "ddsp").raise_if_refused()``), and a note ("" when
    the installed file is fine). When it fails and a previous version passes, the previous one
    is rolled back into place (so the name plays what works; the failing file is kept as the
    previous version) and the note says so. ModelFileError when neither passes."""
    path = store.resolve(name)
    try:
        validate(path)
        return path, ""
    except ModelFileError as err:
        failure = str(err)
    previous = store.previous_path(name)
    if not previous.is_file():
        raise ModelFileError(f"model {name!r} failed validation and has no previous version: {failure}")
    try:
        validate(previous)
    except ModelFileError as err:
        raise ModelFileError(
            f"model {name!r} failed validation ({failure}), and so did its previous version ({err})"
        ) from None
    store.rollback(name)
    note = (
        f"model {name!r}: the installed file failed validation ({failure}); playing its previous version "
        f"(rolled back; the failing file is kept as the previous one: pimodule models rollback {name} to undo)"
    )
    log.warning("%s", note)
    return store.path_for(name), note
