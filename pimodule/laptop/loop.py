"""What every training loop shares: a step budget with an optional time limit, a progress bar
whose total and ETA follow whichever ends first, periodic tasks by minutes, and a clear ending.

``Budget`` is driven by the trainer (``for step in budget:`` ... ``budget.done(loss=...)``); a
trainer catches ``KeyboardInterrupt`` around its loop, saves a checkpoint and raises
:class:`Interrupted` with the resume command, which the CLI prints.

While the loop runs (in the main thread, where Ctrl-C is not ignored), the first Ctrl-C only asks it to stop: the step under
way finishes and ``KeyboardInterrupt`` is raised where the next one would start, never from the
middle of an optimizer step, a log write or a lock held by the progress bar (an interrupt raised
there once left a run hanging instead of saving). A second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import math
import signal
import threading
import time

from tqdm import tqdm


class Interrupted(KeyboardInterrupt):
    """Training stopped by the user after saving a checkpoint; the message says how to resume."""


class Budget:
    """Steps ``start .. steps-1``, stopped early once ``max_minutes`` of training have passed
    (counting ``elapsed_s`` from earlier sessions of the run)."""

    def __init__(
        self,
        *,
        steps: int,
        start: int = 0,
        max_minutes: float = 0.0,
        elapsed_s: float = 0.0,
        desc: str = "train",
        progress: bool = True,
    ):
        self.steps, self.start, self.step = int(steps), int(start), int(start)
        self.limit_s = max_minutes * 60.0 if max_minutes and max_minutes > 0 else math.inf
        self.elapsed_before_s = float(elapsed_s)
        self._t0 = time.monotonic()
        self.out_of_time = False
        self._timers: dict[str, float] = {}
        self.stop_requested = False
        self._previous_handler = None
        # smoothing=0: the bar's rate is the session's average, the same rate that sets its total,
        # so elapsed + ETA is the time limit
        self.bar = tqdm(
            total=self.steps,
            initial=self.start,
            desc=desc,
            unit="step",
            disable=not progress,
            dynamic_ncols=True,
            smoothing=0,
        )

    @property
    def elapsed_s(self) -> float:
        return self.elapsed_before_s + time.monotonic() - self._t0

    def __iter__(self):
        self._catch_ctrl_c()
        try:
            while self.step < self.steps and not self.out_of_time:
                if self.stop_requested:
                    raise KeyboardInterrupt
                yield self.step
        finally:
            self._release_ctrl_c()

    def _catch_ctrl_c(self) -> None:
        """Only where Ctrl-C would interrupt anyway: not from another thread, and not in a process
        that ignores it (started with nohup or in the background, where it stays ignored)."""
        if threading.current_thread() is not threading.main_thread() or self._previous_handler is not None:
            return
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous_handler = signal.signal(signal.SIGINT, self._on_ctrl_c)

    def _release_ctrl_c(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def _on_ctrl_c(self, signum, frame) -> None:
        if self.stop_requested:  # the second one: now
            self._release_ctrl_c()
            raise KeyboardInterrupt
        self.stop_requested = True

    def done(self, **postfix: float) -> None:
        """One step finished: advance the bar (its total shrinks to what the time limit allows)."""
        self.step += 1
        elapsed = self.elapsed_s
        if elapsed >= self.limit_s:
            self.out_of_time = True
        if math.isfinite(self.limit_s) and self.step > self.start:
            per_step = (time.monotonic() - self._t0) / (self.step - self.start)
            reachable = self.step + max(0.0, self.limit_s - elapsed) / max(per_step, 1e-9)
            total = self.step if self.out_of_time else min(self.steps, int(reachable))
            if total != self.bar.total:
                self.bar.total = max(total, self.step)
        self.bar.update(1)
        if postfix:
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in postfix.items()}, refresh=False)

    @property
    def last(self) -> bool:
        """The step just done is the last one (by count or by time)."""
        return self.step >= self.steps or self.out_of_time

    def every(self, name: str, minutes: float) -> bool:
        """True once per ``minutes`` of training (and never at the first call)."""
        if minutes <= 0:
            return False
        now = time.monotonic()
        due = self._timers.setdefault(name, now + minutes * 60.0)
        if now >= due:
            self._timers[name] = now + minutes * 60.0
            return True
        return False

    def close(self) -> None:
        self._release_ctrl_c()
        self.bar.close()
