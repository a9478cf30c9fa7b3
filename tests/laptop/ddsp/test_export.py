import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from pimodule.core import modelfile
from pimodule.core.controls import DDSP_CONTROLS
from pimodule.core.modelfile import ModelFileError
from pimodule.device.session import ModelSession
from pimodule.laptop.ddsp.export import export_onnx
from pimodule.laptop.ddsp.model import DDSPConfig, DDSPVoice

CONFIG = DDSPConfig(hidden_size=32)


@pytest.fixture(scope="module")
def voice():
    torch.manual_seed(0)
    return DDSPVoice(CONFIG).eval()


@pytest.fixture(scope="module")
def model_path(voice, tmp_path_factory):
    return export_onnx(voice, tmp_path_factory.mktemp("m") / "voice.onnx", name="voice", provenance={"data": "test"})


def _controls(n_frames, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) / 250
    f0 = (220 * 2 ** (np.sin(2 * np.pi * 0.7 * t) + 0.2 * np.sin(2 * np.pi * 5 * t) / 12)).astype(np.float32)
    ld = (-50 + 30 * np.abs(np.sin(2 * np.pi * 0.5 * t)) + rng.normal(0, 1, n_frames)).astype(np.float32)
    return f0, ld


def _torch_whole(voice, f0, ld, **controls):
    with torch.no_grad():
        out = voice(
            torch.from_numpy(f0)[None],
            torch.from_numpy(ld)[None],
            voice.controls_tensor(1, **controls),
            *voice.initial_state(1),
        )
    return out[0][0].numpy()


def test_metadata_follows_the_contract(model_path):
    proto = onnx.load(str(model_path))
    assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= modelfile.MIN_OPSET
    meta = {p.key: p.value for p in proto.metadata_props}
    info = modelfile.parse_metadata(meta)
    assert info.kind == "ddsp" and info.sample_rate == 16000 and info.block_size == 64
    assert info.controls == DDSP_CONTROLS
    assert [s.name for s in info.state] == [s.name for s in DDSPVoice(CONFIG).state_specs()]
    assert info.provenance["data"] == "test" and "commit" in info.provenance


def test_torch_and_onnx_agree_frame_by_frame(voice, model_path):
    f0, ld = _controls(200)
    session = ModelSession(model_path)
    state = voice.initial_state(1)
    ctl = voice.controls_tensor(1)
    worst = 0.0
    out = np.zeros(64, np.float32)
    for i in range(len(f0)):
        with torch.no_grad():
            res = voice(torch.tensor([[f0[i]]]), torch.tensor([[ld[i]]]), ctl, *state)
        state = res[1:]
        session.process_frame(float(f0[i]), float(ld[i]), out)
        worst = max(worst, float(np.max(np.abs(out - res[0][0].numpy()))))
    assert worst <= 1e-4


@pytest.mark.parametrize("block_size", [64, 65, 128, 256])
def test_onnx_block_by_block_equals_whole_signal_render(voice, model_path, block_size):
    """Audio blocks of any size: frames run as soon as they are complete, output through a FIFO."""
    f0, ld = _controls(300, seed=1)
    whole = _torch_whole(voice, f0, ld)
    session = ModelSession(model_path)
    hop = session.info.block_size
    fifo, played, frames_done, frame = [], [], 0, np.zeros(hop, np.float32)
    n_samples = len(f0) * hop
    for start in range(0, n_samples, block_size):
        available = min(start + block_size, n_samples) // hop
        while frames_done < available:
            session.process_frame(float(f0[frames_done]), float(ld[frames_done]), frame)
            fifo.extend(frame.tolist())
            frames_done += 1
        take = min(block_size, len(fifo))
        played.extend(fifo[:take])
        del fifo[:take]
    streamed = np.array(played + fifo, np.float32)
    assert streamed.shape == whole.shape
    assert np.max(np.abs(streamed - whole)) <= 1e-3
    # no clicks at block edges: the largest sample-to-sample step is that of the whole render
    assert np.max(np.abs(np.diff(streamed))) <= np.max(np.abs(np.diff(whole))) + 1e-3


