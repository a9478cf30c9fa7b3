"""The module's check of a dry-conditioned estimate against the audio (numpy twins, no torch).

The estimator's parameters sound close but leave the re-rendered chain about 2 dB (level-matched
log-mel) from the wet signal, more than the 1.5 dB that decides whether an effect is heard, so
its on/off decisions cannot simply be re-scored. With the dry signal at hand the module does a
small version of the laptop's analysis by synthesis (:mod:`pimodule.laptop.fx.refine`), with a
gradient-free search in place of the gradient fitting:

1. every on/off combination of the four selectable effects is rendered on the dry window with the
   estimated parameters (15 single-effect renders: the combinations share their prefixes) and
   ranked by its level-matched log-mel distance to the wet window, less ``prior`` times the
   estimator's log-likelihood of the combination;
2. the ``n_candidates`` best get their :data:`SEARCHED` parameters fitted by a coordinate search
   (each step size in turn, each parameter a step up or down in its [0, 1] position, kept when the
   distance drops; the effects before the changed one are not rendered again);
3. the closest candidate (less ``choice_prior`` times its log-likelihood) wins, and an effect whose
   fitted stage changes the sound by less than :data:`~pimodule.core.fx_specs.LABEL_DB` is switched
   off: the definition of heard the estimator was trained on (:mod:`pimodule.laptop.fx.batch`);
   a fitted reverb, weaker than the one it stands for, by less than
   :data:`~pimodule.device.fx.decide.PRUNE_DB` (0.8 dB). The rules that decide are
   :mod:`pimodule.device.fx.decide`'s, shared with the laptop.

With ``n_candidates = 0`` it decides on the estimate's own values, and equals ``refine`` with
``steps=0, n_candidates=1`` (tests/device/fx/test_twin_check.py: the same decisions). The daemon runs it
on its own thread (pimodule.device.fx.check_thread, ``fx.check``); ``pimodule eval fx --check`` scores
it; ``pimodule bench`` times it. The filterbank sum avoids BLAS, whose threads would compete with
the audio callback.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import scipy.fft

from pimodule.core.fx_specs import DISTORTION_MODES, SELECTABLE, SPECS
from pimodule.core.melscale import log_mel_db, unit_rms
from pimodule.device.fx import twin_core as core
from pimodule.device.fx.decide import confidence, effect_costs, heard, label, margin, simplest_closest
from pimodule.device.fx.twin_effects import make_twin

FFT_SIZES = (256, 512, 1024, 2048)  # of the multi-resolution STFT distance (= the laptop's)


def _stft_mag(x: np.ndarray, n_fft: int) -> np.ndarray:
    """|STFT| as torch.stft computes it (centred, reflect padding, periodic Hann, hop n_fft/4)."""
    hop = n_fft // 4
    pad = np.pad(x, (n_fft // 2, n_fft // 2), mode="reflect")
    n_frames = 1 + (pad.shape[-1] - n_fft) // hop
    idx = np.arange(n_fft)[None] + hop * np.arange(n_frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    spec = np.fft.rfft(pad[idx] * window, axis=-1)
    return np.maximum(np.sqrt(spec.real**2 + spec.imag**2 + 1e-14), 1e-7)


def mrstft(a: np.ndarray, b: np.ndarray) -> float:
    """Multi-resolution STFT distance of ``a`` to ``b`` (1-D; spectral convergence + mean abs log
    magnitude, averaged over :data:`FFT_SIZES`): pimodule.laptop.fx.losses.mrstft in numpy."""
    total = 0.0
    for n_fft in FFT_SIZES:
        s_hat, s = _stft_mag(a, n_fft), _stft_mag(b, n_fft)
        total += np.linalg.norm(s - s_hat) / np.linalg.norm(s) + np.mean(np.abs(np.log(s) - np.log(s_hat)))
    return float(total / len(FFT_SIZES))


def closed_form_gain_db(est: np.ndarray, target: np.ndarray) -> float:
    """The gain (dB, within the gain stage's range) that brings ``est`` to ``target``'s level: least squares
    on STFT magnitudes (FFT 1024), deaf to phase (pimodule.laptop.fx.refine's closed form)."""
    a, b = _stft_mag(np.asarray(est, np.float64), 1024), _stft_mag(np.asarray(target, np.float64), 1024)
    g = float((a * b).sum() / ((a * a).sum() + 1e-12))
    return float(SPECS["gain"]["gain_db"].clamp(20 * np.log10(max(g, 1e-6))))


#: every on/off combination of SELECTABLE, in itertools.product order, (16, 4)
SUBSETS = np.array(list(itertools.product((0, 1), repeat=len(SELECTABLE))), dtype=bool)
_BLOCK = 4096
PRIOR = 0.3  # weight of the estimator's log-likelihood of a combination (refine's search_prior)
LEVEL_ONLY = ("makeup_db", "output_gain_db")  # gains after an effect: a level-matched distance ignores them
#: the parameters the search adjusts: every one of the selectable effects except the level-only ones
#: (only the gains, threshold, ratio, drive, mix and decay: 4 points less selection on training sources)
SEARCHED = {name: tuple(s.name for s in SPECS[name] if s.name not in LEVEL_ONLY) for name in SELECTABLE}


@dataclass(frozen=True)
class CheckConfig:
    prior: float = PRIOR  # of the estimator's log-likelihood when ranking the combinations
    n_candidates: int = 3  # best-ranked combinations searched (0: decide on the estimate's values)
    steps: tuple[float, ...] = (0.3, 0.15, 0.08, 0.04, 0.02)  # step sizes of the search, in [0, 1] positions
    choice_prior: float = 0.1  # ... of the log-likelihood when choosing among the searched ones

    def __post_init__(self):
        if not all(math.isfinite(v) and v >= 0 for v in (self.prior, self.choice_prior, *self.steps)):
            raise ValueError("prior, choice_prior and steps must be finite numbers >= 0")
        if not 0 <= self.n_candidates <= len(SUBSETS):
            raise ValueError(f"n_candidates must be 0..{len(SUBSETS)}")


def subset_log_likelihood(probability: np.ndarray) -> np.ndarray:
    """The four selectable effects' probabilities -> the log-likelihood of each combination, (16,)."""
    p = np.clip(np.asarray(probability, np.float64), 1e-4, 1 - 1e-4)
    return np.where(SUBSETS, np.log(p), np.log1p(-p)).sum(-1)


def checked_inputs(a: tuple, b: tuple, estimate: dict, *, same_length: bool) -> tuple[np.ndarray, np.ndarray]:
    """Two named signals ``(name, audio)`` as 1-D float64, or ValueError (shorter than 1024
    samples, not finite, lengths that differ when ``same_length``); KeyError when ``estimate``
    lacks a selectable effect."""
    (na, xa), (nb, xb) = a, b
    xa, xb = np.asarray(xa, np.float64).reshape(-1), np.asarray(xb, np.float64).reshape(-1)
    if min(xa.shape[0], xb.shape[0]) < 1024 or (same_length and xa.shape != xb.shape):
        equal = " equal and" if same_length else ""
        raise ValueError(f"{na} {xa.shape} and {nb} {xb.shape} must be{equal} >= 1024 samples")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(xb))):
        raise ValueError(f"{na} and {nb} must be finite")
    missing = [n for n in SELECTABLE if n not in estimate]
    if missing:
        raise KeyError(f"the estimate has no {', '.join(missing)}")
    return xa, xb


