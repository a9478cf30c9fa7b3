"""The control process's side of the compiled fx chain (:mod:`.fxchain`): the matched chain's targets
into the shared block.

:class:`FxChainWriter` is the one writer of the chain's part of the block. It takes what
:class:`~pimodule.device.fx.twin_chain.ChainTwin` holds (each stage's targets as [0, 1] positions, its
on/off target, the distortion's curve, the reverb's decay and damping) and publishes it:

- the targets as one record under a sequence lock (generation odd while writing, even when done,
  :func:`~pimodule.device.rt.lowlevel.full_fence` between); the callback copies a complete record at a
  block boundary and ramps to it exactly as ChainTwin does;
- the reverb's partition spectra (taken from the twin, which builds them when decay or damping
  change, never in the callback) into one of four slots the callback cannot be reading (not the
  installed IR, not the incoming one, not one of a publication it has not acknowledged yet), then the
  slot's number and a generation. The callback takes the newest at a block boundary, as the twin
  takes its newest pending IR. Only when every slot is busy (three publications while the callback
  is not running the chain) does the newest wait here: :meth:`poll` (or the next :meth:`update`)
  publishes it.

Wiring (control process): ``writer = FxChainWriter(block)`` once, then ``writer.attach(matcher)``: the
matcher calls :meth:`update` after each change of its chain, and the chain's current state is
published as the callback's starting point. Call :meth:`poll` now and then (every status tick).
"""

from __future__ import annotations

import math
import threading

import numpy as np

from pimodule.core.fx_specs import DISTORTION_MODES, SPECS
from pimodule.device.fx import twin_core as core
from pimodule.device.fx.twin_effects import ReverbTwin
from pimodule.device.rt import fft
from pimodule.device.rt import fxlayout as fx
from pimodule.device.rt import shared as L
from pimodule.device.rt.lowlevel import full_fence
from pimodule.device.rt.shm import Shared


