"""Training/evaluation examples: dry excerpts processed on the fly by random chains.

What counts as "in the chain" is what can be heard: an effect switched on whose output differs from
its input by less than :data:`INAUDIBLE_DB` (level-matched log-mel distance, so a compressor that
never reaches its threshold or a clipper that is never driven into clipping) is labelled off, one
that changes it by at least :data:`AUDIBLE_DB` is labelled on, and the examples whose effects fall
between the two are drawn again (a few times, then labelled by the midpoint); the audio is rendered
with the labelled chain, so an inaudible effect's level change does not linger. ``gain`` is the
chain's level stage: always on, 0 dB when the random chain had it off (the same audio), so chain
selection is about the four effects that colour the sound (:data:`SELECTABLE`).

An effect's change is measured one of two ways (:data:`LABELS`): ``stage``, what the effect does
to its own input (the default, what the shipped estimators learned), or ``removal``, how different
the chain's output would be without it. They differ where a later effect masks an earlier one:
a compressor before heavy clipping changes its input but hardly the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pimodule.core.fx_specs import (
    AUDIBLE_DB,
    DISTORTION_MODES,
    EFFECT_NAMES,
    INAUDIBLE_DB,
    LABEL_DB,
    SELECTABLE,
    SPECS,
)
from pimodule.laptop.fx import thirdparty
from pimodule.laptop.fx.chain import N_PARAMS, PARAM_SLICES, Chain, apply_effect, sample_chain
from pimodule.laptop.fx.losses import log_mel_db, mel_distance
from pimodule.laptop.fx.sources import DryCorpus

REDRAWS = 4  # tries at drawing a chain without effects between the two
_GAIN = EFFECT_NAMES.index("gain")
LABELS = ("stage", "removal")


@dataclass
class Batch:
    wet: torch.Tensor  # (batch, samples): what the estimator analyses (reference in style mode)
    other: torch.Tensor | None  # dry (dry mode) or the input to restyle (reference mode)
    source: torch.Tensor  # what the estimated chain is applied to
    target: torch.Tensor  # what that should sound like
    chain: Chain  # the ground truth (labelled by audibility)
    rendered: Chain | None = None  # the chain that made the audio (= chain unless kept as drawn)
    # (batch, len(SELECTABLE)): the effect is clearly on or clearly off (not between the two)
    clear: torch.Tensor | None = None
    # (batch, N_EFFECTS): how much each labelled-on effect changes the sound (level-matched log-mel
    # dB, the quantity the labels threshold; 0 where labelled off)
    change: torch.Tensor | None = None
    # (batch, N_EFFECTS) 0/1: the drawn chain labelled the other way, by removal (evaluation)
    removal: torch.Tensor | None = None


def _unit_rms(x: torch.Tensor) -> torch.Tensor:
    return x / (x.square().mean(-1, keepdim=True).sqrt() + 1e-9)


def render_stages(x: torch.Tensor, sample_rate: int, chain: Chain) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ``x`` ``(batch, samples)`` through a hard chain; also return how much each effect
    changed the sound, ``(batch, N_EFFECTS)`` level-matched log-mel dB (0 where off)."""
    y = x[:, None]
    change = torch.zeros(x.shape[0], len(EFFECT_NAMES), dtype=x.dtype)
    ref = None  # log-mel of the signal so far at unit RMS (each stage's output is the next's input)
    for i, name in enumerate(EFFECT_NAMES):
        on = chain.active[:, i] >= 0.5
        if not torch.any(on):
            continue
        wet = apply_effect(name, y[on], sample_rate, chain.rows(on))
        if name != "gain":  # = mel_distance(unit_rms(wet), unit_rms(input))
            if ref is None:
                ref = log_mel_db(_unit_rms(y[:, 0]), sample_rate)
            out = log_mel_db(_unit_rms(wet[:, 0]), sample_rate)
            change[on, i] = (out - ref[on]).abs().mean((-2, -1))
            ref = ref.clone()
            ref[on] = out
        y = y.clone()
        y[on] = wet
    return y[:, 0], change


