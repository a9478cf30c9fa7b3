"""pimodule prune: structured pruning of a DDSP voice's decoder width, then fine-tuning."""

import argparse
import json

import numpy as np
import pytest
import torch

from pimodule.device.session import ModelSession
from pimodule.laptop.ddsp import prune
from pimodule.laptop.ddsp.export import export_onnx
from pimodule.laptop.ddsp.model import DDSPConfig, DDSPVoice


def _voice(hidden=32, seed=0):
    torch.manual_seed(seed)
    return DDSPVoice(DDSPConfig(hidden_size=hidden)).eval()


def _controls(seed=1, batch=3, frames=60):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, frames, generator=g) * 600 + 80, -70 + 60 * torch.rand(batch, frames, generator=g)


def _play(voice, f0, ld):
    with torch.no_grad():
        return voice(f0, ld, voice.controls_tensor(f0.shape[0]), *voice.initial_state(f0.shape[0]))[0]


def test_keeping_every_unit_is_the_same_voice():
    voice = _voice()
    f0, ld = _controls()
    same, keep = prune.prune_voice(voice, 32, f0, ld)
    assert all(k == list(range(32)) for k in keep.values())
    assert torch.equal(_play(same, f0, ld), _play(voice, f0, ld))


def test_dead_units_are_the_ones_cut():
    voice = _voice()
    f0, ld = _controls()
    dead = [3, 17, 29]
    with torch.no_grad():  # nothing reads these GRU units: they cannot matter
        voice.gru.weight_hh_l0[:, dead] = 0.0
        voice.out_mlp[0].weight[:, dead] = 0.0
    scores = prune.unit_importance(voice, f0, ld)
    assert set(torch.argsort(scores["gru"])[:3].tolist()) == set(dead)
    small, keep = prune.prune_voice(voice, 29, f0, ld)
    assert not set(dead) & set(keep["gru"]) and len(keep["gru"]) == 29


@pytest.mark.parametrize("hidden", (8, 16))
def test_a_pruned_voice_is_smaller_finite_and_exports(tmp_path, hidden):
    voice = _voice()
    f0, ld = _controls()
    small, _ = prune.prune_voice(voice, hidden, f0, ld)
    assert small.config.hidden_size == hidden
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in voice.parameters())
    y = _play(small, f0, ld)
    assert torch.isfinite(y).all()
    path = export_onnx(small, tmp_path / "small.onnx", name="small")
    session = ModelSession(path)
    session.warm()
    assert session.info.state[0].shape[-1] == hidden


def test_bad_widths_are_refused():
    voice = _voice()
    f0, ld = _controls()
    for hidden in (0, 33):
        with pytest.raises(ValueError, match="hidden must be"):
            prune.prune_voice(voice, hidden, f0, ld)


def test_prune_command_from_an_exported_voice(tone_data, tmp_path, capsys):
    src = export_onnx(_voice(), tmp_path / "src.onnx", name="src")
    out, exported = tmp_path / "pruned_run", tmp_path / "pruned.onnx"
    args = argparse.Namespace(
        source=src, hidden=16, data=tone_data, out=out, steps=20, max_minutes=0.0, config=None, seed=0, export=exported
    )
    assert prune.main(args) == 0
    record = json.loads((out / "pruned.json").read_text())
    assert record["origin"]["hidden_before"] == 32 and record["origin"]["hidden_after"] == 16
    assert len(record["kept_units"]["gru"]) == 16
    session = ModelSession(exported)
    assert session.info.provenance["pruned_from"]["from"] == str(src)
    assert session.info.provenance["steps"] == 20
    audio = session.process(np.full(50, 220.0), np.full(50, -20.0))
    assert np.all(np.isfinite(audio))
    printed = capsys.readouterr().out
    assert "hidden 32 -> 16" in printed and "loudness_error_db" in printed
