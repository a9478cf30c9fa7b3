"""The real-time engine's shared-memory block mapped into a process (:class:`Shared`): created by
the control process from a layout (:mod:`.shared`, the slot table and the buffer plan), attached by
the audio process by its name."""

from __future__ import annotations

import mmap
import os
import secrets

import numpy as np

from pimodule.device.rt import shared as L

SHM_DIR = "/dev/shm"


class Shared:
    """The block, mapped: ``ih``, ``dh``, ``fh`` numpy views and the buffers by name.

    The block is a file in ``/dev/shm`` (mode 0600, a random name) mapped by both processes. The
    numpy views keep the mapping alive, so values can still be read after :meth:`close` (which
    removes the file's name); the memory goes when the last view does."""

    def __init__(self, path: str, mm: mmap.mmap, owner: bool):
        self.path, self.owner = path, owner
        head = np.frombuffer(mm, np.int64, L.N_HEADER)
        if head[L.I_MAGIC] != L.MAGIC or head[L.I_VERSION] != L.VERSION:
            raise ValueError("not a pimodule real-time block (or another version)")
        n_i, n_d, n_f = (int(head[k]) for k in (L.I_N_I, L.I_N_D, L.I_N_F))
        self.ih = np.frombuffer(mm, np.int64, n_i, 0)
        self.dh = np.frombuffer(mm, np.float64, n_d, 8 * n_i)
        self.fh = np.frombuffer(mm, np.float32, n_f, 8 * (n_i + n_d))
        self.closed = False

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def buf(self, name: str) -> np.ndarray:
        """A view of one buffer."""
        i = L.BUF[name]
        off, n = int(self.ih[L.I_BUF + 2 * i]), int(self.ih[L.I_BUF + 2 * i + 1])
        heap = {"f": self.fh, "d": self.dh, "i": self.ih}[L.BUFFERS[i][1]]
        return heap[off : off + n]

    @classmethod
    def create(cls, sizes: L.Sizes, up_taps: np.ndarray, dn_taps: np.ndarray, name: str | None = None) -> Shared:
        """A new zeroed block; ``up_taps``/``dn_taps`` are (phases, taps) polyphase branches."""
        offsets, (n_i, n_d, n_f) = L.plan(sizes, up_taps.shape[1], dn_taps.shape[1])
        nbytes = 8 * n_i + 8 * n_d + 4 * n_f
        path = os.path.join(SHM_DIR, name or f"pimodule-{os.getpid()}-{secrets.token_hex(6)}")
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, nbytes)
            mm = mmap.mmap(fd, nbytes)
        finally:
            os.close(fd)
        head = np.frombuffer(mm, np.int64, L.N_HEADER)
        s = sizes
        up_up, up_down = L.rate_ratio(s.model_rate_hz, s.device_rate_hz)
        dn_up, dn_down = L.rate_ratio(s.device_rate_hz, s.model_rate_hz)
        values = {
            L.I_MAGIC: L.MAGIC,
            L.I_VERSION: L.VERSION,
            L.I_N_I: n_i,
            L.I_N_D: n_d,
            L.I_N_F: n_f,
            L.I_DEVICE_RATE: s.device_rate_hz,
            L.I_MAX_CHUNK: s.max_chunk,
            L.I_MODEL_RATE: s.model_rate_hz,
            L.I_HOP: s.hop,
            L.I_UP_UP: up_up,
            L.I_UP_DOWN: up_down,
            L.I_UP_TAPS: up_taps.shape[1],
            L.I_DN_UP: dn_up,
            L.I_DN_DOWN: dn_down,
            L.I_DN_TAPS: dn_taps.shape[1],
            L.I_OUT_RING: offsets["F_OUT_RING"][1],
            L.I_IN_RING: s.in_ring,
            L.I_REC_LEN: s.record_samples,
            L.I_N_RESP: s.n_responses,
            L.I_MAX_W: s.max_weights,
            L.I_MAX_L: s.max_layout,
            L.I_MAX_S: s.max_state,
            L.I_MAX_X: s.max_scratch,
            L.I_N_OUT_CH: s.n_output_channels,
            L.I_IN_CH_L: s.input_channel,
            L.I_IN_CH_R: 1 - min(s.input_channel, 1),
            L.I_CROSSFADE: offsets["F_FADE"][1],
            L.I_MODE_FADE: max(1, round(s.mode_fade_ms * 1e-3 * s.device_rate_hz)),
            L.I_ORT_FRAMES: s.ort_frames,
            L.I_SIM_LEN: s.sim_samples,
            L.I_N_CTRL: L.N_CTRL,
            L.I_FX_LEN: s.fx_floats,
            L.I_ACTIVE: -1,
            L.I_FADING: -1,
            L.I_PENDING: -1,
        }
        for k, v in values.items():
            head[k] = v
        for name_, (off, n) in offsets.items():
            head[L.I_BUF + 2 * L.BUF[name_]] = off
            head[L.I_BUF + 2 * L.BUF[name_] + 1] = n
        block = cls(path, mm, owner=True)
        block.buf("F_UP_TAPS")[:] = up_taps.reshape(-1)
        block.buf("F_DN_TAPS")[:] = dn_taps.reshape(-1)
        t = (np.arange(offsets["F_FADE"][1]) + 1.0) / offsets["F_FADE"][1]
        block.buf("F_FADE")[:] = (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)
        return block

    @classmethod
    def attach(cls, name: str) -> Shared:
        path = os.path.join(SHM_DIR, os.path.basename(name))
        fd = os.open(path, os.O_RDWR)
        try:
            mm = mmap.mmap(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        return cls(path, mm, owner=False)

    def close(self) -> None:
        """The owner removes the block's name (nothing is left in /dev/shm); the mapping stays
        until the last view of it goes."""
        if self.owner and not self.closed:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        self.closed = True