def removal_change(x: torch.Tensor, sample_rate: int, chain: Chain, y: torch.Tensor, render=None) -> torch.Tensor:
    """How much the output ``y`` of hard ``chain`` on ``x`` differs from the chain's output without
    each selectable effect, ``(batch, N_EFFECTS)`` level-matched log-mel dB (0 where off; the
    gain stage is not measured). ``render(x, sample_rate, chain) -> y`` makes the chain's audio:
    the project's effects by default, another implementation's for audio that came from it."""
    render = render or (lambda a, sr, c: render_stages(a, sr, c)[0])
    change = torch.zeros(x.shape[0], len(EFFECT_NAMES), dtype=x.dtype)
    for name in SELECTABLE:
        i = EFFECT_NAMES.index(name)
        on = chain.active[:, i] >= 0.5
        if not torch.any(on):
            continue
        without = chain.rows(on)  # boolean rows are copies: switching the effect off is local
        without.active[:, i] = 0.0
        alt = render(x[on], sample_rate, without)
        change[on, i] = mel_distance(_unit_rms(alt), _unit_rms(y[on]), sample_rate)
    return change


def heard_effects(change: torch.Tensor) -> torch.Tensor:
    """``(batch, N_EFFECTS)`` bool: the effects whose measured ``change`` (dB) makes them count as
    on, at least :data:`LABEL_DB`; the gain stage always."""
    heard = change >= LABEL_DB
    heard[:, _GAIN] = True
    return heard


def removal_labels(x: torch.Tensor, sample_rate: int, chain: Chain, y: torch.Tensor, render=None) -> torch.Tensor:
    """``chain``'s on/off labels by :func:`removal_change` (the gain stage stays as it is)."""
    heard = heard_effects(removal_change(x, sample_rate, chain, y, render))
    return chain.active * heard.to(chain.active.dtype)


def _changes(x, sample_rate, chain, labels):
    """(audio, each effect's change) of hard ``chain`` on ``x`` under ``labels``."""
    y, change = render_stages(x, sample_rate, chain)
    if labels == "removal":
        change = removal_change(x, sample_rate, chain, y)
    return y, change


def _take_rows(chain: Chain, rows: torch.Tensor, new: Chain) -> Chain:
    def put(a, b):
        a = a.clone()
        a[rows] = b
        return a

    return Chain(put(chain.active, new.active), put(chain.unit, new.unit), put(chain.mode_weights, new.mode_weights))


def _level_stage(chain: Chain) -> Chain:
    """Hard decisions, with the gain stage always on (0 dB where it was off: the same audio)."""
    chain = chain.hard()
    active, unit = chain.active.clone(), chain.unit.clone()
    off = active[:, _GAIN] < 0.5
    unit[off, PARAM_SLICES["gain"]] = float(SPECS["gain"]["gain_db"].to_unit(0.0))
    active[:, _GAIN] = 1.0
    return Chain(active, unit, chain.mode_weights)


def audible_chain(
    x: torch.Tensor,
    sample_rate: int,
    chain: Chain,
    generator: torch.Generator | None = None,
    render_labelled: bool = True,
    labels: str = "stage",
) -> tuple[Chain, torch.Tensor, Chain]:
    """Label ``chain`` by what is audible on ``x`` (see the module doc); with a ``generator``, redraw
    the examples with effects between inaudible and audible. Returns (labelled chain, rendered x,
    the chain that rendered it): the labelled one, or with ``render_labelled=False`` the drawn one
    (every effect that was switched on, heard or not; evaluation keeps the drawn audio)."""
    return _audible(x, sample_rate, chain, generator, render_labelled, labels)[:3]


