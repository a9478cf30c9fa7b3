"""fx mode: blind effect estimation off the audio thread, live effect matching in it.

- The callback writes input L into :class:`InputHistory` (a preallocated circular buffer), and
  input R into a second one when the estimator is conditioned: a ``reference`` model reads L as
  the reference (a recording with the sound to match) and R as the signal to restyle, a ``dry``
  model reads L as the wet signal and R as its dry source.
- :class:`FxAnalyzer`, a background thread, every ``interval_s`` (≤ 250 ms) takes the last
  analysis window of L, resamples it to the estimator's rate, runs the exported estimator
  (``kind = fx``, onnxruntime), smooths the estimate (exponential average of the [0, 1]
  parameters and of the probabilities), keeps only the effects a blind or reference model is sure
  enough of (its calibrated thresholds, ``keep_confident``; a dry model's estimates are checked
  instead), publishes it with each effect's confidence in words (``latest``; OSC
  ``/pimodule/fx/...``) and hands it to the matcher's twin chain as new targets.
- :class:`FxMatcher` (pimodule.device.fx.match): in matching mode the callback runs input R
  through the torch-free twin chain (pimodule.device.fx), which ramps every parameter towards its
  target block by block (no zipper noise); otherwise R passes through. The chain follows the estimates unless it is held
  (``/pimodule/fx/hold``): then it keeps what a laptop pushed (``pimodule estimate --send``, e.g.
  an estimate refined by analysis by synthesis) or what was set by hand (``/pimodule/fx/set``).
- A dry model's inputs are lined up first: when L comes late on R (an external digital effect's
  latency, up to ``LAG_S``; :mod:`pimodule.device.fx.align`), R's window is taken that much
  earlier; a lag is adopted once found in two analyses running (status ``fx_lag_ms``). Every
  window's DC offset is taken out.
- A dry or reference model's estimates are also checked against the audio on a slower thread
  (pimodule.device.fx.check_thread, ``fx.check``); from the first check on, the checked chain is the
  one matching follows (a reference model's: only what brings input R closer to the reference's
  sound than R as it is, at the reference's level; the laptop's rules). Until then its estimates reach the matcher with their level set in closed
  form on the windows they came from (``SubsetCheck.with_level``): a dry model is trained with
  levels matched, so its own gain output means nothing (it was 10 dB off on the median example).
- Another estimator (``/pimodule/fx/model``) is loaded and checked by the analyzer's own thread
  and then replaces the current one with fresh input histories; a file that fails (unreadable,
  not kind ``fx``, non-finite output) is refused and the current estimator goes on.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from pimodule.core.modelfile import ModelFileError
from pimodule.device.fx.align import find_lag
from pimodule.device.fx.check import CheckConfig, SubsetCheck
from pimodule.device.fx.check_thread import FxChecker
from pimodule.device.fx.estimator import OnnxEstimator, keep_confident
from pimodule.device.fx.match import FxMatcher
from pimodule.device.io.worker import BackgroundThread

__all__ = [
    "FxAnalyzer",
    "FxMatcher",
    "InputHistory",
    "build",
    "checked_estimator",
    "consistent_snapshots",
    "osc_messages",
]

log = logging.getLogger(__name__)
SILENCE_RMS = 1e-4  # windows quieter than this (−80 dBFS) are not analysed
#: a dry model's inputs are lined up when L is late (or early) on R by at most this (a digital
#: effect's latency between them; pimodule.device.fx.align)
LAG_S = 0.05


class InputHistory:
    """The last ``n`` samples of one input: written by the audio callback, read by the analyzer."""

    def __init__(self, n: int):
        self.n = int(n)
        self._buf = np.zeros(self.n, np.float32)
        self._w = 0  # next write position
        self.n_written = 0
        self.seq = 0  # odd while a write is in progress (a seqlock: readers retry torn copies)

    def write(self, x: np.ndarray) -> None:
        self.seq += 1
        m = x.shape[0]
        if m >= self.n:
            self._buf[:] = x[m - self.n :]
            self._w = 0
        else:
            first = min(m, self.n - self._w)
            self._buf[self._w : self._w + first] = x[:first]
            self._buf[: m - first] = x[first:]
            self._w = (self._w + m) % self.n
        self.n_written += m
        self.seq += 1

    def snapshot(self) -> np.ndarray:
        """The last ``n`` samples in time order (a copy; off the audio thread; may be torn by a
        concurrent write: :func:`consistent_snapshots` retries until it is not)."""
        w = self._w
        return np.concatenate([self._buf[w:], self._buf[:w]])


def consistent_snapshots(histories, tries: int = 50):
    """Snapshots of histories that the callback writes in step (L and R of one block), taken with
    no write in between and at the same sample count, so a dry signal stays time-aligned with the
    wet one; None if every try overlapped a write (the next analysis tries again)."""
    for _ in range(tries):
        before = [h.seq for h in histories]
        if any(s % 2 for s in before):
            time.sleep(0)
            continue
        counts = [h.n_written for h in histories]
        out = [h.snapshot() for h in histories]
        if [h.seq for h in histories] == before and len(set(counts)) == 1:
            return out
        time.sleep(0)
    return None


class FxAnalyzer(BackgroundThread):
    """Runs the estimator on the last window of input L every ``interval_s`` (see the module doc)."""

    def __init__(
        self,
        estimator_path: Path,
        device_rate_hz: int,
        *,
        interval_s: float = 0.25,
        smoothing: float = 0.5,
        matcher: FxMatcher | None = None,
        on_estimate: Callable[[dict], None] | None = None,
        is_active: Callable[[], bool] = lambda: True,
        checker=None,
    ):
        super().__init__("pimodule-fx")
        #: checks a dry model's estimates against the audio (pimodule.device.fx.check_thread.FxChecker)
        self.checker = checker
        self.device_rate_hz = int(device_rate_hz)
        self.interval_s = min(float(interval_s), 0.25)
        self.smoothing = float(smoothing)
        self.matcher = matcher
        self.on_estimate = on_estimate
        self.is_active = is_active
        #: called with (history, other_history) when a new estimator brings new histories
        self.on_histories: Callable[[InputHistory, InputHistory | None], None] | None = None
        #: called with a message when a requested estimator is refused
        self.on_error: Callable[[str], None] | None = None
        self.n_runs = 0
        self.n_refused = 0
        self.last_run_ms = 0.0
        self.last_error = ""
        self._pending: Path | None = None
        self._install(checked_estimator(Path(estimator_path)))

    def _install(self, estimator) -> None:
        """Fresh histories (handed to ``on_histories``) for ``estimator``, which is set last: whoever
        sees the new estimator (``name``, status) sees its histories in place too."""
        g = math.gcd(estimator.sample_rate, self.device_rate_hz)
        self._up, self._down = estimator.sample_rate // g, self.device_rate_hz // g
        window_s = estimator.window / estimator.sample_rate
        # a dry model's histories reach LAG_S further back, for lining up a late wet input
        extra_s = LAG_S if estimator.conditioning == "dry" else 0.0
        n_history = int(math.ceil((window_s + extra_s) * self.device_rate_hz)) + 64
        self.lag = 0  # samples at the estimator's rate that input L is late on input R (dry model)
        self._lag_seen = 0  # the lag found last time, adopted once found twice in a row
        self.history = InputHistory(n_history)
        #: input R, for a dry- or reference-conditioned estimator (None when blind)
        self.other_history = InputHistory(n_history) if estimator.conditioning != "blind" else None
        self.latest: dict = {}
        self._smoothed: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        #: a dry model's estimates get their level in closed form from the windows they came from
        self._leveller = (
            SubsetCheck(estimator.sample_rate, CheckConfig(n_candidates=0)) if estimator.conditioning == "dry" else None
        )
        if self.checker is not None:
            self.checker.reset()
        if self.on_histories is not None:
            self.on_histories(self.history, self.other_history)
        self.estimator = estimator
        if estimator.warning:
            log.warning("fx: %s", estimator.warning)

    @property
    def name(self) -> str:
        """The estimator in use (its model file's name)."""
        return self.estimator.info.name

    def request_estimator(self, path: Path) -> None:
        """Load ``path`` on the analyzer's thread at its next wake-up (see :meth:`swap_estimator`)."""
        self._pending = Path(path)

    def swap_estimator(self, path: Path) -> bool:
        """Load and check another estimator, then use it with fresh (empty) input histories; the
        first estimate comes once a whole window has been heard. On failure the current one stays."""
        try:
            estimator = checked_estimator(Path(path))
        except (ModelFileError, ValueError, OSError) as err:
            self.n_refused += 1
            self.last_error = f"fx model {Path(path).name!r} refused: {err}"
            log.error("%s", self.last_error)
            if self.on_error is not None:
                self.on_error(self.last_error)
            return False
        self._install(estimator)
        log.info("fx: estimator %s (%s) in use", self.name, estimator.conditioning)
        return True

    def _resampled(self, snapshot: np.ndarray) -> np.ndarray | None:
        """The history at the estimator's rate, its DC offset taken out; None if silent or bad."""
        x = snapshot.astype(np.float64)
        if not np.all(np.isfinite(x)) or np.sqrt(np.mean(x * x)) < SILENCE_RMS:
            return None
        y = resample_poly(x, self._up, self._down) if self._up != self._down else x
        return y - y.mean()

    def _window(self, y: np.ndarray, late: int = 0) -> np.ndarray:
        """The analysis window ending ``late`` samples before the end of ``y``, ``(1, window)``."""
        window = self.estimator.window
        y = y[: len(y) - late] if late > 0 else y
        y = y[-window:] if y.shape[0] >= window else np.pad(y, (window - y.shape[0], 0))
        return y[None].astype(np.float32)

    @property
    def lag_ms(self) -> float:
        """How late input L is on input R, as lined up (ms; a dry model only)."""
        return 1000.0 * self.lag / self.estimator.sample_rate

    def _line_up(self, wet: np.ndarray, dry: np.ndarray) -> None:
        """Follow how late input L is on input R (an external digital effect's latency; at most
        :data:`LAG_S`): a lag is adopted once the same one is found in two analyses running."""
        rate = self.estimator.sample_rate
        n = self.estimator.window + int(LAG_S * rate)
        found = find_lag(dry[-n:], wet[-n:], rate, max_lag_s=LAG_S)
        if found.found:
            if found.samples == self._lag_seen and found.samples != self.lag:
                self.lag = found.samples
                log.info("fx: input L is %.1f ms late on input R: lined up", self.lag_ms)
            self._lag_seen = found.samples

    def analyse_once(self) -> dict | None:
        """One estimate from the current history (None when an input it needs is silent)."""
        if self.other_history is None:
            pair = (self.history.snapshot(), None)
        elif self.estimator.conditioning == "dry":  # wet and dry from the same blocks
            pair = consistent_snapshots((self.history, self.other_history))
        else:  # a reference need not line up with the input
            pair = (self.history.snapshot(), self.other_history.snapshot())
        if pair is None or any(h is not None and h.n_written < h.n for h in (self.history, self.other_history)):
            return None  # torn, or not a whole window heard yet
        wet = self._resampled(pair[0])
        dry = self._resampled(pair[1]) if pair[1] is not None else None
        if wet is None or (self.other_history is not None and dry is None):
            return None
        if self.estimator.conditioning == "dry":
            self._line_up(wet, dry)
        late = self.lag
        y = self._window(wet, max(-late, 0))  # L early on R: an earlier window of L
        other = self._window(dry, max(late, 0)) if dry is not None else None
        t0 = time.perf_counter()
        active, mode, unit = self.estimator.run(y, other)
        self.last_run_ms = (time.perf_counter() - t0) * 1e3
        new = (active[0].astype(np.float64), mode[0].astype(np.float64), unit[0].astype(np.float64))
        if self._smoothed is None:
            self._smoothed = new
        else:
            a = self.smoothing
            self._smoothed = tuple((1 - a) * old + a * cur for old, cur in zip(self._smoothed, new))
        described = self.estimator.describe(*self._smoothed)
        conditioning = self.estimator.conditioning
        if conditioning != "dry":  # until a check decides: keep what it is sure of
            estimate = keep_confident(described, self.estimator.keep, self.estimator.strength)
        else:  # a dry model's gain output means nothing: the level in closed form
            estimate = self._leveller.with_level(other[0], y[0], described)
        self.latest = estimate
        self.n_runs += 1
        checker = self.checker if conditioning != "blind" else None  # a blind one has nothing to check against
        if checker is not None:  # the check decides the chain from its first result on
            checker.offer(
                self.estimator.sample_rate,
                y[0],
                other[0],
                estimate if conditioning == "dry" else described,
                conditioning,
            )
        if self.matcher is not None and not (checker is not None and checker.driving):
            self.matcher.follow(estimate)
        if self.on_estimate is not None:
            self.on_estimate(estimate)
        return estimate

    def start(self) -> None:
        super().start()
        if self.checker is not None:
            self.checker.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        if self.checker is not None:
            self.checker.stop(timeout_s)
        super().stop(timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            pending, self._pending = self._pending, None
            if pending is not None:
                self.swap_estimator(pending)
            if not self.is_active():
                continue
            try:
                self.analyse_once()
            except Exception:  # noqa: BLE001 - the analyzer must keep running
                log.exception("fx estimation failed")


def checked_estimator(path: Path):
    """An :class:`OnnxEstimator` whose outputs on a test window have the chain's shapes, are
    finite and lie in [0, 1]; ModelFileError otherwise."""

    estimator = OnnxEstimator(path)
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((1, estimator.window))).astype(np.float32)
    try:
        outputs = estimator.run(x, x if estimator.conditioning != "blind" else None)
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelFileError(f"{path}: the estimator fails on a test window ({err})") from err
    n_params = len(estimator.info.controls)
    shapes = [o.shape for o in outputs]
    if shapes[0] != (1, len(estimator.chain)) or shapes[2] != (1, n_params):
        raise ModelFileError(f"{path}: output shapes {shapes} do not match its chain")
    if not all(np.all(np.isfinite(o)) and np.all((o >= 0) & (o <= 1)) for o in outputs):
        raise ModelFileError(f"{Path(path).name}: non-finite or out-of-range output on a test window")
    return estimator


def osc_messages(estimate: dict, prefix: str = "/pimodule/fx") -> list[tuple[str, tuple]]:
    """``/pimodule/fx/<effect>/active i``, ``…/probability f``, ``…/mode s``, ``…/confidence s``,
    ``…/strength f`` (a kept blind estimate applied at part of its size), ``…/<param> f``
    (no probability for a chain without one: the matched chain, under ``/pimodule/fx/matched``)."""
    out = []
    for effect, item in estimate.items():
        base = f"{prefix}/{effect}"
        out.append((f"{base}/active", (int(bool(item["active"])),)))
        if "probability" in item:
            out.append((f"{base}/probability", (float(item["probability"]),)))
        if "mode" in item:
            out.append((f"{base}/mode", (str(item["mode"]),)))
        if "confidence" in item:
            out.append((f"{base}/confidence", (str(item["confidence"]),)))
        if "strength" in item:
            out.append((f"{base}/strength", (float(item["strength"]),)))
        out += [(f"{base}/{name}", (float(value),)) for name, value in item["params"].items()]
    return out


def build(cfg, engine, store, max_block: int, publish, on_error=None) -> FxAnalyzer | None:
    """The daemon's fx mode from its config (``DaemonConfig``): the analyzer and matcher wired to
    ``engine``, or None without an estimator."""
    if not cfg.fx.model:
        return None
    try:
        path = store.resolve(cfg.fx.model)
        matcher = FxMatcher(cfg.audio.sample_rate_hz, max_block)
        checker = None
        if cfg.fx.check:
            checker = FxChecker(
                cfg.fx.check_interval_s,
                follow=matcher.follow,
                publish=lambda est: publish(osc_messages(est, "/pimodule/fx/checked")),
            )
        analyzer = FxAnalyzer(
            path,
            cfg.audio.sample_rate_hz,
            interval_s=cfg.fx.interval_s,
            smoothing=cfg.fx.smoothing,
            matcher=matcher,
            on_estimate=lambda est: publish(osc_messages(est)),
            is_active=lambda: engine.mode == "fx",
            checker=checker,
        )
    except (ModelFileError, ValueError, OSError) as err:
        log.warning("fx mode without an estimator (input passes through): %s", err)
        return None
    matcher.matching = cfg.fx.match
    engine.fx_matcher = matcher

    def attach(history, other_history) -> None:  # the callback writes the new histories from now on
        engine.fx_history, engine.fx_other_history = history, other_history

    attach(analyzer.history, analyzer.other_history)
    analyzer.on_histories = attach
    analyzer.on_error = on_error
    log.info(
        "fx: estimator %s (%s, window %.2f s at %d Hz), every %.0f ms",
        path.name,
        analyzer.estimator.conditioning,
        analyzer.estimator.window / analyzer.estimator.sample_rate,
        analyzer.estimator.sample_rate,
        1e3 * analyzer.interval_s,
    )
    return analyzer
