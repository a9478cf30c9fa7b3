"""What refine searches after the fit (:func:`pimodule.laptop.fx.refine.polish`): per effect, a
grid of parameter values around the fitted ones."""

from __future__ import annotations

import itertools
import math

import torch

from pimodule.core.fx_specs import EFFECT_NAMES, SPECS
from pimodule.laptop.fx.chain import PARAM_SLICES, Chain

#: per effect: parameter -> (how: "x" times or "+" plus the fitted value, those steps, and values
#: tried as they are)
POLISH = {
    "reverb": {
        "decay_s": ("x", (1.0, 1.5, 2.5), ()),
        "mix_pct": ("x", (1.0, 1.5, 2.0, 3.0, 5.0), (3.0, 6.0, 12.0, 25.0)),
    },
    "compressor": {"threshold_db": ("+", (0.0, -6.0, -12.0, 6.0), ()), "ratio": ("x", (1.0, 1.5, 2.5, 4.0), ())},
}


def polish_renders(effects) -> int:
    """How many renders the polish makes for ``effects`` at most."""
    return sum(math.prod(len(a[1]) + len(a[2]) for a in POLISH[e].values()) + 1 for e in effects)


def polish_grid(chain: Chain, effect: str) -> Chain | None:
    """``chain`` (one row) as its first row, then every point of ``effect``'s :data:`POLISH` grid
    around its values; None when the effect is off."""
    if chain.active[0, EFFECT_NAMES.index(effect)] < 0.5:
        return None
    specs = SPECS[effect]
    unit = chain.unit[0]
    axes = []
    for name, (how, steps, values) in POLISH[effect].items():
        spec, col = specs[name], PARAM_SLICES[effect].start + [sp.name for sp in specs].index(name)
        now = float(spec.from_unit(unit[col]))
        tried = [now * k if how == "x" else now + k for k in steps] + list(values)
        axes.append((col, sorted({float(spec.to_unit(spec.clamp(v))) for v in tried})))
    rows = [unit]
    for point in itertools.product(*(u for _, u in axes)):
        row = unit.clone()
        for (col, _), u in zip(axes, point):
            row[col] = u
        rows.append(row)
    return Chain(chain.active.expand(len(rows), -1), torch.stack(rows), chain.mode_weights.expand(len(rows), -1))
