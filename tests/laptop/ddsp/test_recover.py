"""voice_from_onnx: the voice an exported file holds, rebuilt exactly from its initializers."""

import numpy as np
import pytest
import torch

from pimodule.core.modelfile import ModelFileError
from pimodule.device.session import ModelSession
from pimodule.laptop.ddsp.export import export_onnx
from pimodule.laptop.ddsp.model import DDSPConfig, DDSPVoice
from pimodule.laptop.ddsp.recover import voice_from_onnx


@pytest.mark.parametrize(
    "config", [DDSPConfig(hidden_size=32), DDSPConfig(hidden_size=24, reverb_seconds=0.05)], ids=["plain", "reverb"]
)
def test_recovered_voice_plays_what_the_file_plays(tmp_path, config):
    torch.manual_seed(3)
    voice = DDSPVoice(config).eval()
    with torch.no_grad():  # every parameter off its initial value, so a mix-up would show
        for p in voice.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = export_onnx(voice, tmp_path / "v.onnx", name="v")
    back = voice_from_onnx(path)
    assert back.config == voice.config
    for name, value in voice.state_dict().items():
        if name not in ("gru.bias_ih_l0", "gru.bias_hh_l0"):  # regrouped: checked by the output
            torch.testing.assert_close(back.state_dict()[name], value, rtol=0, atol=0)
    f0 = np.geomspace(80.0, 1500.0, 120).astype(np.float32)
    ld = np.linspace(-70.0, -5.0, 120).astype(np.float32)
    onnx_out = ModelSession(path).process(f0, ld)
    with torch.no_grad():
        out = back(
            torch.from_numpy(f0)[None], torch.from_numpy(ld)[None], back.controls_tensor(1), *back.initial_state(1)
        )[0][0].numpy()
    np.testing.assert_allclose(out, onnx_out, atol=1e-5 * max(1.0, np.abs(onnx_out).max()))


def test_a_file_that_is_not_a_voice_is_refused(tmp_path):
    import onnx

    torch.manual_seed(0)
    path = export_onnx(DDSPVoice(DDSPConfig(hidden_size=16)), tmp_path / "v.onnx", name="v")
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(ModelFileError, match="provenance"):
        voice_from_onnx(tmp_path / "bare.onnx")
