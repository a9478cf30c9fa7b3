"""Which engine plays: the compiled one in its own audio process (``engine.backend =
"compiled"``, the default) or the earlier onnxruntime engine in a Python callback of this
process (``"onnxruntime"``, kept runnable for comparison: ``pimodule run --engine onnxruntime``,
``pimodule bench``). Both offer the same surface to the daemon."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pimodule.device.audio import AudioRunner, Recorder
from pimodule.device.ort_engine import VoiceEngine
from pimodule.device.rt import setup as rt_setup
from pimodule.device.rt import shared as rt_shared
from pimodule.device.rt.engine import RtEngine
from pimodule.device.rt.runner import RtRecorder, RtRunner


@dataclass
class Engines:
    engine: object
    runner: object
    block: object | None = None  # the shared block of the compiled engine
    sim_input: np.ndarray | None = None  # what the simulated clock plays into the inputs

    @property
    def compiled(self) -> bool:
        return self.block is not None

    def close(self) -> None:
        if self.block is not None:
            self.engine.stop()
            self.block.close()


def make(cfg, reader, triggers, *, record_s: float | None = None, max_block: int = 4096, sim_input=None) -> Engines:
    """The engine and its runner for the daemon's config; CV and gate values are handed over in
    place (the reader and the trigger poller write straight into what the callback reads)."""
    audio = cfg.audio
    cv_names = [c.name for c in reader.channels]
    if cfg.engine.backend == "onnxruntime":
        engine = VoiceEngine(
            device_rate_hz=audio.sample_rate_hz,
            max_block=max(audio.block_size, max_block),
            config=cfg.engine,
            model_rate_hz=cfg.models.sample_rate_hz,
            crossfade_ms=cfg.models.crossfade_ms,
            cv_values=reader.values,
            cv_names=cv_names,
            gate_values=triggers.active,
            gate_index=0,
            analysis_thread=True,
        )
        recorder = Recorder(audio.sample_rate_hz, record_s) if record_s else None
        runner = AudioRunner(
            engine,
            sample_rate_hz=audio.sample_rate_hz,
            n_output_channels=audio.n_output_channels,
            input_channel=audio.input_channel,
            recorder=recorder,
        )
        return Engines(engine, runner, sim_input=sim_input)
    sizes = rt_shared.Sizes(
        device_rate_hz=audio.sample_rate_hz,
        model_rate_hz=cfg.models.sample_rate_hz,
        max_chunk=max_block,
        n_output_channels=audio.n_output_channels,
        input_channel=audio.input_channel,
        record_samples=int(round(record_s * audio.sample_rate_hz)) if record_s else 0,
        crossfade_ms=cfg.models.crossfade_ms,
        sim_samples=0 if sim_input is None else len(sim_input),
    )
    block = rt_setup.create_block(sizes)
    if sim_input is not None:  # the simulated clock's input, interleaved L and R, looped
        x = np.asarray(sim_input, np.float32)
        x = np.stack([x, np.zeros_like(x)], 1) if x.ndim == 1 else x[:, :2]
        block.buf("F_SIM_IN")[: 2 * len(x)] = x.reshape(-1)
        block.ih[rt_shared.I_SIM_LOOP] = 1
    engine = RtEngine(block, config=cfg.engine, cv_names=cv_names)
    engine.cv_values[:] = reader.values
    reader.values = engine.cv_values  # the CV reader now writes into the shared block
    n_gates = len(triggers.active)
    engine.gate_values[:n_gates] = triggers.active
    triggers.active = engine.gate_values[:n_gates]
    recorder = RtRecorder(block, audio.sample_rate_hz) if record_s else None
    runner = RtRunner(
        engine,
        block,
        sample_rate_hz=audio.sample_rate_hz,
        recorder=recorder,
        input_channel=audio.input_channel,
        n_output_channels=audio.n_output_channels,
    )
    return Engines(engine, runner, block, sim_input)
