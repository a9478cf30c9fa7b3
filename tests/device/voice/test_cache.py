"""numba's cache and the kernel's sources: a change to a file of the kernel reaches the machine code
even where the calling functions' own files did not change (an upgrade on a module whose cache
holds the previous version's code)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PROBE = """
import numpy as np
from pimodule.device.voice import read_voice
from pimodule.device.voice.kernel import voice_frames
v = read_voice({path!r})
n = 20
out = np.zeros((n, v.block_size), np.float32)
voice_frames(v.weights, v.layout, v.default_controls()[None], np.full(n, 220, np.float32),
             np.full(n, -20, np.float32), v.initial_state(), v.new_scratch(), out)
print(repr(float(np.abs(out).sum())))
"""


def _run(root: Path, cache: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(cache), PYTHONDONTWRITEBYTECODE="1")
    code = PROBE.format(path=str(REPO / "export" / "violin-small.onnx"))
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout.strip().splitlines()[-1])


def test_a_change_to_a_callee_file_alone_reaches_the_cached_callers(tmp_path):
    root, cache = tmp_path / "src", tmp_path / "cache"
    shutil.copytree(REPO / "pimodule", root / "pimodule", ignore=shutil.ignore_patterns("__pycache__"))
    before = _run(root, cache)
    assert _run(root, cache) == before  # from the cache, the same
    ops = root / "pimodule" / "device" / "voice" / "kernel_ops.py"
    text = ops.read_text()
    assert "    y[yo] = a0\n" in text
    ops.write_text(text.replace("    y[yo] = a0\n", "    y[yo] = a0 + np.float32(1.0)\n"))  # every 4th output + 1
    after = _run(root, cache)
    assert after != before, "the cached callers kept the old kernel_ops code"