def _audible(x, sample_rate, chain, generator, render_labelled, labels="stage"):
    """:func:`audible_chain` plus which selectable effects are clearly on or off, and the labelled
    chain's changes."""
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {LABELS}, not {labels!r}")
    chain = _level_stage(chain)
    y, change = _changes(x, sample_rate, chain, labels)
    for _ in range(REDRAWS if generator is not None else 0):
        unclear = ((chain.active >= 0.5) & (change > INAUDIBLE_DB) & (change < AUDIBLE_DB)).any(-1)
        if not torch.any(unclear):
            break
        new = _level_stage(sample_chain(int(unclear.sum()), generator))
        fresh, fresh_change = _changes(x[unclear], sample_rate, new, labels)
        chain = _take_rows(chain, unclear, new)
        y, change = y.clone(), change.clone()
        y[unclear], change[unclear] = fresh, fresh_change
    heard = heard_effects(change)
    between = (chain.active >= 0.5) & (change > INAUDIBLE_DB) & (change < AUDIBLE_DB)
    clear = ~between[:, [EFFECT_NAMES.index(n) for n in SELECTABLE]]
    labelled = Chain(chain.active * heard.to(chain.active.dtype), chain.unit, chain.mode_weights)
    change = change * labelled.active
    if not render_labelled:
        return labelled, y, chain, clear, change
    dropped = ((chain.active >= 0.5) & ~heard).any(-1)
    if torch.any(dropped):  # an inaudible effect may still change the level: render without it,
        y = y.clone()  # so the labelled chain reproduces the audio exactly
        y[dropped] = render_stages(x[dropped], sample_rate, labelled.rows(dropped))[0]
    return labelled, y, labelled, clear, change


def from_dry(
    dry: np.ndarray | torch.Tensor,
    chain: Chain,
    sample_rate: int,
    conditioning: str,
    generator: torch.Generator | None = None,
    render_labelled: bool = True,
    labels: str = "stage",
) -> Batch:
    """``dry`` ``(batch, n_parts, samples)``; reference mode needs two parts (a, b). The chain is
    relabelled by audibility (on the part the estimator hears); a ``generator`` redraws unclear
    examples; see :func:`audible_chain` for ``render_labelled`` and ``labels``."""
    dry = torch.as_tensor(dry, dtype=torch.float32)
    with torch.no_grad():
        if conditioning == "reference":
            a, b = dry[:, 0], dry[:, 1]
            # rendered separately: the compressor links channels, the parts must stay independent
            chain, ref, rendered, clear, change = _audible(a, sample_rate, chain, generator, render_labelled, labels)
            tgt, _ = render_stages(b, sample_rate, rendered)
            return Batch(ref, b, b, tgt, chain, rendered, clear, change)
        x = dry[:, 0]
        chain, y, rendered, clear, change = _audible(x, sample_rate, chain, generator, render_labelled, labels)
    return Batch(y, x if conditioning == "dry" else None, x, y, chain, rendered, clear, change)


def foreign_change(x: np.ndarray, sample_rate: int, chain: thirdparty.ForeignChain, y: np.ndarray) -> torch.Tensor:
    """How much removing each of a third-party ``chain``'s effects changes its output ``y`` on
    ``x`` (level-matched log-mel dB), ``(N_EFFECTS,)``, 0 where the effect is not in the chain."""
    change = torch.zeros(len(EFFECT_NAMES))
    effects = chain.effects
    if not effects:
        return change
    alts = torch.from_numpy(np.stack([thirdparty.render(x, sample_rate, chain.without(e)) for e in effects]))
    ref = torch.from_numpy(np.asarray(y, np.float64))[None].expand(len(effects), -1)
    d = mel_distance(_unit_rms(alts.float()), _unit_rms(ref.float()), sample_rate)
    for e, v in zip(effects, d):
        change[EFFECT_NAMES.index(e)] = float(v)
    return change


def _foreign_mode(chain: thirdparty.ForeignChain) -> int:
    """The project's distortion curve nearest to a chain's distortion (for the curve's label)."""
    for name, p in chain.stages:
        if name == "distortion":
            if p.get("kind") == "Clipping":
                return DISTORTION_MODES.index("hard")
            return DISTORTION_MODES.index("tanh")
    return DISTORTION_MODES.index("tanh")