def _comb_fraction(audio, f0_hz, sample_rate=16000):
    """Share of the spectrum's power within 4 Hz of the multiples of f0_hz."""
    power = np.abs(np.fft.rfft(audio * np.hanning(len(audio)))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / sample_rate)
    near = np.abs(freqs - f0_hz * np.round(freqs / f0_hz)) < 4.0
    return power[near].sum() / power.sum()


def test_output_is_finite_and_pitch_shift_moves_the_harmonics(model_path):
    session = ModelSession(model_path)
    session.set_control("noise_gain_db", -40.0)
    f0 = np.full(500, 110.0, np.float32)
    ld = np.full(500, -20.0, np.float32)
    base = session.process(f0, ld)[16000:]
    session.reset()
    assert session.set_control("pitch_shift_semitones", 12.0) == 12.0
    up = session.process(f0, ld)[16000:]
    assert np.all(np.isfinite(base)) and np.all(np.isfinite(up))
    assert _comb_fraction(base, 110.0) > 0.95
    assert _comb_fraction(up, 220.0) > 0.95 > _comb_fraction(base, 220.0) + 0.2


def test_set_control_clamps_and_refuses_nan(model_path):
    session = ModelSession(model_path)
    assert session.set_control("noise_gain_db", 99.0) == 12.0
    with pytest.raises(ValueError):
        session.set_control("noise_gain_db", float("nan"))
    with pytest.raises(KeyError):
        session.set_control("nope", 1.0)


def test_bad_model_files_are_refused_with_a_reason(tmp_path, model_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not really onnx" * 100)
    with pytest.raises(ModelFileError, match="cannot load"):
        ModelSession(garbage)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(model_path.read_bytes()[:5000])
    with pytest.raises(ModelFileError):
        ModelSession(truncated)
    with pytest.raises(ModelFileError, match="expected 'fx'"):
        ModelSession(model_path, expect_kind="fx")
    proto = onnx.load(str(model_path))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ModelFileError, match="not a pimodule model"):
        ModelSession(bare)
    with pytest.raises(ModelFileError, match="no such"):
        ModelSession(tmp_path / "missing.onnx")


def test_runtime_session_imports_no_torch():
    code = "import sys, pimodule.device.session; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_optional_learned_reverb_streams_and_exports(tmp_path):
    torch.manual_seed(0)
    voice = DDSPVoice(DDSPConfig(hidden_size=16, reverb_seconds=0.05)).eval()
    assert voice.state_specs()[-1].name == "reverb_history"
    with torch.no_grad():
        voice.reverb_ir.mul_(20)  # an audible tail
    f0, ld = _controls(120, seed=2)
    whole = _torch_whole(voice, f0, ld)
    session = ModelSession(export_onnx(voice, tmp_path / "rv.onnx", name="rv"))
    streamed = session.process(f0, ld)
    assert np.max(np.abs(streamed - whole)) <= 1e-3
    # the tail rings on after the voice stops
    ld_off = np.concatenate([ld, np.full(40, -100.0, np.float32)])
    f0_off = np.concatenate([f0, np.full(40, f0[-1], np.float32)])
    session.reset()
    out = session.process(f0_off, ld_off)
    dry_voice = DDSPVoice(DDSPConfig(hidden_size=16)).eval()
    dry_voice.load_state_dict({k: v for k, v in voice.state_dict().items() if k != "reverb_ir"})
    dry = _torch_whole(dry_voice, f0_off, ld_off)
    tail = slice(len(f0) * 64 + 400, len(f0) * 64 + 1200)
    assert np.sqrt(np.mean(out[tail] ** 2)) > 1.5 * np.sqrt(np.mean(dry[tail] ** 2))
