"""Publishing voices to the callback: compiled weights into a free slot, or onnxruntime in a
worker thread feeding a ring (for voice files the compiled engine does not recognise).

Runs in the control process. A slot is written only while the callback neither plays nor fades
it and every earlier publication has been taken; then its generation is bumped (after a fence).
Requests made meanwhile wait here, latest wins.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from pimodule.device.rt import shared as L
from pimodule.device.rt.lowlevel import full_fence as fence
from pimodule.device.rt.shm import Shared
from pimodule.device.voice.onnx_graph import UnsupportedVoice
from pimodule.device.voice.weights import VoiceWeights, read_voice

log = logging.getLogger(__name__)
ORT_AHEAD_FRAMES = 4  # frames the onnxruntime voice runs ahead of the callback (its latency)


@dataclass
class Published:
    """What a slot holds: the session (metadata, controls; the onnxruntime fallback runs it) and,
    for compiled voices, the weights."""

    session: object
    weights: VoiceWeights | None
    reason: str = ""  # why it is not compiled


def compile_or_explain(session) -> tuple[VoiceWeights | None, str]:
    """The compiled form of a voice file, or None and the reason it plays through onnxruntime."""
    try:
        return read_voice(session.path), ""
    except UnsupportedVoice as err:
        return None, str(err)


class SlotWriter:
    """Writes voices into the block's two slots and publishes them."""

    def __init__(self, block: Shared):
        self.block = block
        self.slots: list[Published | None] = [None, None]
        self.ort: OrtFeeder | None = None

    def free_slot(self) -> int | None:
        ih = self.block.ih
        if ih[L.I_GEN] != ih[L.I_SEEN_GEN] or ih[L.I_FADING] >= 0:
            return None  # a publication not yet taken, or a fade in progress
        active = int(ih[L.I_ACTIVE])
        return 1 if active == 0 else 0

    def publish(self, item: Published) -> bool:
        """Write ``item`` into a free slot and announce it; False when no slot is free yet."""
        s = self.free_slot()
        if s is None:
            return False
        b, ih = self.block, self.block.ih
        base = L.I_SLOT + L.SLOT_STRIDE * s
        ih[base + L.S_KIND] = L.KIND_EMPTY
        w = item.weights
        if w is not None:
            n_w, n_l = w.weights.shape[0], w.layout.shape[0]
            n_s, n_x = w.initial_state().shape[0], w.scratch_size
            if n_w > ih[L.I_MAX_W] or n_l > ih[L.I_MAX_L] or n_s > ih[L.I_MAX_S] or n_x > ih[L.I_MAX_X]:
                raise ValueError(
                    f"{item.session.info.name}: too large for the engine's voice slots "
                    f"({n_w} weights, {n_s} state values)"
                )
            b.buf(f"F_W{s}")[:n_w] = w.weights
            b.buf(f"I_L{s}")[:n_l] = w.layout
            b.buf(f"D_SI{s}")[:n_s] = w.initial_state()
            b.buf(f"D_S{s}")[:n_s] = w.initial_state()
            b.buf(f"F_X{s}")[:n_x] = 0.0
            ih[base + L.S_W_LEN], ih[base + L.S_L_LEN] = n_w, n_l
            ih[base + L.S_S_LEN], ih[base + L.S_X_LEN] = n_s, n_x
            kind = L.KIND_COMPILED
        else:
            kind = L.KIND_RING
        self.write_controls(s, item.session.controls)
        ih[base + L.S_KIND] = kind
        self.slots[s] = item
        if kind == L.KIND_RING:
            self._start_ort(item.session)
        fence()
        ih[L.I_PENDING] = s
        fence()
        ih[L.I_GEN] = ih[L.I_GEN] + 1
        return True

    def write_controls(self, s: int, values: np.ndarray) -> None:
        n = min(len(values), L.N_CTRL)
        self.block.buf(f"F_C{s}")[:n] = values[:n]

    def set_control(self, index: int, value: float) -> None:
        """A control of the voice playing (and of the one being published), one float store each."""
        for s, item in enumerate(self.slots):
            if item is not None and index < L.N_CTRL:
                self.block.buf(f"F_C{s}")[index] = value

    @property
    def playing(self) -> Published | None:
        active = int(self.block.ih[L.I_ACTIVE])
        return self.slots[active] if active >= 0 else None

    @property
    def pending(self) -> bool:
        ih = self.block.ih
        return ih[L.I_GEN] != ih[L.I_SEEN_GEN] or ih[L.I_FADING] >= 0

    def _start_ort(self, session) -> None:
        if self.ort is not None:
            self.ort.stop()
        self.ort = OrtFeeder(self.block, session)
        self.ort.start()

    def stop(self) -> None:
        if self.ort is not None:
            self.ort.stop()
            self.ort = None


class OrtFeeder:
    """A voice the compiled engine cannot play, run by onnxruntime in a control-process thread:
    the callback posts each frame's (f0, loudness) to a ring and takes audio frames from another,
    :data:`ORT_AHEAD_FRAMES` frames behind (the latency this path adds, stated by
    :meth:`latency_samples`). If the thread falls behind, the callback plays silence and counts it."""

    def __init__(self, block: Shared, session):
        self.block, self.session = block, session
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pimodule-ort-voice", daemon=True)
        self._frame = np.zeros(int(block.ih[L.I_HOP]), np.float32)
        self.n_bad = 0  # frames whose output or state went non-finite

    def latency_samples(self, model_rate: bool = True) -> int:
        return ORT_AHEAD_FRAMES * int(self.block.ih[L.I_HOP])

    def start(self) -> None:
        ih = self.block.ih
        aud = self.block.buf("F_ORT_AUD")
        hop = int(ih[L.I_HOP])
        # prime: the callback reads silence for the first frames while requests arrive
        ih[L.I_ORT_REQ_READ] = ih[L.I_ORT_REQ_WRITE]
        w = int(ih[L.I_ORT_AUD_READ])
        n_frames = aud.shape[0] // hop
        for i in range(ORT_AHEAD_FRAMES):
            aud[((w + i) % n_frames) * hop : ((w + i) % n_frames + 1) * hop] = 0.0
        fence()
        ih[L.I_ORT_AUD_WRITE] = w + ORT_AHEAD_FRAMES
        self.session.reset()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)

    def _run(self) -> None:
        ih, req = self.block.ih, self.block.buf("D_ORT_REQ")
        aud = self.block.buf("F_ORT_AUD")
        hop = int(ih[L.I_HOP])
        n_req, n_aud = req.shape[0] // 2, aud.shape[0] // hop
        while not self._stop.is_set():
            r = int(ih[L.I_ORT_REQ_READ])
            if r >= ih[L.I_ORT_REQ_WRITE] or ih[L.I_ORT_AUD_WRITE] - ih[L.I_ORT_AUD_READ] >= n_aud:
                time.sleep(0.0005)
                continue
            fence()
            f0, ld = float(req[2 * (r % n_req)]), float(req[2 * (r % n_req) + 1])
            ih[L.I_ORT_REQ_READ] = r + 1
            self.session.process_frame(f0, ld, self._frame)
            if not (
                np.all(np.isfinite(self._frame)) and all(np.all(np.isfinite(v)) for v in self.session.state.values())
            ):
                self.n_bad += 1  # silence, a fresh state, and the daemon goes back to the last good voice
                self._frame[:] = 0.0
                self.session.reset()
            w = int(ih[L.I_ORT_AUD_WRITE])
            aud[(w % n_aud) * hop : (w % n_aud + 1) * hop] = self._frame
            fence()
            ih[L.I_ORT_AUD_WRITE] = w + 1
