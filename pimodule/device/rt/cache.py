"""Where numba keeps the compiled engine, keyed by the engine's source.

numba's own cache notices a change only in the file that defines a function, not in the
functions it calls from other files: after an upgrade that touched only ``f0_loudness.py``, the
callback's cached machine code would still hold the old analysis. So the engine's compiled code
lives in a directory named after a hash of every source it is built from (this package and the
compiled voice), under ``$NUMBA_CACHE_DIR`` (the systemd unit sets it) or
``~/.cache/pimodule/numba``: a changed source means a fresh directory, never stale code.
:func:`configure` runs when :mod:`.dsp` is imported, before any of the engine's functions is
decorated (the cache location is fixed then).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba

RT = Path(__file__).resolve().parent
# what the compiled code is built from: the modules with compiled functions and the constants
# they read (the control-side Python around them does not change the machine code)
COMPILED_FROM = tuple(
    RT / f"{m}.py"
    for m in (
        "shared",
        "lowlevel",
        "dsp",
        "fft",
        "f0_frame",
        "f0_loudness",
        "fxlayout",
        "fxcoef",
        "fxreverb",
        "fxchain",
        "block",
        "stream",
    )
)
VOICE = RT.parent / "voice"


def source_hash() -> str:
    h = hashlib.sha256()
    for path in (*COMPILED_FROM, *sorted(VOICE.glob("*.py"))):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    h.update(numba.__version__.encode())
    return h.hexdigest()[:16]


def configure() -> str:
    base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(Path.home(), ".cache", "pimodule", "numba")
    folder = os.path.join(base, "engine-" + source_hash())
    numba.config.CACHE_DIR = folder
    return folder
