"""pimodule.device.io runs on the module: importing every module of it must not import torch."""

from __future__ import annotations

import subprocess
import sys

MODULES = ["hardware", "cv", "gpio", "controller", "osc", "osc_tool", "notify"]


def test_io_imports_no_torch():
    code = (
        "import importlib, sys\n"
        f"for m in {MODULES!r}:\n"
        "    importlib.import_module('pimodule.device.io.' + m)\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('pimodule.laptop.ddsp', 'pimodule.laptop.fx'))]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
