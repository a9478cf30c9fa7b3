"""The decisions on a fitted chain, the same on the module and the laptop (no torch).

Which effects of a chain fitted to a recording stay on (:func:`heard`: its removal changes the
chain's output enough), which of those earn their place against simpler chains and the level alone
(:func:`simplest_closest`, with each effect's cost from the network's belief, :func:`effect_costs`),
never worse than doing nothing, and each decision in words a musician reads (:func:`confidence`). The module's
check (:mod:`pimodule.device.fx.check`), the laptop's analysis by synthesis
(:mod:`pimodule.laptop.fx.refine`) and its reference match (:mod:`pimodule.laptop.fx.style`) use
them alike, so a chain is judged by one rule wherever it is estimated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

from pimodule.core.fx_specs import LABEL_DB

#: an effect whose removal changes the sound at least this much (level-matched log-mel dB) and takes
#: the render clearly away from the recording is "on, sure" (pimodule.laptop.fx.refine.confidence)
SURE_DB = 3.0
#: Per effect, how much a *fitted* stage must change its chain's output (level-matched log-mel dB)
#: to stay on, if not :data:`LABEL_DB` (:func:`heard`). A reverb fitted to a third-party one comes
#: out weaker than it (our tail is not a freeverb's or an FDN's): on tuning examples, reverbs that
#: changed the recording by 1.7-4.3 dB changed the fitted chain by 0.6-1.5 dB. 0.8: the most
#: cautious of the best values on 120 tuning examples (docs/results/experiments.md).
PRUNE_DB: Mapping[str, float] = MappingProxyType({"reverb": 0.8})


def heard(effect: str, change_db: float) -> bool:
    """Whether a fitted ``effect`` whose removal changes its chain's output by ``change_db`` is kept
    for the final decision (:data:`PRUNE_DB`, else :data:`LABEL_DB`)."""
    return change_db >= PRUNE_DB.get(effect, LABEL_DB)


def confidence(on: bool, change_db: float, margin: float, probability: float, tried: bool) -> str:
    """An effect's decision in words. On: "sure" when removing it changes the sound by at least
    :data:`SURE_DB` and takes the render clearly farther from the recording (``margin``, the
    normalised distance without it minus with it, at least 0.1), "probably" otherwise. Off: "sure"
    when neither the network (``probability`` < 0.5) nor the fit had it on, "probably" otherwise
    (``tried``)."""
    if on:
        return "on, sure" if change_db >= SURE_DB and margin >= 0.1 else "on, probably"
    return "off, probably" if tried or probability >= 0.5 else "off, sure"


#: what one more effect must earn: the normalised distance (the sum of the MRSTFT and log-mel
#: distances, each divided by the level alone's; 2 for the level alone) it must lower to stay
EFFECT_PENALTY = 0.04
#: ... less this much per unit of the network's logit for it (an effect the network is sure of
#: costs less, one it does not believe in more)
NETWORK_PRIOR = 0.02


def effect_costs(probability: dict, penalty: float = EFFECT_PENALTY, prior: float = NETWORK_PRIOR) -> dict:
    """Each effect's cost in :func:`simplest_closest` from the network's probabilities."""
    out = {}
    for name, p in probability.items():
        p = min(max(float(p), 1e-4), 1 - 1e-4)
        out[name] = penalty - prior * math.log(p / (1 - p))
    return out


def simplest_closest(effects, distance_of, costs: dict | None = None):
    """**Never worse than doing nothing**, and no effect that does not earn its place: from the
    effects of a fitted chain, drop one at a time (the drop that leaves the closest chain) while
    that does not take the render farther from the recording by more than the effect's cost
    (``costs``, :data:`EFFECT_PENALTY` by default), then keep the level alone unless the result is
    closer on both distances and overall. ``distance_of(subset)`` gives the (MRSTFT, log-mel dB)
    of the chain with only ``subset`` on, levels matched (the level alone: ``()``). Returns (the
    chosen subset, {subset: distances})."""
    costs = costs or {}
    seen: dict = {}

    def dist(sub):
        if sub not in seen:
            seen[sub] = tuple(float(v) for v in distance_of(sub))
        return seen[sub]

    m0, l0 = dist(())

    def key(sub):
        m, mel = dist(sub)
        if sub and (m > m0 or mel > l0):
            return math.inf
        return m / max(m0, 1e-12) + mel / max(l0, 1e-12) + sum(costs.get(e, EFFECT_PENALTY) for e in sub)

    current = tuple(effects)
    while current:
        drops = [tuple(e for e in current if e != d) for d in current]
        best = min(drops, key=key)
        if key(best) <= key(current):
            current = best
        else:
            break
    if key(()) <= key(current):
        current = ()
    return current, seen


def norm(dist: dict, sub) -> float:
    m0, l0 = dist[()]
    m, mel = dist[sub]
    return m / max(m0, 1e-12) + mel / max(l0, 1e-12)


def margin(dist: dict, chosen: tuple, effect: str) -> float:
    """How much farther (normalised distance) the render gets without ``effect`` (inf if not measured)."""
    without = tuple(e for e in chosen if e != effect)
    return norm(dist, without) - norm(dist, chosen) if without in dist else math.inf


def label(chosen: tuple, kept: tuple) -> str:
    """ "chain", "without reverb, eq", or "level only"."""
    if not chosen:
        return "level only"
    dropped = [e for e in kept if e not in chosen]
    return "chain" if not dropped else "without " + ", ".join(dropped)
