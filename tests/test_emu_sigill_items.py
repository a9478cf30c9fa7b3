"""firmware/emu/sigill_items.py, the steps pi-check's SIGILL matrix runs inside the emulated Pi,
run here: every shipped estimator opens and runs, and a dry or reference one's estimate goes
through the module's check (``fx-check``); a blind one has nothing to check it against."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("model", ["fx.onnx", "fx-dry.onnx", "fx-ref.onnx"])
def test_each_estimator_runs_and_a_conditioned_one_is_checked(model):
    p = subprocess.run(
        [sys.executable, "sigill_items.py", "model", str(REPO / "export" / model)],
        cwd=REPO / "firmware" / "emu",
        env={"PYTHONPATH": f"{REPO}:{REPO / 'firmware' / 'emu'}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout[-500:] + p.stderr[-500:]
    ok = {line.split()[1] for line in p.stdout.splitlines() if line.startswith("OK ")}
    assert "ort-session" in ok and not any(line.startswith("ERROR") for line in p.stdout.splitlines())
    assert ("fx-check" in ok) == (model != "fx.onnx")
