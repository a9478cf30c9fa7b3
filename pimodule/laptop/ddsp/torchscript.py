"""The comparison the benchmark asks for: the same DDSP voice run the way nn~ and ddsp~ run models.

Those externals load a TorchScript module that keeps its streaming state in registered buffers
and call its ``forward`` on each block from the host's audio thread. :class:`StatefulVoice` is
that module for our voice (the one-frame graph of pimodule.laptop.ddsp.frame, as in the ONNX file;
traced, state in buffers updated in place); :func:`compare` times it
per device block exactly where our engine would run a model frame, so `pimodule bench` can put
the two side by side. The weights are the run's when the run folder exists, else the file's own
(rebuilt by pimodule.laptop.ddsp.recover), else random ones of the architecture in the provenance.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pimodule.laptop.ddsp.frame import FrameVoice
from pimodule.laptop.ddsp.model import DDSPConfig, DDSPVoice


class StatefulVoice(nn.Module):
    """nn~-style wrapper: ``forward(f0_hz, loudness_db) -> audio``, state kept in buffers."""

    def __init__(self, voice: DDSPVoice):
        super().__init__()
        self.voice = FrameVoice(voice).eval()  # the same one-frame graph as the ONNX export
        self.state_names = [s.name for s in voice.state_specs()]
        for name, tensor in zip(self.state_names, voice.initial_state(1)):
            self.register_buffer(name, tensor.clone())
        self.register_buffer("controls", voice.controls_tensor(1))

    def forward(self, f0_hz: torch.Tensor, loudness_db: torch.Tensor) -> torch.Tensor:
        state = [getattr(self, n) for n in self.state_names]
        out = self.voice(f0_hz, loudness_db, self.controls, *state)
        for buf, new in zip(state, out[1:]):
            buf.copy_(new)
        return out[0]


def scripted_voice(voice: DDSPVoice) -> torch.jit.ScriptModule:
    module = StatefulVoice(voice)
    example = (torch.full((1, 1), 220.0), torch.full((1, 1), -30.0))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constants created in forward are traced as constants: intended
        traced = torch.jit.trace(module, example, check_trace=False)
        for name, tensor in zip(module.state_names, voice.initial_state(1)):
            getattr(traced, name).copy_(tensor)  # tracing ran one frame: back to the initial state
    return traced.eval()


def voice_for(model_path: Path) -> DDSPVoice:
    """The architecture of an exported model (from its provenance), trained weights if available."""
    import onnx

    proto = onnx.load(str(model_path), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    provenance = json.loads(meta.get("pimodule.provenance", "{}"))
    config = DDSPConfig(**provenance.get("config", {}))
    run = provenance.get("run")
    if run and Path(run).is_dir():
        from pimodule.laptop.ddsp.checkpoint import load_run

        try:
            return load_run(Path(run))[0]
        except (FileNotFoundError, RuntimeError, ValueError):
            pass
    from pimodule.laptop.ddsp.recover import voice_from_onnx
    from pimodule.core.modelfile import ModelFileError

    try:  # the file's own weights, rebuilt from it
        return voice_from_onnx(model_path)
    except ModelFileError:
        torch.manual_seed(0)
        return DDSPVoice(config)


def compare(model_path: Path, block_size: int, rate_hz: int, n_blocks: int) -> dict | None:
    """Per-device-block time of the TorchScript voice (one thread, inference mode): a model frame
    runs whenever the block needs one, as in our engine. Times the model only (no resampling)."""
    try:
        voice = voice_for(Path(model_path))
    except Exception:  # not a DDSP model of ours
        return None
    c = voice.config
    module = scripted_voice(voice)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        samples_per_frame = c.hop_size * rate_hz / c.sample_rate
        f0 = torch.full((1, 1), 220.0)
        ld = torch.full((1, 1), -25.0)
        times = np.zeros(n_blocks)
        owed = 0.0
        with torch.inference_mode():
            for _ in range(20):
                module(f0, ld)
            for i in range(n_blocks):
                start = time.perf_counter_ns()
                owed += block_size
                while owed > 0:
                    module(f0, ld)
                    owed -= samples_per_frame
                times[i] = (time.perf_counter_ns() - start) / 1000.0
    finally:
        torch.set_num_threads(threads)
    period_us = block_size / rate_hz * 1e6
    return {
        "p50_us": float(np.percentile(times, 50)),
        "p99_us": float(np.percentile(times, 99)),
        "max_us": float(times.max()),
        "rtf": float(times.mean() / period_us),
    }
