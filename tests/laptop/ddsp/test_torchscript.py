import numpy as np
import torch

from pimodule.laptop.ddsp.export import build_test_model
from pimodule.laptop.ddsp.model import DDSPConfig, DDSPVoice
from pimodule.laptop.ddsp.torchscript import compare, scripted_voice


def test_scripted_stateful_voice_streams_like_the_whole_render():
    torch.manual_seed(0)
    voice = DDSPVoice(DDSPConfig(hidden_size=16)).eval()
    f0 = torch.linspace(110, 880, 50)[None]
    ld = torch.linspace(-60, -10, 50)[None]
    with torch.no_grad():
        whole = voice(f0, ld, voice.controls_tensor(1), *voice.initial_state(1))[0]
        module = scripted_voice(voice)
        streamed = torch.cat([module(f0[:, i : i + 1], ld[:, i : i + 1]) for i in range(50)], dim=1)
    assert torch.max(torch.abs(whole - streamed)) < 1e-4


def test_compare_reports_block_timings(tmp_path):
    path = build_test_model(tmp_path / "m.onnx")
    result = compare(path, 128, 48000, 20)
    assert set(result) == {"p50_us", "p99_us", "max_us", "rtf"}
    assert all(np.isfinite(v) and v >= 0 for v in result.values())
