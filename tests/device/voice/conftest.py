"""Voice files for the compiled-voice tests: the shipped ones, and voices with a learned reverb
built with the laptop code (torch; skipped where torch is not installed)."""

from __future__ import annotations

from pathlib import Path

import pytest

EXPORT = Path(__file__).resolve().parents[3] / "export"
SHIPPED = ("violin", "flute", "violin-small", "flute-small", "violin-int8")


@pytest.fixture(scope="session")
def reverb_voices(tmp_path_factory) -> dict[str, Path]:
    """Two DDSPVoice(hidden 32, 50 ms learned reverb) files exported with
    ``pimodule.laptop.ddsp.export.export_onnx``: ``"init"`` with torch's initial weights (equal
    LayerNorm weights, which the exporter merges into one initializer) and ``"perturbed"`` with
    every parameter (LayerNorms and reverb included) randomly moved."""
    torch = pytest.importorskip("torch")
    from pimodule.laptop.ddsp.export import export_onnx
    from pimodule.laptop.ddsp.model import DDSPConfig, DDSPVoice

    d = tmp_path_factory.mktemp("reverb_voices")
    out = {}
    for i, name in enumerate(("init", "perturbed")):
        torch.manual_seed(10 + i)
        model = DDSPVoice(DDSPConfig(hidden_size=32, reverb_seconds=0.05))
        if name == "perturbed":
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.2 * torch.randn_like(p))
        out[name] = export_onnx(model, d / f"reverb-{name}.onnx", name=f"reverb-{name}")
    return out