class SubsetCheck:
    """Checks estimates at one sample rate; keeps one twin per effect (reset for every render)."""

    def __init__(self, sample_rate: int, config: CheckConfig = CheckConfig()):
        self.sample_rate = int(sample_rate)
        self.config = config
        self._twins = {name: make_twin(name, self.sample_rate, 1) for name in ("eq", "compressor")}
        self._twins.update(
            {f"distortion/{m}": make_twin("distortion", self.sample_rate, 1, mode=m) for m in DISTORTION_MODES}
        )
        self._bands = core.reverb_bands(self.sample_rate)
        self._ir: tuple | None = None  # (key, its spectrum)
        #: of the last check: each combination's distance (dB), score and effects' changes (dB), the best
        self.last: dict = {}

    def _reverb(self, x: np.ndarray, params: dict) -> np.ndarray:
        """The reverb as one FFT convolution with the twin's impulse response (its partitioned
        convolution computes the same sum in steps of a partition)."""
        p = {s.name: s.clamp(params.get(s.name, s.default)) for s in SPECS["reverb"]}
        n_ir = self._bands.shape[-1] + core.reverb_predelay(self.sample_rate)
        n_fft = scipy.fft.next_fast_len(x.shape[-1] + n_ir - 1, real=True)
        key = (p["decay_s"], p["damping_pct"], n_fft)
        if self._ir is None or self._ir[0] != key:
            ir = core.reverb_ir(np, self._bands, self.sample_rate, p["decay_s"], p["damping_pct"])
            ir = np.concatenate([np.zeros(core.reverb_predelay(self.sample_rate)), ir])
            self._ir = (key, np.fft.rfft(ir, n_fft))
        wet = np.fft.irfft(np.fft.rfft(x, n_fft) * self._ir[1], n_fft)[: x.shape[-1]]
        mix = p["mix_pct"] / 100.0
        return (1.0 - mix) * x + mix * wet

    def _render(self, name: str, x: np.ndarray, item: dict) -> np.ndarray:
        if name == "reverb":
            return self._reverb(x, item["params"])
        key = f"distortion/{item.get('mode', 'tanh')}" if name == "distortion" else name
        twin = self._twins[key]
        twin.set_params(ramp=False, **item["params"])
        twin.reset()
        y = x[None].copy()
        for s in range(0, y.shape[-1], _BLOCK):
            twin.process(y[:, s : s + _BLOCK])
        return y[0]

    def _mel(self, x: np.ndarray) -> np.ndarray:
        return log_mel_db(unit_rms(x), self.sample_rate)

    def _fit(self, dry: np.ndarray, target: np.ndarray, bits: np.ndarray, estimate: dict):
        """Coordinate search of the :data:`SEARCHED` parameters of combination ``bits``, from the
        estimate's values: each step size in turn, each parameter tried a step up and down in its
        [0, 1] position, kept where the distance to ``target`` (log-mel) drops. Returns (items,
        distance dB, each effect's change dB)."""
        items = {
            n: {"params": dict(estimate[n]["params"]), "mode": estimate[n].get("mode", "tanh")} for n in SELECTABLE
        }
        on = [n for k, n in enumerate(SELECTABLE) if bits[k]]

        def run_from(i: int, x: np.ndarray) -> list[np.ndarray]:
            outs = []
            for name in on[i:]:
                x = self._render(name, x, items[name])
                outs.append(x if np.all(np.isfinite(x)) else np.zeros_like(x))
            return outs

        outs = run_from(0, dry)
        best = np.abs(self._mel(outs[-1] if outs else dry) - target).mean()
        for step in self.config.steps:
            for i, name in enumerate(on):
                x_in = dry if i == 0 else outs[i - 1]
                for pname in SEARCHED[name]:
                    spec = SPECS[name][pname]
                    u0 = float(spec.to_unit(items[name]["params"][pname]))
                    for u in (min(1.0, u0 + step), max(0.0, u0 - step)):
                        if u == u0:
                            continue
                        items[name]["params"][pname] = float(spec.from_unit(u))
                        trial = run_from(i, x_in)
                        d = np.abs(self._mel(trial[-1]) - target).mean()
                        if d < best:
                            best, outs[i:] = d, trial
                            break
                        items[name]["params"][pname] = float(spec.from_unit(u0))
        change = np.zeros(len(SELECTABLE))
        x_in = dry
        for name, out in zip(on, outs):
            change[SELECTABLE.index(name)] = np.abs(self._mel(out) - self._mel(x_in)).mean()
            x_in = out
        return items, float(best), change

    def __call__(self, dry: np.ndarray, wet: np.ndarray, estimate: dict) -> dict:
        """``estimate`` (``{effect: {"active", "probability", "params", ("mode")}}``, as the
        estimator describes it) checked against ``wet``, the chain's output for ``dry`` (1-D, the
        same length, at this check's rate): its selectable effects' ``active`` decided, and with
        a search (``n_candidates`` > 0) their searched parameters fitted."""
        dry, wet = checked_inputs(("dry", dry), ("wet", wet), estimate, same_length=True)
        target = self._mel(wet)
        # (audio, its log-mel, the changes of the effects switched on so far), level by level
        nodes = [(dry, self._mel(dry), np.zeros(len(SELECTABLE)))]
        for k, name in enumerate(SELECTABLE):
            grown = []
            for audio, mel, change in nodes:
                grown.append((audio, mel, change))
                out = self._render(name, audio, estimate[name])
                if not np.all(np.isfinite(out)):
                    out = np.zeros_like(out)
                out_mel = self._mel(out)
                on = change.copy()
                on[k] = np.abs(out_mel - mel).mean()
                grown.append((out, out_mel, on))
            nodes = grown
        distance = np.array([np.abs(mel - target).mean() for _, mel, _ in nodes])
        probability = {n: float(estimate[n]["probability"]) for n in SELECTABLE}
        ll = subset_log_likelihood([probability[n] for n in SELECTABLE])
        score = distance - self.config.prior * ll
        changes = np.stack([c for _, _, c in nodes])
        self.last = {"distance_db": distance, "score": score, "change_db": changes}
        items = {
            n: {"params": dict(estimate[n]["params"]), "mode": estimate[n].get("mode", "tanh")} for n in SELECTABLE
        }
        if self.config.n_candidates == 0:
            best = int(np.argmin(score))
        else:
            fits = [
                (self._fit(dry, target, SUBSETS[c], estimate), c)
                for c in np.argsort(score, kind="stable")[: self.config.n_candidates]
            ]
            (items, _, _), best = min(fits, key=lambda f: f[0][1] - self.config.choice_prior * ll[f[1]])
            self.last["fitted_db"] = {int(c): f[1] for f, c in fits}
        self.last["best"] = int(best)
        on = [n for k, n in enumerate(SELECTABLE) if SUBSETS[best][k]]
        decided, words, change, tried = self.decide(dry, wet, items, on, probability)
        out = {name: dict(item) for name, item in estimate.items()}
        for name in SELECTABLE:
            out[name]["params"] = items[name]["params"]
            out[name]["active"] = name in decided
            p = probability[name]
            out[name]["confidence"] = confidence(
                name in decided, change.get(name, 0.0), words.get(name, 0.0), p, name in tried or p >= 0.5
            )
        gain = dict(out.get("gain", {"params": {}}))
        gain["params"] = {**gain.get("params", {}), "gain_db": self.last["gain_db"]}
        out["gain"] = gain
        return out

    def with_level(self, dry: np.ndarray, wet: np.ndarray, estimate: dict) -> dict:
        """``estimate`` with its gain stage in closed form: its effects that are on, rendered on
        ``dry``, brought to ``wet``'s level (:func:`closed_form_gain_db`). A dry model is trained
        with the level matched (the effects judged on their own), so its gain output means nothing;
        this is the level its estimates reach the matcher with before the check's first result."""
        dry = np.asarray(dry, np.float64).reshape(-1)
        wet = np.asarray(wet, np.float64).reshape(-1)
        if dry.shape != wet.shape or not (np.all(np.isfinite(dry)) and np.all(np.isfinite(wet))):
            raise ValueError(f"dry {dry.shape} and wet {wet.shape} must be finite and of one length")
        on = [n for n in SELECTABLE if n in estimate and estimate[n].get("active")]
        gain_db = closed_form_gain_db(self.chain(dry, estimate, on), wet)
        out = dict(estimate)
        gain = dict(out.get("gain", {}))
        out["gain"] = {**gain, "active": True, "params": {**gain.get("params", {}), "gain_db": gain_db}}
        return out

    def chain(self, x: np.ndarray, items: dict, on) -> np.ndarray:
        """``x`` through the effects of ``items`` named in ``on`` (in chain order; a non-finite
        stage gives silence)."""
        for name in SELECTABLE:
            if name in on:
                x = self._render(name, x, items[name])
                if not np.all(np.isfinite(x)):
                    x = np.zeros_like(x)
        return x

    def removal_changes(self, x: np.ndarray, items: dict, on: list[str]) -> tuple[np.ndarray, dict[str, float]]:
        """``x`` through the chain of ``on``, and per effect how much switching it off changes that
        render (level-matched log-mel dB): what "heard" is measured by."""
        full = self.chain(x, items, on)
        full_mel = self._mel(full)
        return full, {
            n: float(np.abs(self._mel(self.chain(x, items, [m for m in on if m != n])) - full_mel).mean()) for n in on
        }

    def decide(self, dry: np.ndarray, wet: np.ndarray, items: dict, on: list[str], probability: dict | None = None):
        """The decisions on a fitted chain: effects whose removal changes its output by less than
        LABEL_DB are off; of the rest, :func:`simplest_closest` keeps what earns its place (never
        worse than the level alone; each effect's cost from the network's ``probability``, as
        refine's). Returns (the effects on, each one's margin: how much farther
        the render gets without it, the removal changes dB, the effects the fit had on); sets
        ``last["choice"]``, ``last["candidates"]`` and the gain in closed form (``last["gain_db"]``)."""
        full, change = self.removal_changes(dry, items, on)
        kept = tuple(n for n in on if heard(n, change[n]))
        target_u, target_mel = unit_rms(wet), self._mel(wet)
        renders = {}

        def distance_of(sub):
            r = renders[sub] = full if list(sub) == on else self.chain(dry, items, sub)
            return mrstft(unit_rms(r), target_u), float(np.abs(self._mel(r) - target_mel).mean())

        chosen, dist = simplest_closest(kept, distance_of, effect_costs(probability or {}))
        margins = {n: margin(dist, chosen, n) for n in chosen}
        self.last.update(choice=label(chosen, kept), candidates=dist, gain_db=closed_form_gain_db(renders[chosen], wet))
        return list(chosen), margins, change, on
