"""A trained :class:`DDSPVoice` back from the ONNX file ``pimodule export`` wrote.

The export regroups the weights for one frame (:class:`pimodule.laptop.ddsp.frame.FrameVoice`); every
group is an initializer under its buffer's name, so the voice can be rebuilt exactly: the
architecture comes from the file's provenance, the weights from those initializers. The GRU's
reset and update biases were summed in the export (``b_ih + b_hh``); they come back as the input
bias with a zero recurrent bias, the same function. The exporter keeps one copy of equal
constants (an untrained LayerNorm's ones and zeros) and folds the reverb's flip into its
convolution weight; those are found by their sibling or their size, and the rebuilt voice is
checked against the file under onnxruntime before it is returned. Used by ``pimodule prune`` (prune a shipped
voice without its run folder) and the TorchScript comparison of ``pimodule bench``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pimodule.core.modelfile import KEY_PROVENANCE, ModelFileError
from pimodule.device.session import ModelSession
from pimodule.laptop.ddsp.model import DDSPConfig, DDSPVoice


def _initializers(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in proto.graph.initializer}
    return weights, json.loads(meta.get(KEY_PROVENANCE, "{}"))


def voice_from_onnx(path: str | Path) -> DDSPVoice:
    """The voice whose one-frame graph ``path`` holds (ModelFileError if it is not one of ours)."""
    path = Path(path)
    weights, provenance = _initializers(path)
    if "config" not in provenance:
        raise ModelFileError(f"{path}: no model config in its provenance (not exported by pimodule?)")
    voice = DDSPVoice(DDSPConfig(**provenance["config"]))
    h = voice.config.hidden_size
    # constants the exporter deduplicated: equal to a sibling of the same role
    for name, sibling in (
        ("g2", "g1"),
        ("be2", "be1"),
        ("ln_out2.weight", "ln_out1.weight"),
        ("ln_out2.bias", "ln_out1.bias"),
    ):
        if name not in weights and sibling in weights:
            weights[name] = weights[sibling]
    try:
        w = {
            k: weights[k]
            for k in (
                "w1",
                "b1",
                "g1",
                "be1",
                "w2",
                "b2",
                "g2",
                "be2",
                "w_ab",
                "b_ab",
                "w_hh",
                "b_hn",
                "w_x",
                "ln_out1.weight",
                "ln_out1.bias",
                "ln_out2.weight",
                "ln_out2.bias",
                "lin_out2.weight",
                "lin_out2.bias",
                "proj.weight",
                "proj.bias",
            )
        }
    except KeyError as err:
        raise ModelFileError(f"{path}: no initializer {err} (not a pimodule DDSP voice)") from None
    state = voice.state_dict()

    def put(name: str, value: torch.Tensor) -> None:
        if state[name].shape != value.shape:
            raise ModelFileError(f"{path}: {name} is {tuple(value.shape)}, the config says {tuple(state[name].shape)}")
        state[name] = value.clone()

    for i, mlp in enumerate(("f0_mlp", "loudness_mlp")):
        put(f"{mlp}.0.weight", w["w1"][i].t())
        put(f"{mlp}.0.bias", w["b1"][i].reshape(h))
        put(f"{mlp}.1.weight", w["g1"][i].reshape(h))
        put(f"{mlp}.1.bias", w["be1"][i].reshape(h))
        put(f"{mlp}.3.weight", w["w2"][i].t())
        put(f"{mlp}.3.bias", w["b2"][i].reshape(h))
        put(f"{mlp}.4.weight", w["g2"][i].reshape(h))
        put(f"{mlp}.4.bias", w["be2"][i].reshape(h))
    w_ab, b_ab = w["w_ab"], w["b_ab"].reshape(-1)
    put("gru.weight_ih_l0", w_ab[:, : 3 * h].t())
    put("gru.bias_ih_l0", b_ab[: 3 * h])
    put("gru.weight_hh_l0", w["w_hh"].t())
    put("gru.bias_hh_l0", torch.cat([torch.zeros(2 * h), w["b_hn"].reshape(h)]))
    put("out_mlp.0.weight", torch.cat([w["w_x"].t(), w_ab[:, 3 * h :].t()], dim=1))
    put("out_mlp.0.bias", b_ab[3 * h :])
    for dst, src in (("out_mlp.1", "ln_out1"), ("out_mlp.3", "lin_out2"), ("out_mlp.4", "ln_out2"), ("proj", "proj")):
        for part in ("weight", "bias"):
            put(f"{dst}.{part}", w[f"{src}.{part}"])
    if voice.n_reverb_taps > 1:
        put("reverb_ir", _reverb_ir(weights, voice.n_reverb_taps, path))
    voice.load_state_dict(state)
    voice.eval()
    _check(voice, path)
    return voice


def _reverb_ir(weights: dict[str, torch.Tensor], n_taps: int, path: Path) -> torch.Tensor:
    """The learned IR (without its dry tap 0): as exported, or as the flipped convolution weight."""
    if "reverb_ir" in weights:
        return weights["reverb_ir"].reshape(-1)[1:]
    flipped = [t for t in weights.values() if t.numel() == n_taps and t.dim() == 3]
    if len(flipped) != 1 or float(flipped[0].reshape(-1)[-1]) != 0.0:
        raise ModelFileError(f"{path}: cannot find the reverb's impulse response")
    return flipped[0].reshape(-1).flip(0)[1:]


def _check(voice: DDSPVoice, path: Path) -> None:
    """The rebuilt voice must play what the file plays (onnxruntime) on a pitch and level sweep."""
    import numpy as np

    f0 = np.geomspace(60.0, 2000.0, 48).astype(np.float32)
    ld = np.linspace(-80.0, 0.0, 48).astype(np.float32)
    expected = ModelSession(path).process(f0, ld)
    with torch.no_grad():
        got = voice(
            torch.from_numpy(f0)[None], torch.from_numpy(ld)[None], voice.controls_tensor(1), *voice.initial_state(1)
        )[0][0].numpy()
    error = float(np.max(np.abs(got - expected)))
    if not error <= 1e-4 * max(1.0, float(np.max(np.abs(expected)))):
        raise ModelFileError(
            f"{path}: the weights rebuilt from the file do not play as the file does (max difference {error:.2g})"
        )