def reverb_geometry(rate_hz: int) -> tuple[int, int]:
    """(partition, partitions) of the reverb twin at this rate (ReverbTwin's formulas)."""
    predelay = core.reverb_predelay(rate_hz)
    n = min(fx.MAX_PARTITION, 2 ** int(math.floor(math.log2(predelay))))
    n_ir = int(round(core.REVERB_IR_S * rate_hz))
    return n, -(-(predelay + n_ir - n) // n)


def doubles_needed(rate_hz: int, max_chunk: int) -> int:
    """The length ``D_FX`` needs (``Sizes.fx_floats``) for this device rate and max chunk."""
    n, p = reverb_geometry(rate_hz)
    return int(fx.layout(n, p, max_chunk)[16])


def _check_structure() -> None:
    names = tuple(SPECS)
    if names != fx.STAGE_NAMES:
        raise RuntimeError(f"the compiled fx chain knows the effects {fx.STAGE_NAMES}, the specs have {names}")
    for stage, expected in zip(fx.STAGE_NAMES, fx.PARAM_NAMES):
        got = tuple(s.name for s in SPECS[stage])
        if got != expected:
            raise RuntimeError(f"the compiled fx chain expects {stage} parameters {expected}, the specs have {got}")
    if tuple(DISTORTION_MODES) != fx.MODES:
        raise RuntimeError(f"the compiled fx chain's curves are {fx.MODES}, the specs have {DISTORTION_MODES}")


class FxChainWriter:
    """Publishes a ChainTwin's targets into the block for :func:`pimodule.device.rt.fxchain.process`."""

    def __init__(self, block: Shared):
        _check_structure()
        self.block = block
        ih = block.ih
        self.rate_hz = int(ih[L.I_DEVICE_RATE])
        self.max_chunk = int(ih[L.I_MAX_CHUNK])
        self.d = block.buf("D_FX")
        self.x = block.buf("I_FX")
        self.partition, self.n_partitions = reverb_geometry(self.rate_hz)
        need = doubles_needed(self.rate_hz, self.max_chunk)
        if self.d.shape[0] < need or self.x.shape[0] < fx.X_LEN:
            raise ValueError(
                f"the block's fx buffers are too small for the reverb at {self.rate_hz} Hz: D_FX holds "
                f"{self.d.shape[0]} doubles, it needs {need} (layout.Sizes(fx_floats=...))"
            )
        self._lock = threading.Lock()
        self._ir_key: tuple[float, float] | None = None
        self._ir_waiting: tuple[np.ndarray, bool] | None = None  # (spectra, immediate) until a slot is free
        self._published: dict[int, int] = {}  # IR generation -> slot, until the callback acknowledges it
        self._immediate = (0, -1)  # the last immediate IR's (generation, slot)
        self._configure()
        gen = int(self.x[fx.X_GEN])
        self._gen = gen + (gen & 1)
        self._imm = float(self.d[fx.R_IMM])

    # -- once ----------------------------------------------------------------------------------------------
    def _configure(self) -> None:
        """Constants, tables and geometry (the same numbers every time for this rate: rewriting them
        while the callback runs changes nothing it reads)."""
        d, x, n, p = self.d, self.x, self.partition, self.n_partitions
        d[fx.K_RATE] = float(self.rate_hz)
        d[fx.K_MAX_FREQ] = core.MAX_FREQ_RATIO
        j = 0
        for stage in fx.STAGE_NAMES:
            for spec in SPECS[stage]:
                d[fx.K_MIN + j], d[fx.K_MAX + j] = spec.min, spec.max
                d[fx.K_LOG + j] = 1.0 if spec.scale == "log" else 0.0
                if spec.scale == "log":
                    d[fx.K_LO + j], d[fx.K_HI + j] = math.log(spec.min), math.log(spec.max)
                d[fx.K_JUMP + j] = 1.0 if stage == "reverb" and spec.name in ReverbTwin.REBUILT else 0.0
                j += 1
        _, _, cos, sin, fade, *_ = fx.layout(n, p, self.max_chunk)
        cos_t, sin_t, perms = fft.tables(2 * n)
        d[cos : cos + cos_t.shape[0]] = cos_t
        d[sin : sin + sin_t.shape[0]] = sin_t
        t = (np.arange(n) + 0.5) / n
        d[fade : fade + n] = 0.5 - 0.5 * np.cos(np.pi * t)  # ReverbTwin's crossfade over one partition
        x[fx.X_REV : fx.X_REV + n] = perms[n]
        x[fx.X_N], x[fx.X_P] = n, p
        full_fence()
        x[fx.X_READY] = 1

    # -- targets ---------------------------------------------------------------------------------------------
    def update(self, chain, immediate: bool = False) -> None:
        """Publish ``chain``'s targets (a :class:`~pimodule.device.fx.twin_chain.ChainTwin`): the callback
        ramps to them from the next block. ``immediate``: the callback also takes the chain's current
        positions, weights and parameters as they are and installs its IR without a crossfade (the
        starting point; ChainTwin's ``immediate=True``)."""
        if int(chain.sample_rate) != self.rate_hz:
            raise ValueError(f"a chain at {chain.sample_rate} Hz for a block at {self.rate_hz} Hz")
        with self._lock:
            rec = np.zeros(fx.R_END - fx.R_TARGET)  # D_FX[R_TARGET:R_END]

            def at(field: int, k: int) -> int:
                return field - fx.R_TARGET + k

            mode = "tanh"
            for s, name in enumerate(fx.STAGE_NAMES):
                stage = chain.stages.get(name)
                if stage is None:  # not in this chain: off, never processed
                    continue
                j0, nj = fx.P_START[s], fx.P_COUNT[s]
                rec[at(fx.R_TARGET, j0) : at(fx.R_TARGET, j0 + nj)] = stage.target
                rec[at(fx.R_UNIT, j0) : at(fx.R_UNIT, j0 + nj)] = stage.unit
                rec[at(fx.R_PHYS, j0) : at(fx.R_PHYS, j0 + nj)] = [stage.effect.params[k] for k in fx.PARAM_NAMES[s]]
                rec[at(fx.R_WT, s)] = stage.weight_target
                rec[at(fx.R_W, s)] = stage.weight
                rec[at(fx.R_PRESENT, s)] = 1.0
                if name == "distortion":
                    mode = stage.effect.mode
            rec[at(fx.R_MODE, 0)] = float(fx.MODES.index(mode))
            if immediate:
                self._imm += 1.0
            rec[at(fx.R_IMM, 0)] = self._imm
            rec[at(fx.R_SMOOTH, 0)] = float(chain.smoothing_ms)
            if "reverb" in chain.stages:
                self._reverb(chain.stages["reverb"].effect, immediate)
            self._publish_record(rec)
            self._poll_locked()

    def _publish_record(self, rec: np.ndarray) -> None:
        d, x = self.d, self.x
        x[fx.X_GEN] = self._gen + 1  # odd: being written
        full_fence()
        d[fx.R_TARGET : fx.R_END] = rec
        full_fence()
        self._gen += 2
        x[fx.X_GEN] = self._gen

    # -- the reverb's IR -----------------------------------------------------------------------------------------
    def _reverb(self, effect: ReverbTwin, immediate: bool) -> None:
        key = (float(effect.params["decay_s"]), float(effect.params["damping_pct"]))
        if key == self._ir_key and not immediate:
            return
        self._ir_key = key
        h = self._spectra(effect, key)
        if h.shape != (self.n_partitions, self.partition + 1):
            raise ValueError(
                f"reverb spectra of shape {h.shape}: is the chain at the block's rate ({self.rate_hz} Hz)?"
            )
        waiting = self._ir_waiting
        self._ir_waiting = (h, immediate or (waiting is not None and waiting[1]))

    @staticmethod
    def _spectra(effect: ReverbTwin, key: tuple[float, float]) -> np.ndarray:
        """The partition spectra for ``key``: the twin's own (ChainTwin builds them when decay or
        damping change) when it holds that IR, else built here."""
        if getattr(effect, "_ir_key", None) == key:
            pending = getattr(effect, "_pending", None)
            h = pending[1] if pending is not None else getattr(effect, "_h", None)
            if h is not None:
                return h
        return effect.spectra(*key)

    def poll(self) -> bool:
        """Publish an IR that waited for a free slot; True when nothing waits."""
        with self._lock:
            return self._poll_locked()

    def _poll_locked(self) -> bool:
        if self._ir_waiting is None:
            return True
        d, x = self.d, self.x
        # slots the callback may read: the installed and the incoming IR, and those of publications it
        # has not acknowledged (it may be taking one of them right now)
        seen = int(x[fx.X_IR_SEEN])
        full_fence()
        nxt = int(x[fx.X_IR_NEXT])
        full_fence()
        cur = int(x[fx.X_IR_CUR])
        self._published = {g: s for g, s in self._published.items() if g > seen}
        busy = {cur, nxt, *self._published.values()}  # (an unacknowledged immediate IR's slot among them)
        free = [s for s in range(fx.N_SLOTS) if s not in busy]
        if not free:
            return False  # until the callback takes what waits for it
        slot = free[0]
        h, immediate = self._ir_waiting
        n, p = self.partition, self.n_partitions
        pm = p * (n + 1)
        base = fx.layout(n, p, self.max_chunk)[15] + 2 * slot * pm
        d[base : base + 2 * pm] = np.ascontiguousarray(h, np.complex128).view(np.float64).reshape(-1)  # re, im
        # an immediate IR the callback has not taken yet is installed first, then this one fades in
        base = self._immediate[1] if not immediate and self._immediate[0] > seen else -1
        x[fx.X_IR_SLOT] = slot
        x[fx.X_IR_IMM] = int(immediate)
        x[fx.X_IR_BASE] = base
        full_fence()
        gen = int(x[fx.X_IR_GEN]) + 1
        x[fx.X_IR_GEN] = gen
        self._published[gen] = slot
        if immediate:
            self._immediate = (gen, slot)
        self._ir_waiting = None
        return True

    @property
    def waiting(self) -> bool:
        """An IR waits for the callback to take the previous one."""
        return self._ir_waiting is not None

    # -- wiring ------------------------------------------------------------------------------------------------------
    def attach(self, matcher) -> None:
        """Follow an :class:`~pimodule.device.fx.match.FxMatcher`: its chain's state now (immediate),
        then every change it makes."""
        matcher.on_targets = self.update
        self.update(matcher.chain, immediate=True)

    @property
    def n_resets(self) -> int:
        """Blocks whose output went non-finite (the chain's signal state was cleared)."""
        return int(self.x[fx.X_N_RESETS])
