"""The compiled voice against onnxruntime, frame after frame, audio and every state tensor.

Observed on x86-64 (numba 0.68, onnxruntime 1.20.1) over :func:`sweep` (600 frames; f0 55 Hz to
2 kHz and back, loudness -100 to +10 dB, every control at min, max and default), largest absolute
differences:

=================  =======  =======  ===========  ============  ==========  =====  ======  ========
voice              audio    gru_h    prev_amps    noise_tail    reverb      phase  prev f0 position
=================  =======  =======  ===========  ============  ==========  =====  ======  ========
violin             1.9e-6   5.5e-6   6.6e-7       1.9e-7        -           0      0       0
flute              1.7e-6   3.8e-6   9.5e-7       1.0e-7        -           0      0       0
violin-small       2.2e-6   5.8e-6   1.5e-6       2.2e-7        -           0      0       0
flute-small        1.5e-6   2.5e-6   1.1e-6       7.8e-8        -           0      0       0
reverb (init)      1.6e-6   3.6e-7   1.8e-7       1.3e-9        1.6e-6      0      0       0
=================  =======  =======  ===========  ============  ==========  =====  ======  ========

(audio RMS 0.2 to 0.5). Both implementations are about 5e-7 from a float64 evaluation of one GRU
step: the differences are float32 rounding (onnxruntime's float32 LayerNorm statistics, MLAS's
sigmoid/tanh approximations, the kernel's float32 exp/log in the scaled sigmoid, and sin of float32 products k * phase in the graph against the
kernel's float64 recurrence), carried by the recurrent state. The f0 ramp, phase and noise
position are bit-exact: the per-sample Nyquist mask depends on them.
"""

from __future__ import annotations

import numpy as np
import pytest

from pimodule.device.voice import read_voice
from pimodule.device.voice.verify import check_voice, compare, sweep

from .conftest import EXPORT, SHIPPED

AUDIO_ABS = 1e-5
STATE_ABS = {
    "gru_h": 5e-5,
    "prev_amplitudes": 1e-5,
    "noise_tail": 2e-6,
    "reverb_history": 1e-5,
    "phase": 0.0,
    "prev_f0_hz": 0.0,
    "noise_position": 0.0,
}


def _assert_parity(path, n_frames: int = 600) -> dict:
    voice = read_voice(path)
    result = compare(voice, *sweep(n_frames, voice))
    assert result["audio_rms"] > 0.01, "the sweep should make sound"
    assert result["audio"] <= AUDIO_ABS, result
    for name in voice.state_dict(voice.initial_state()):
        assert result[name] <= STATE_ABS[name], (name, result[name])
    return result


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_voice_matches_onnxruntime(name):
    _assert_parity(EXPORT / f"{name}.onnx")


def test_weights_come_from_the_file(tmp_path):
    """A file with one matrix changed (same graph) plays as onnxruntime plays it, not as the
    original does."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(EXPORT / "violin-small.onnx"))
    init = next(i for i in proto.graph.initializer if i.name == "w_ab")
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(0.6), "w_ab"))
    path = tmp_path / "variant.onnx"
    onnx.save(proto, str(path))
    _assert_parity(path, 200)
    ref = read_voice(EXPORT / "violin-small.onnx")
    var = read_voice(path)
    assert not np.array_equal(ref.weights, var.weights)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["init", "perturbed"])
def test_learned_reverb_matches_onnxruntime(reverb_voices, kind):
    voice = read_voice(reverb_voices[kind])
    assert voice.has_reverb and voice.hidden == 32
    _assert_parity(reverb_voices[kind])


def test_check_voice_accepts_a_shipped_voice():
    assert check_voice(str(EXPORT / "flute-small.onnx"), n_frames=50).hidden == 64
