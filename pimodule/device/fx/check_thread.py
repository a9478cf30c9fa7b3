"""fx mode: the module's check of a dry model's estimates against the audio, on its own thread.

The analyzer (pimodule.device.fx.mode) offers each estimate of a dry-conditioned estimator with
the windows it came from (wet L, dry R, at the estimator's rate); every ``interval_s`` this thread
takes the newest offer and checks it with the twins (:class:`pimodule.device.fx.check.SubsetCheck`:
the on/off combinations rendered and ranked against the wet window, the best ones' main
parameters searched, effects that are not heard switched off). The checked chain is published
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
from pimodule.device.io.worker import BackgroundThread

log = logging.getLogger(__name__)


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
        self._offer: tuple | None = None  # (sample rate, wet, dry, estimate), newest wins
        self._checks: dict[int, SubsetCheck] = {}  # one per sample rate
        self.latest: dict = {}
        self.n_checks = 0
        self.n_failed = 0
        self.last_check_ms = 0.0

    @property
    def driving(self) -> bool:
        """True once a check has decided the chain (matching follows the checks, not the estimates)."""
        return self.n_checks > 0

    def offer(self, sample_rate: int, wet: np.ndarray, dry: np.ndarray, estimate: dict) -> None:
        """The analyzer's newest estimate and its windows (one reference store; any thread)."""
        self._offer = (int(sample_rate), wet, dry, estimate)

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
        rate, wet, dry, estimate = offer
        if rate not in self._checks:
            self._checks[rate] = SubsetCheck(rate, self.config)
        t0 = time.perf_counter()
        try:
            checked = self._checks[rate](dry, wet, estimate)
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

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check_once()
            except Exception:  # noqa: BLE001 - the checker must keep running
                log.exception("fx check failed")
