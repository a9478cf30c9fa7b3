"""fx mode's matcher: the chain being matched, applied to input R in the audio callback by the
torch-free twins (pimodule.device.fx), its parameters ramped block by block. It follows the
analyzer's estimates (or the check's, pimodule.device.fx.check_thread) unless held
(``/pimodule/fx/hold``): then it keeps a chain pushed from a laptop (``pimodule estimate
--send``) or values set by hand (``/pimodule/fx/set``)."""

from __future__ import annotations

import math
import threading

import numpy as np

from pimodule.core.fx_specs import DISTORTION_MODES
from pimodule.device.fx.twin_chain import ChainTwin


class FxMatcher:
    """The estimated chain applied to input R in the callback (twin chain, in place).

    It follows the analyzer's estimates unless ``held``: a chain pushed from a laptop (``pimodule
    estimate --send``) or tweaked by hand (``/pimodule/fx/set``) stays until hold is released.
    The control side (analyzer, OSC) takes a lock; the callback never does."""

    def __init__(self, device_rate_hz: int, max_block: int, effects=None):

        kwargs = {} if effects is None else {"effects": effects}
        self.chain = ChainTwin(device_rate_hz, channels=1, max_block=max_block, **kwargs)
        for name in self.chain.stages:  # silent until the first estimate arrives
            self.chain.set_active(name, False, immediate=True)
        self._block = np.zeros((1, max_block), np.float64)
        self.matching = False
        self.held = False
        self._mode = "tanh"
        self._lock = threading.Lock()
        self.on_targets = None  # called with the chain after each change, under the lock (the compiled chain's writer)

    def apply(self, estimate: dict) -> None:
        """New targets (any control thread): parameters ramp in the callback."""
        with self._lock:
            self._apply(estimate)

    def _apply(self, estimate: dict) -> None:
        self.chain.apply(estimate)
        mode = estimate.get("distortion", {}).get("mode")
        if mode and mode != self._mode:
            self.chain.set_distortion_mode(mode)
            self._mode = mode
        self._notify()

    def _notify(self) -> None:
        if self.on_targets is not None:
            self.on_targets(self.chain)

    def follow(self, estimate: dict) -> bool:
        """An analyzer's estimate: applied unless the chain is held; True if applied."""
        with self._lock:
            if self.held:
                return False
            self._apply(estimate)
            return True

    def hold(self, on: bool) -> None:
        """Keep the chain as it is (True) or follow the estimates again (False)."""
        with self._lock:
            self.held = bool(on)

    def set_value(self, effect: str, name: str, value: float | str) -> float | str:
        """One value of the matched chain by hand, which then holds: ``active`` (0/1), ``mode``
        (a distortion curve) or a parameter in its physical unit (clamped to its spec). Returns
        what was applied; KeyError/ValueError (nothing changed) for an unknown name or bad value."""

        stage = self.chain._stage(effect)
        with self._lock:
            if name == "active":
                on = _number(value, name)
                self.chain.set_active(effect, bool(on))
                applied: float | str = float(bool(on))
            elif name == "mode":
                if effect != "distortion" or value not in DISTORTION_MODES:
                    raise ValueError(f"mode is the distortion's curve, one of {', '.join(DISTORTION_MODES)}")
                if value != self._mode:
                    self.chain.set_distortion_mode(str(value))
                    self._mode = str(value)
                applied = str(value)
            else:
                specs = stage.effect.specs
                if name not in specs:
                    raise KeyError(f"{effect} has no parameter {name!r} ({', '.join(['active', *specs.names])})")
                applied = float(specs[name].clamp(_number(value, name)))
                self.chain.set_params(effect, **{name: applied})
            self.held = True
            self._notify()
        return applied

    def matched(self) -> dict:
        """The chain being matched, as an estimate (its targets, which the callback ramps to)."""
        out = {}
        with self._lock:
            for effect, stage in self.chain.stages.items():
                specs = stage.effect.specs
                params = {s.name: float(s.from_unit(u)) for s, u in zip(specs, stage.target)}
                item = {"active": stage.weight_target >= 0.5, "params": params}
                if effect == "distortion":
                    item["mode"] = self._mode
                out[effect] = item
        return out

    def process(self, out: np.ndarray) -> None:
        """Real time: ``out`` (1-D float32) holds input R; replaced by R through the chain."""
        n = out.shape[0]
        block = self._block[:, :n]
        block[0] = out
        self.chain.process(block)
        out[:] = block[0]


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} needs a finite number, not {value!r}")
    return float(value)
