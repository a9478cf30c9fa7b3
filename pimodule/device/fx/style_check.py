"""The module's check of a reference-conditioned estimate (numpy twins, no torch).

A reference model hears input L, a recording with the sound to match, and input R, the signal to
restyle; it says which chain to play on R. The module checks that chain against the audio as the
laptop does (:func:`pimodule.laptop.fx.style.choose_for_reference`, the same rules): the chain
rendered on R's window, effects whose removal changes that render by less than
:data:`~pimodule.core.fx_specs.LABEL_DB` are off, and
:func:`~pimodule.device.fx.decide.simplest_closest` keeps only what brings R closer to the
reference's sound (:func:`style_features`, content-free) than R as it is. Never further from the
reference than playing R unchanged; the level is the reference's (RMS). The reference and the
input need not line up or be the same recording.
"""

from __future__ import annotations

import math

import numpy as np

from pimodule.core.fx_specs import LABEL_DB, SELECTABLE, SPECS
from pimodule.core.melscale import log_mel_db, unit_rms
from pimodule.device.fx.check import CheckConfig, SubsetCheck, checked_inputs
from pimodule.device.fx.decide import confidence, label, margin, simplest_closest


def style_features(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """What a reference's effects leave in any content, ``(3 * 64,)`` for a 1-D ``x``: per mel
    band, the mean log-mel relative to the whole spectrum's (an EQ's tilt and bumps), its spread
    over frames (the dynamics a compressor narrows) and its mean frame-to-frame change (what a
    reverb smooths), at unit RMS. The numpy twin of :func:`pimodule.laptop.fx.style.style_features`."""
    mel = np.maximum(log_mel_db(unit_rms(np.asarray(x, np.float64).reshape(-1)), sample_rate), -80.0)
    mean = mel.mean(0)
    spread = mel.std(0, ddof=1) if mel.shape[0] > 1 else np.zeros_like(mean)
    change = np.abs(np.diff(mel, axis=0)).mean(0) if mel.shape[0] > 1 else np.zeros_like(mean)
    return np.concatenate([mean - mean.mean(), spread, change])


class ReferenceCheck:
    """Checks a reference model's estimates at one sample rate (the twins of a :class:`SubsetCheck`)."""

    def __init__(self, sample_rate: int):
        self.sample_rate = int(sample_rate)
        self._twins = SubsetCheck(self.sample_rate, CheckConfig(n_candidates=0))
        #: of the last check: the choice in words, each combination's feature distance, the gain
        self.last: dict = {}

    def __call__(self, x: np.ndarray, reference: np.ndarray, estimate: dict) -> dict:
        """``estimate`` (``{effect: {"active", "probability", "params", ("mode")}}``, as the
        estimator describes it) for the input ``x`` to sound like ``reference`` (1-D, at this
        check's rate, any lengths ≥ 1024 samples): its selectable effects' ``active`` decided, each
        with ``confidence`` in words, the gain stage at the reference's level."""
        x, reference = checked_inputs(("input", x), ("reference", reference), estimate, same_length=False)
        rate, chain = self.sample_rate, self._twins.chain
        on = [n for n in SELECTABLE if estimate[n].get("active")]
        full, change = self._twins.removal_changes(x, estimate, on)
        kept = tuple(n for n in on if change[n] >= LABEL_DB)  # an effect left off changes nothing
        target = style_features(reference, rate)
        renders = {}

        def distance_of(sub: tuple) -> tuple[float, float]:
            r = renders[sub] = full if list(sub) == on else chain(x, estimate, list(sub))
            d = float(np.abs(style_features(r, rate) - target).mean())
            return d, d

        picked, scores = simplest_closest(kept, distance_of)
        out_rms = float(np.sqrt(np.mean(np.square(renders[picked]))))
        ref_rms = float(np.sqrt(np.mean(np.square(reference))))
        gain_db = float(SPECS["gain"]["gain_db"].clamp(20 * math.log10(ref_rms / (out_rms + 1e-12) + 1e-12)))
        self.last = {"choice": label(picked, kept), "candidates": scores, "gain_db": gain_db}
        out = {name: dict(item) for name, item in estimate.items()}
        for name in SELECTABLE:
            on_now = name in picked
            out[name]["active"] = on_now
            p = float(estimate[name].get("probability", 1.0 if name in on else 0.0))
            out[name]["confidence"] = confidence(
                on_now, change.get(name, 0.0), margin(scores, picked, name) if on_now else 0.0, p, True
            )
        gain = dict(out.get("gain", {"params": {}}))
        out["gain"] = {**gain, "active": True, "params": {**gain.get("params", {}), "gain_db": gain_db}}
        return out
