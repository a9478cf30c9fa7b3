"""The effect chain in torch: a flat [0, 1] parameter layout, random chains, rendering.

Order: eq -> compressor -> distortion -> reverb -> gain. A chain is ``active`` ``(batch, 5)`` (hard
0/1 for data, soft probabilities from the estimator), ``unit`` ``(batch, N_PARAMS)`` in [0, 1]
(mapped by each spec to physical units; the effects see physical units only) and the distortion
curve as ``mode_weights`` ``(batch, 3)`` (one-hot or soft).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pimodule.core.fx_specs import DISTORTION_MODES, EFFECT_NAMES, SPECS, toward_neutral
from pimodule.laptop.fx import effects

Tensor = torch.Tensor

PARAM_SLICES: dict[str, slice] = {}
_start = 0
for _name in EFFECT_NAMES:
    PARAM_SLICES[_name] = slice(_start, _start + len(SPECS[_name]))
    _start += len(SPECS[_name])
N_PARAMS = _start
N_EFFECTS = len(EFFECT_NAMES)
N_MODES = len(DISTORTION_MODES)
del _start, _name


@dataclass
class Chain:
    active: Tensor  # (batch, N_EFFECTS) in [0, 1]
    unit: Tensor  # (batch, N_PARAMS) in [0, 1]
    mode_weights: Tensor  # (batch, N_MODES), rows sum to 1

    @property
    def batch(self) -> int:
        return self.active.shape[0]

    def detach(self) -> Chain:
        return Chain(self.active.detach(), self.unit.detach(), self.mode_weights.detach())

    def hard(self) -> Chain:
        """Decisions: active when p >= 0.5, the most likely distortion curve."""
        mode = torch.nn.functional.one_hot(self.mode_weights.argmax(-1), N_MODES).to(self.unit.dtype)
        return Chain((self.active >= 0.5).to(self.unit.dtype), self.unit, mode)

    def to(self, dtype: torch.dtype) -> Chain:
        return Chain(self.active.to(dtype), self.unit.to(dtype), self.mode_weights.to(dtype))

    def rows(self, index: Tensor) -> Chain:
        """The examples picked by ``index`` (a boolean mask or indices)."""
        return Chain(self.active[index], self.unit[index], self.mode_weights[index])


def sample_chain(batch: int, generator: torch.Generator, p_active: float = 0.5, min_active: int = 1) -> Chain:
    """Random chains: each effect on with ``p_active`` (at least ``min_active`` on), uniform
    parameters in [0, 1], a random distortion curve."""
    active = (torch.rand(batch, N_EFFECTS, generator=generator) < p_active).float()
    for i in range(batch):
        while active[i].sum() < min_active:
            active[i, torch.randint(N_EFFECTS, (1,), generator=generator)] = 1.0
    unit = torch.rand(batch, N_PARAMS, generator=generator)
    mode = torch.randint(N_MODES, (batch,), generator=generator)
    return Chain(active, unit, torch.nn.functional.one_hot(mode, N_MODES).float())


def physical(name: str, unit: Tensor) -> dict[str, Tensor]:
    """One effect's parameters in physical units from the flat ``(batch, N_PARAMS)`` vector."""
    cols = unit[:, PARAM_SLICES[name]]
    return {s.name: s.from_unit(cols[:, i]) for i, s in enumerate(SPECS[name])}


def apply_effect(name: str, x: Tensor, sample_rate: int, chain: Chain) -> Tensor:
    """One effect of the chain, fully on, with the chain's parameters (and curve blend)."""
    params = physical(name, chain.unit)
    if name == "distortion":
        return effects.distortion_mix(x, sample_rate, mode_weights=chain.mode_weights, **params)
    return effects.EFFECTS[name](x, sample_rate, **params)


def apply_chain(x: Tensor, sample_rate: int, chain: Chain) -> Tensor:
    """Render ``x`` ``(batch, channels, samples)`` through the chain (soft weights blend each
    effect's output with its input, so the estimator's probabilities stay differentiable)."""
    y = x
    for i, name in enumerate(EFFECT_NAMES):
        w = chain.active[:, i]
        if not torch.any(w > 0):
            continue
        wet = apply_effect(name, y, sample_rate, chain)
        w = w[:, None, None]
        y = w * wet + (1.0 - w) * y
    return y


def describe(chain: Chain, index: int = 0) -> dict:
    """One example's chain as JSON-able ``{effect: {"active", "probability", "params", ...}}``."""
    out = {}
    for i, name in enumerate(EFFECT_NAMES):
        p = float(chain.active[index, i])
        params = {k: float(v[0]) for k, v in physical(name, chain.unit[index : index + 1]).items()}
        entry = {"active": p >= 0.5, "probability": round(p, 4), "params": params}
        if name == "distortion":
            entry["mode"] = DISTORTION_MODES[int(chain.mode_weights[index].argmax())]
        out[name] = entry
    return out


def with_strength(chain: Chain, strength: dict[str, float]) -> Chain:
    """``chain`` with each named effect's size moved to ``strength[effect]`` of its own, towards
    doing nothing (:func:`pimodule.core.fx_specs.toward_neutral`, every example); decisions kept."""
    unit = chain.unit.clone()
    for name, s in strength.items():
        if s >= 1.0 or name not in PARAM_SLICES:
            continue
        sl = PARAM_SLICES[name]
        for b in range(chain.batch):
            params = {k: float(v[0]) for k, v in physical(name, unit[b : b + 1]).items()}
            moved = toward_neutral(name, params, float(s))
            unit[b, sl] = torch.tensor(
                [float(spec.to_unit(moved[spec.name])) for spec in SPECS[name]], dtype=unit.dtype
            )
    return Chain(chain.active, unit, chain.mode_weights)
