"""Building the shared block from the daemon's configuration, and its parameters.

The same filters as the onnxruntime engine (:mod:`pimodule.device.resample`), the same envelope
and guard constants (:mod:`pimodule.device.guard`, :class:`pimodule.device.config.EngineConfig`).
"""

from __future__ import annotations

import math

import numpy as np

from pimodule.core.controls import CV_NAMES, MODES
from pimodule.device.guard import DEFAULT_CEILING, DEFAULT_GAIN_TIME_MS, DEFAULT_RELEASE_MS, db_to_gain
from pimodule.device.resample import StreamingResampler
from pimodule.device.rt import f0_loudness
from pimodule.device.rt import shared as L
from pimodule.device.rt.shm import Shared


def branches(rate_in: int, rate_out: int) -> np.ndarray:
    """(phases, taps) reversed polyphase branches, as :class:`StreamingResampler` holds them."""
    rs = StreamingResampler(rate_in, rate_out, max_block_in=64)
    return np.ascontiguousarray(rs._branches)  # noqa: SLF001 - the one filter design, shared


def create_block(sizes: L.Sizes, name: str | None = None) -> Shared:
    block = Shared.create(
        sizes,
        branches(sizes.model_rate_hz, sizes.device_rate_hz),
        branches(sizes.device_rate_hz, sizes.model_rate_hz),
        name=name,
    )
    ih = block.ih
    ih[L.I_MODE_NOW] = ih[L.I_MODE_REQ] = 0
    block.dh[block_offset(block, "D_STATUS") + L.T_FADER] = 1.0
    status = block.buf("D_STATUS")
    status[L.T_GAIN_NOW] = 1.0
    status[L.T_LIM_NOW] = 1.0
    f0_loudness.configure(block)  # (clears I_ANA, whose first slots hold the upsampler's state)
    reset_resamplers(block)
    return block


def block_offset(block: Shared, name: str) -> int:
    return int(block.ih[L.I_BUF + 2 * L.BUF[name]])


def reset_resamplers(block: Shared) -> None:
    """The upsampler's state: write position after the history, no samples yet."""
    st = block.buf("I_ANA")
    ih = block.ih
    st[0], st[1], st[2], st[3] = ih[L.I_UP_TAPS] - 1, 0, 0, ih[L.I_UP_DOWN]


def write_params(block: Shared, cfg, cv_names=CV_NAMES, gate_index: int = 0) -> None:
    """Engine settings (``EngineConfig``) into ``D_PARAMS`` (control process, any time)."""
    p = block.buf("D_PARAMS")
    ih = block.ih
    rate = int(ih[L.I_DEVICE_RATE])
    frame_s = int(ih[L.I_HOP]) / int(ih[L.I_MODEL_RATE])
    p[L.P_HZ_AT_0V] = cfg.hz_at_0v
    p[L.P_F0_LO], p[L.P_F0_HI] = cfg.f0_range_hz
    p[L.P_LD_LO], p[L.P_LD_HI] = cfg.loudness_range_db
    p[L.P_CV2_LO], p[L.P_CV2_HI] = cfg.cv2_range_v
    p[L.P_ATTACK] = 1.0 - math.exp(-frame_s / (cfg.attack_ms * 1e-3))
    p[L.P_RELEASE] = 1.0 - math.exp(-frame_s / (cfg.release_ms * 1e-3))
    p[L.P_GAIN_TAU] = DEFAULT_GAIN_TIME_MS * 1e-3 * rate
    p[L.P_RELEASE_TAU] = DEFAULT_RELEASE_MS * 1e-3 * rate
    p[L.P_CEILING] = DEFAULT_CEILING
    p[L.P_I_CV1], p[L.P_I_CV2], p[L.P_I_GATE] = cv_names.index("cv1"), cv_names.index("cv2"), gate_index
    ih[L.I_LOUD_SRC] = 0 if cfg.loudness_source == "cv2" else 1
    ih[L.I_TRANSPOSE] = int(bool(cfg.transpose_with_cv1))
    set_gain_db(block, cfg.gain_db)


def set_gain_db(block: Shared, gain_db: float) -> None:
    block.buf("D_PARAMS")[L.P_GAIN] = db_to_gain(gain_db)


def set_mode(block: Shared, mode: str) -> None:
    block.ih[L.I_MODE_REQ] = MODES.index(mode)
