"""fx mode with a dry model: input L late on input R (a digital effect's latency between them) is
lined up, so an untouched recording is not heard as a reverb; the lag is reported and adopted only
once it repeats; DC offsets are not heard as an effect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from pimodule.device.fx.mode import LAG_S, FxAnalyzer
from pimodule.laptop.fx import realbench

FX_DRY_MODEL = Path(__file__).resolve().parents[3] / "export" / "fx-dry.onnx"
RATE_HZ = 48000
COLOURING = ("eq", "compressor", "distortion", "reverb")
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """A real recording (ALSA's test voice) at the device rate."""
    recs = [r for r in realbench.RECORDINGS if r.name == "alsa_voice"]
    try:
        ex = realbench.build(seed=1, draws=1, families=("pedalboard",), recordings=recs)[0]
    except realbench.BenchmarkError as err:
        pytest.skip(str(err))
    return resample_poly(ex.dry, RATE_HZ // realbench.SAMPLE_RATE, 1).astype(np.float32)


def _analyse(wet: np.ndarray, dry: np.ndarray, times: int = 2, line_up: bool = True) -> FxAnalyzer:
    a = FxAnalyzer(FX_DRY_MODEL, RATE_HZ, smoothing=1.0)
    if not line_up:
        a._line_up = lambda wet, dry: None
    a.history.write(wet)
    a.other_history.write(dry)
    for _ in range(times):
        a.analyse_once()
    return a


@pytest.mark.parametrize("late_ms", [10, 30, -20])
def test_a_late_input_is_lined_up_and_not_heard_as_reverb(speech, late_ms):
    d = int(late_ms * RATE_HZ / 1000)
    wet = np.concatenate([np.zeros(d, np.float32), speech[: len(speech) - d]]) if d > 0 else speech[-d:]
    dry = speech if d > 0 else speech[: len(speech) + d]
    unaligned = _analyse(wet, dry, line_up=False).latest
    assert unaligned["reverb"]["active"]  # the offset reads as a reverb ...
    a = _analyse(wet, dry)
    assert a.lag_ms == pytest.approx(late_ms, abs=0.1)
    assert not any(a.latest[e]["active"] for e in COLOURING), {e: a.latest[e]["probability"] for e in COLOURING}
    first = _analyse(wet, dry, times=1)  # ... and a lag is taken only once it is found twice
    assert first.lag == 0


def test_lags_beyond_reach_and_dc_offsets(speech):
    d = int((LAG_S + 0.03) * RATE_HZ)
    far = _analyse(np.concatenate([np.zeros(d, np.float32), speech[: len(speech) - d]]), speech)
    assert far.lag == 0  # not looked for
    shifted = _analyse(speech + 0.3, speech - 0.2)  # offsets on both inputs are not an effect
    assert shifted.lag == 0
    assert not any(shifted.latest[e]["active"] for e in COLOURING)
