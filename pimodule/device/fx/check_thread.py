"""fx mode: the module's check of a conditioned model's estimates against the audio, on its own thread.

The analyzer (pimodule.device.fx.mode) offers each estimate of a dry- or reference-conditioned
estimator with the windows it came from (L and R, at the estimator's rate); every ``interval_s``
this thread takes the newest offer and checks it with the twins. A dry model's
(:class:`pimodule.device.fx.check.SubsetCheck`: wet L, dry R): the on/off combinations rendered
and ranked against the wet window, the best ones' main parameters searched, effects that are not
heard switched off. A reference model's (:class:`pimodule.device.fx.style_check.ReferenceCheck`:
reference L, input R): only what brings R closer to the reference's sound than R as it is stays
on, at the reference's level. The checked chain is published
under ``/pimodule/fx/checked/…`` and, from the first check on, it is what matching plays: the
analyzer's estimates keep coming every ≤ 250 ms, the slower check (about half a second of work per
window on this machine) decides the chain. Numpy only; never in the audio callback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from pimodule.device.fx.check import CheckConfig, SubsetCheck
from pimodule.device.fx.style_check import ReferenceCheck
from pimodule.device.io.worker import BackgroundThread

log = logging.getLogger(__name__)
CHECKED = ("dry", "reference")  # the conditionings whose estimates can be checked against the audio


def _require_checkable(conditioning: str) -> None:
    if conditioning not in CHECKED:
        raise ValueError(f"nothing to check a {conditioning!r} estimate against")


def make_check(conditioning: str, sample_rate: int, config: CheckConfig | None = None) -> SubsetCheck | ReferenceCheck:
    """The module's check of a ``dry`` model's estimates (:class:`SubsetCheck`, with ``config``)
    or a ``reference`` model's (:class:`ReferenceCheck`) at ``sample_rate``; ValueError otherwise.
    Called as ``check(R, L, estimate)``."""
    _require_checkable(conditioning)
    if conditioning == "dry":
        return SubsetCheck(sample_rate, config if config is not None else CheckConfig())
    return ReferenceCheck(sample_rate)


class FxChecker(BackgroundThread):
    def __init__(
        self,
        interval_s: float = 1.0,
        *,
        follow: Callable[[dict], object] | None = None,
        publish: Callable[[dict], None] | None = None,
        config=None,
    ):
        super().__init__("pimodule-fx-check")
        self.interval_s = max(float(interval_s), 0.05)
        self.config = config if config is not None else CheckConfig()
        self.follow = follow
        self.publish = publish
        self._offer: tuple | None = None  # (sample rate, L, R, estimate, conditioning), newest wins
        self._checks: dict[tuple[str, int], SubsetCheck | ReferenceCheck] = {}  # per conditioning and rate
        self.latest: dict = {}
        self.n_checks = 0
        self.n_failed = 0
        self.last_check_ms = 0.0

    @property
    def driving(self) -> bool:
        """True once a check has decided the chain (matching follows the checks, not the estimates)."""
        return self.n_checks > 0

    def offer(
        self, sample_rate: int, left: np.ndarray, right: np.ndarray, estimate: dict, conditioning: str = "dry"
    ) -> None:
        """The analyzer's newest estimate and its windows (one reference store; any thread): for a
        ``dry`` model L is the wet signal and R its dry source, for a ``reference`` model L is the
        reference and R the input to restyle."""
        _require_checkable(conditioning)
        self._offer = (int(sample_rate), left, right, estimate, conditioning)

    def reset(self) -> None:
        """Another estimator: forget the offers and checks of the last one."""
        self._offer = None
        self.latest = {}
        self.n_checks = 0

    def check_once(self) -> dict | None:
        """Check the newest offer (None without one, or if the check fails: the chain stays)."""
        offer, self._offer = self._offer, None
        if offer is None:
            return None
        rate, left, right, estimate, conditioning = offer
        key = (conditioning, rate)
        if key not in self._checks:
            self._checks[key] = make_check(conditioning, rate, self.config)
        t0 = time.perf_counter()
        try:
            checked = self._checks[key](right, left, estimate)
        except (ValueError, KeyError, FloatingPointError) as err:
            self.n_failed += 1
            log.warning("fx check refused a window: %s", err)
            return None
        self.last_check_ms = (time.perf_counter() - t0) * 1e3
        self.latest = checked
        self.n_checks += 1
        if self.follow is not None:
            self.follow(checked)
        if self.publish is not None:
            self.publish(checked)
        return checked

    @property
    def pause_s(self) -> float:
        """The wait before the next check: ``interval_s``, and at least as long as the last check
        took, so the check never takes more than half a core (a dry check is about 2.3 s of a Pi 4
        core, docs/results.md)."""
        return max(self.interval_s, self.last_check_ms / 1e3)

    def _run(self) -> None:
        while not self._stop.wait(self.pause_s):
            try:
                self.check_once()
            except Exception:  # noqa: BLE001 - the checker must keep running
                log.exception("fx check failed")
