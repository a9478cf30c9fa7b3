"""Streaming twins of the effects (numpy/scipy, no torch).

A twin holds its state; ``set_params(**physical)`` takes the same keyword names as the torch
function (the spec table's names) and ``process(block)`` filters a ``(channels, n)`` float block in
place. Gains (gain, makeup, output gain, mix) ramp linearly across a block from the previous value
to the new one, so the chain's per-block parameter smoothing gives no steps.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.signal

from pimodule.core.fx_specs import DISTORTION_MODES, SPECS
from pimodule.device.fx import twin_core as core

try:  # the C kernel behind scipy.signal.sosfilt, in place: ~20x less overhead per small block
    from scipy.signal._sosfilt import _sosfilt as _sosfilt_in_place
except ImportError:  # a scipy that moved it: the public function (same numbers)
    _sosfilt_in_place = None


def _db_to_amp(db: float) -> float:
    return 10.0 ** (db / 20.0)


class _Ramp:
    """A per-block linear ramp of one scalar from its previous value to a new one."""

    def __init__(self, value: float):
        self.value = float(value)
        self.target = float(value)

    def block(self, n: int) -> np.ndarray | float:
        if self.target == self.value:
            return self.value
        ramp = self.value + (self.target - self.value) * (np.arange(1, n + 1) / n)
        self.value = self.target
        return ramp


class TwinEffect:
    name = ""

    def __init__(self, sample_rate: int, channels: int = 1):
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.specs = SPECS[self.name]
        self.params = {s.name: float(s.default) for s in self.specs}

    def set_params(self, ramp: bool = True, **params: float) -> None:
        """New physical parameters (clamped to the spec); ``ramp=False`` jumps gains at once."""
        for k, v in params.items():
            self.params[k] = self.specs[k].clamp(v)
        self._update()
        if not ramp:
            for r in self.__dict__.values():
                if isinstance(r, _Ramp):
                    r.value = r.target

    def _update(self) -> None:  # recompute derived coefficients
        pass

    def process(self, block: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reset(self) -> None:
        pass


class GainTwin(TwinEffect):
    name = "gain"

    def __init__(self, sample_rate: int, channels: int = 1):
        super().__init__(sample_rate, channels)
        self._gain = _Ramp(_db_to_amp(self.params["gain_db"]))

    def _update(self) -> None:
        self._gain.target = _db_to_amp(self.params["gain_db"])

    def process(self, block: np.ndarray) -> np.ndarray:
        block *= self._gain.block(block.shape[-1])
        return block


class EqTwin(TwinEffect):
    """The parametric EQ as a cascade of biquads (``scipy.signal.sosfilt`` with carried state)."""

    name = "eq"

    def __init__(self, sample_rate: int, channels: int = 1):
        super().__init__(sample_rate, channels)
        self._update()
        self.reset()

    def _update(self) -> None:
        self.sos = np.ascontiguousarray(core.eq_sos(self.sample_rate, self.params), dtype=np.float64)

    def reset(self) -> None:
        self._zi = np.zeros((self.channels, self.sos.shape[0], 2))  # (channels, sections, 2)

    def process(self, block: np.ndarray) -> np.ndarray:
        if _sosfilt_in_place is not None and block.dtype == np.float64 and block.ndim == 2 and block.flags.c_contiguous:
            _sosfilt_in_place(self.sos, block, self._zi)
            return block
        y, zi = scipy.signal.sosfilt(self.sos, block, axis=-1, zi=self._zi.transpose(1, 0, 2))
        self._zi[...] = zi.transpose(1, 0, 2)
        block[...] = y
        return block


class CompressorTwin(TwinEffect):
    """Peak detector (the instantaneous level), static curve, attack/release loop, makeup ramp."""

    name = "compressor"

    def __init__(self, sample_rate: int, channels: int = 1):
        super().__init__(sample_rate, channels)
        self._makeup = _Ramp(1.0)
        self._update()
        self._makeup.value = self._makeup.target
        self.reset()

    def _update(self) -> None:
        p = self.params
        self._at = float(core.one_pole_coef(p["attack_ms"], self.sample_rate))
        self._rt = float(core.one_pole_coef(p["release_ms"], self.sample_rate))
        self._makeup.target = _db_to_amp(p["makeup_db"])

    def reset(self) -> None:
        self._g = 1.0

    def process(self, block: np.ndarray) -> np.ndarray:
        p = self.params
        level_db = 10.0 * np.log10(np.mean(block * block, axis=0) + 1e-10)
        g_db = core.compressor_gain_db(np, level_db, p["threshold_db"], p["ratio"], p["knee_db"])
        target = (10.0 ** (g_db / 20.0)).tolist()
        g, at, rt = self._g, self._at, self._rt
        smooth = np.empty(len(target))
        for i, f in enumerate(target):  # attack while the gain falls, release while it rises
            g += (at if f < g else rt) * (f - g)
            smooth[i] = g
        self._g = g
        block *= smooth * self._makeup.block(block.shape[-1])
        return block


class DistortionTwin(TwinEffect):
    name = "distortion"

    def __init__(self, sample_rate: int, channels: int = 1, mode: str = "tanh"):
        if mode not in DISTORTION_MODES:
            raise ValueError(f"unknown distortion mode {mode!r}; one of {DISTORTION_MODES}")
        super().__init__(sample_rate, channels)
        self.mode = mode
        self._drive = _Ramp(_db_to_amp(self.params["drive_db"]))
        self._out = _Ramp(_db_to_amp(self.params["output_gain_db"]))

    def _update(self) -> None:
        self._drive.target = _db_to_amp(self.params["drive_db"])
        self._out.target = _db_to_amp(self.params["output_gain_db"])

    def process(self, block: np.ndarray) -> np.ndarray:
        n = block.shape[-1]
        block *= self._drive.block(n)
        block[...] = core.waveshape(np, block, self.mode)
        block *= self._out.block(n)
        return block


class ReverbTwin(TwinEffect):
    """Uniformly partitioned overlap-save convolution with a frequency-domain delay line.

    Partition size N <= the predelay, so the output has no latency: the IR shifted by N samples is
    convolved, and its block result is due one partition later. The mix ramps per block.

    A new decay or damping needs a new IR (a few ms of work): :meth:`rebuild` makes it on the
    calling thread and hands it over with one reference store; the audio thread crossfades the old
    and the new IR's output over the next partition. With ``rebuild_on_update`` (standalone use)
    ``set_params`` rebuilds; a :class:`~pimodule.device.fx.twin_chain.ChainTwin` turns that off and
    rebuilds from its control thread, so its callback never designs an IR.
    """

    name = "reverb"
    REBUILT = ("decay_s", "damping_pct")  # parameters that need a new IR

    def __init__(self, sample_rate: int, channels: int = 1, rebuild_on_update: bool = True):
        super().__init__(sample_rate, channels)
        predelay = core.reverb_predelay(self.sample_rate)
        self.partition = min(256, 2 ** int(math.floor(math.log2(predelay))))
        self._bands = core.reverb_bands(self.sample_rate)
        self._mix = _Ramp(self.params["mix_pct"] / 100.0)
        n_total = predelay + self._bands.shape[-1] - self.partition
        self.n_partitions = -(-n_total // self.partition)
        n = self.partition
        t = (np.arange(n) + 0.5) / n
        self._fade_in = 0.5 - 0.5 * np.cos(np.pi * t)  # raised cosine over one partition
        self.rebuild_on_update = rebuild_on_update
        self._ir_key = None
        self._pending: tuple[int, np.ndarray] | None = None  # (serial, spectra) from rebuild()
        self._serial = 0  # the installed IR's serial (audio thread)
        self._next_serial = 0  # the newest rebuild's serial (control thread)
        self.rebuild(crossfade=False)
        self.reset()

    def spectra(self, decay_s: float, damping_pct: float) -> np.ndarray:
        """The partitioned IR's spectra for these parameters (allocates; any thread)."""
        n, pre = self.partition, core.reverb_predelay(self.sample_rate)
        ir = core.reverb_ir(np, self._bands, self.sample_rate, decay_s, damping_pct)
        shifted = np.zeros(self.n_partitions * n)
        shifted[pre - n : pre - n + ir.shape[-1]] = ir
        return np.fft.rfft(shifted.reshape(self.n_partitions, n), 2 * n, axis=-1)

    def rebuild(self, crossfade: bool = True) -> None:
        """Make the IR of the current decay/damping (on the caller's thread) and install it: at
        once, or crossfaded by the audio thread over its next partition."""
        key = (self.params["decay_s"], self.params["damping_pct"])
        if key == self._ir_key:
            return
        self._ir_key = key
        h = self.spectra(*key)
        if crossfade:
            self._next_serial += 1
            self._pending = (self._next_serial, h)  # one reference store: the hand-over
        else:
            self._pending = None
            self._h = h

    def set_params(self, ramp: bool = True, **params: float) -> None:
        super().set_params(ramp, **params)
        if self.rebuild_on_update:
            self.rebuild(crossfade=ramp)

    def _update(self) -> None:
        self._mix.target = self.params["mix_pct"] / 100.0

    def reset(self) -> None:
        n, c = self.partition, self.channels
        self._fdl = np.zeros((self.n_partitions, c, n + 1), dtype=complex)
        self._newest = 0
        self._window = np.zeros((c, 2 * n))
        self._wet = np.zeros((c, n))
        self._pos = 0

    def _wet_of(self, h: np.ndarray) -> np.ndarray:
        n, p, k = self.partition, self.n_partitions, self._newest
        acc = np.einsum("pcf,pf->cf", self._fdl[k:], h[: p - k])
        if k:
            acc += np.einsum("pcf,pf->cf", self._fdl[:k], h[p - k :])
        return np.fft.irfft(acc, 2 * n, axis=-1)[:, n:]

    def _convolve_partition(self) -> None:
        n, p = self.partition, self.n_partitions
        self._newest = (self._newest - 1) % p  # fdl[newest + k] holds the spectrum k blocks old
        self._fdl[self._newest] = np.fft.rfft(self._window, axis=-1)
        pending = self._pending
        if pending is not None and pending[0] != self._serial:
            old = self._wet_of(self._h)
            self._h = pending[1]
            self._serial = pending[0]
            new = self._wet_of(self._h)
            self._wet[...] = old + (new - old) * self._fade_in
        else:
            self._wet[...] = self._wet_of(self._h)
        self._window[:, :n] = self._window[:, n:]

    def process(self, block: np.ndarray) -> np.ndarray:
        n_total, n = block.shape[-1], self.partition
        mix = self._mix.block(n_total)
        start = 0
        while start < n_total:
            k = min(n - self._pos, n_total - start)
            seg = block[:, start : start + k]
            self._window[:, n + self._pos : n + self._pos + k] = seg
            m = mix if np.isscalar(mix) else mix[start : start + k]
            seg *= 1.0 - m
            seg += m * self._wet[:, self._pos : self._pos + k]
            self._pos += k
            start += k
            if self._pos == n:
                self._convolve_partition()
                self._pos = 0
        return block


TWINS = {
    "eq": EqTwin,
    "compressor": CompressorTwin,
    "distortion": DistortionTwin,
    "reverb": ReverbTwin,
    "gain": GainTwin,
}


def make_twin(name: str, sample_rate: int, channels: int = 1, mode: str = "tanh") -> TwinEffect:
    if name not in TWINS:
        raise KeyError(f"unknown effect {name!r}; known: {', '.join(TWINS)}")
    if name == "distortion":
        return DistortionTwin(sample_rate, channels, mode)
    return TWINS[name](sample_rate, channels)
