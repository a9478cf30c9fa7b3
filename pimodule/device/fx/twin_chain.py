"""A real-time effect chain of twins with per-block parameter smoothing (numpy only).

Targets arrive in physical units (from the estimator, OSC or CV); each block, every parameter's
position in [0, 1] (its spec's scale) moves a one-pole step towards its target, and the effects'
gains ramp linearly inside the block, so a jump of a target gives no audible step (zipper noise).
Switching an effect on or off crossfades its wet and dry signals. Parameters whose change needs
heavy work (the reverb's decay and damping: a new impulse response) are not smoothed: the thread
that sets them builds the new state and the effect crossfades to it, so ``process`` stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from pimodule.core.fx_specs import EFFECT_NAMES
from pimodule.device.fx.twin_effects import TwinEffect, make_twin


class _Stage:
    def __init__(self, effect: TwinEffect, active: bool):
        self.effect = effect
        self.unit = np.array([s.to_unit(effect.params[s.name]) for s in effect.specs], dtype=float)
        self.target = self.unit.copy()
        self.weight = float(active)
        self.weight_target = float(active)
        self.version = 0  # bumped by the control side after each new target
        self.seen = 0  # the version the audio side has reached

    def physical(self) -> dict[str, float]:
        return {s.name: float(s.from_unit(u)) for s, u in zip(self.effect.specs, self.unit)}


class ChainTwin:
    """Effects in chain order; ``process(block)`` works in place on ``(channels, n)`` floats."""

    def __init__(
        self,
        sample_rate: int,
        effects: Iterable[str] = EFFECT_NAMES,
        channels: int = 1,
        smoothing_ms: float = 20.0,
        distortion_mode: str = "tanh",
        max_block: int = 8192,
    ):
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.smoothing_ms = float(smoothing_ms)
        self.stages: dict[str, _Stage] = {}
        for name in effects:
            twin = make_twin(name, sample_rate, channels, mode=distortion_mode)
            if getattr(twin, "REBUILT", ()):
                twin.rebuild_on_update = False  # set_params rebuilds on the control thread instead
            self.stages[name] = _Stage(twin, active=True)
        self._scratch = np.zeros((self.channels, max_block))

    def __contains__(self, name: str) -> bool:
        return name in self.stages

    def set_params(self, name: str, immediate: bool = False, **physical: float) -> None:
        """New targets for an effect's parameters (physical units, clamped to the spec)."""
        stage = self._stage(name)
        effect = stage.effect
        specs = effect.specs
        for k, v in physical.items():
            stage.target[specs.index(k)] = specs[k].to_unit(specs[k].clamp(v))
        stage.version += 1
        if immediate:
            stage.unit[:] = stage.target
            effect.set_params(ramp=False, **stage.physical())
        rebuilt = [k for k in getattr(effect, "REBUILT", ()) if k in physical]
        if rebuilt:  # not smoothed: the effect crossfades to what this thread builds now
            for k in rebuilt:
                i = specs.index(k)
                stage.unit[i] = stage.target[i]
                effect.params[k] = float(specs[k].from_unit(stage.target[i]))
            effect.rebuild(crossfade=not immediate)

    def set_active(self, name: str, active: bool, immediate: bool = False) -> None:
        stage = self._stage(name)
        stage.weight_target = float(active)
        if immediate:
            stage.weight = stage.weight_target

    def set_distortion_mode(self, mode: str) -> None:
        """Swap the waveshaper curve (a per-chain choice; takes effect at the next block)."""
        if "distortion" in self.stages:
            stage = self.stages["distortion"]
            new = make_twin("distortion", self.sample_rate, self.channels, mode=mode)
            new.set_params(ramp=False, **stage.effect.params)
            stage.effect = new

    def apply(self, estimate: Mapping[str, Mapping], immediate: bool = False) -> None:
        """Targets from an estimate ``{effect: {"active": bool, "params": {name: value}}}``."""
        for name in self.stages:
            if name not in estimate:
                continue
            entry = estimate[name]
            self.set_active(name, bool(entry.get("active", True)), immediate)
            if entry.get("params"):
                self.set_params(name, immediate, **entry["params"])

    def _stage(self, name: str) -> _Stage:
        try:
            return self.stages[name]
        except KeyError:
            raise KeyError(f"effect {name!r} is not in this chain ({', '.join(self.stages)})") from None

    def process(self, block: np.ndarray) -> np.ndarray:
        n = block.shape[-1]
        if self.smoothing_ms > 0:
            a = 1.0 - math.exp(-n / (self.smoothing_ms * 1e-3 * self.sample_rate))
        else:
            a = 1.0
        if self._scratch.shape[-1] < n:
            self._scratch = np.zeros((self.channels, n))
        for stage in self.stages.values():
            version = stage.version
            if version != stage.seen:  # moving towards a new target (a plain int compare when settled)
                stage.unit += a * (stage.target - stage.unit)
                if np.max(np.abs(stage.unit - stage.target)) < 1e-6:
                    stage.unit[:] = stage.target
                    stage.seen = version  # a target set meanwhile keeps the versions apart
                stage.effect.set_params(**stage.physical())
            w0 = stage.weight
            w1 = w0 + a * (stage.weight_target - w0)
            if abs(w1 - stage.weight_target) < 1e-4:
                w1 = stage.weight_target
            stage.weight = w1
            if w0 == 0.0 and w1 == 0.0:
                continue
            if w0 == 1.0 and w1 == 1.0:
                stage.effect.process(block)
                continue
            dry = self._scratch[:, :n]
            dry[...] = block
            stage.effect.process(block)
            w = w0 + (w1 - w0) * (np.arange(1, n + 1) / n)
            block *= w
            block += (1.0 - w) * dry
        return block