def foreign_batch(
    dry: np.ndarray, sample_rate: int, conditioning: str, families: tuple[str, ...], rng: np.random.Generator
) -> Batch:
    """Examples processed by third-party chains (:mod:`pimodule.laptop.fx.thirdparty`, each
    family's own ranges, level changes anywhere) instead of the project's: ``dry`` ``(batch,
    n_parts, samples)``. Labelled by what removing each effect changes (there are no parameters in
    the project's terms: ``unit`` is 0.5, usable by the audio objective, not the parameter one)."""
    n = dry.shape[0]
    wet = np.zeros((n, dry.shape[-1]), np.float32)
    target = np.zeros_like(wet)
    change = torch.zeros(n, len(EFFECT_NAMES))
    mode = torch.zeros(n, dtype=torch.long)
    for i in range(n):
        chain = thirdparty.draw(families[int(rng.integers(len(families)))], rng, sample_rate)
        heard_on = dry[i, 0]
        y = thirdparty.render(heard_on, sample_rate, chain)
        change[i] = foreign_change(heard_on, sample_rate, chain, y)
        wet[i] = y
        target[i] = thirdparty.render(dry[i, 1], sample_rate, chain) if conditioning == "reference" else y
        mode[i] = _foreign_mode(chain)
    heard = heard_effects(change)
    active = heard.float()
    clear = ~((change > INAUDIBLE_DB) & (change < AUDIBLE_DB))[:, [EFFECT_NAMES.index(e) for e in SELECTABLE]]
    chain = Chain(
        active, torch.full((n, N_PARAMS), 0.5), torch.nn.functional.one_hot(mode, len(DISTORTION_MODES)).float()
    )
    x = torch.from_numpy(np.ascontiguousarray(dry[:, -1 if conditioning == "reference" else 0]))
    w = torch.from_numpy(wet)
    t = torch.from_numpy(target) if conditioning == "reference" else w
    other = x if conditioning != "blind" else None
    return Batch(w, other, x, t, chain, chain, clear, change * active)


def peak_normalise(batch: Batch, rng: np.random.Generator, lo_db: float = -12.0, hi_db: float = -0.1) -> Batch:
    """The processed signals (``wet``, ``target``) scaled to a random peak level each, as a
    mastering or export step does: their level says nothing about the chain's gains."""

    def scaled(a: torch.Tensor) -> torch.Tensor:
        peak = a.abs().amax(-1, keepdim=True).clamp_min(1e-9)
        level = torch.from_numpy(10 ** (rng.uniform(lo_db, hi_db, size=(a.shape[0], 1)) / 20)).to(a.dtype)
        return a * level / peak

    same = batch.target is batch.wet
    batch.wet = scaled(batch.wet)
    batch.target = batch.wet if same else scaled(batch.target)
    return batch


def _cat(a: Batch, b: Batch) -> Batch:
    def cat(u, v):
        return None if u is None else torch.cat([u, v])

    chain = Chain(*(torch.cat([getattr(a.chain, k), getattr(b.chain, k)]) for k in ("active", "unit", "mode_weights")))
    wet = cat(a.wet, b.wet)
    target = wet if a.target is a.wet and b.target is b.wet else cat(a.target, b.target)
    return Batch(
        wet,
        cat(a.other, b.other),
        cat(a.source, b.source),
        target,
        chain,
        chain,
        cat(a.clear, b.clear),
        cat(a.change, b.change),
    )


def random_batch(
    corpus: DryCorpus,
    rng: np.random.Generator,
    generator: torch.Generator,
    conditioning: str,
    batch: int,
    n_samples: int,
    p_active: float,
    labels: str = "stage",
    foreign: tuple[str, ...] = (),
    foreign_share: float = 0.0,
    peak_level: bool = False,
) -> Batch:
    """A training batch: dry excerpts through random chains of the project's effects, and with
    ``foreign`` families a share ``foreign_share`` of them through third-party chains instead
    (:func:`foreign_batch`); with ``peak_level`` the processed signals are peak-normalised to
    random levels (:func:`peak_normalise`)."""
    parts = 2 if conditioning == "reference" else 1
    dry = corpus.excerpts(rng, batch, n_samples, parts)
    n_foreign = int(rng.binomial(batch, foreign_share)) if foreign and foreign_share > 0 else 0
    own = batch - n_foreign
    out = None
    if own:
        chain = sample_chain(own, generator, p_active)
        out = from_dry(dry[:own], chain, corpus.sample_rate, conditioning, generator, labels=labels)
    if n_foreign:
        alien = foreign_batch(dry[own:], corpus.sample_rate, conditioning, tuple(foreign), rng)
        out = alien if out is None else _cat(out, alien)
    return peak_normalise(out, rng) if peak_level else out


def selection_correct(predicted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """``(batch, len(SELECTABLE))`` bool: each selectable effect's on/off decision right."""
    cols = [EFFECT_NAMES.index(n) for n in SELECTABLE]
    return (predicted[:, cols] >= 0.5) == (truth[:, cols] >= 0.5)
