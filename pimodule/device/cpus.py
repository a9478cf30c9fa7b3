"""Which CPUs the audio process (and a JACK server we start) runs on, and which the control process
keeps: ``[audio] cpus`` in the daemon's config.

- ``"auto"`` (the default): with two or more CPUs, the last one is the audio core. The audio
  process and the private JACK server are pinned to it, and the control process (OSC, the fx
  estimator and check, model parsing, flashing) to all the others. On a Pi's four cores, that is one
  core for the audio and three for the rest. With one CPU, nothing is pinned.
- ``"none"``: nothing is pinned.
- ``"3"`` or ``"2,3"``: these CPUs are the audio's, the others the control process's.

Why: the audio threads run at SCHED_FIFO, so the kernel preempts anything else to wake them. But on
a kernel that is not fully preemptible (``PREEMPT_NONE`` or ``VOLUNTARY``), a wake-up waits for the
task on that CPU to leave the kernel. With the control process kept off the audio core, there is no
such task. ``make bench`` measures the difference (docs/results.md).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)


class CpuSpecError(ValueError):
    """``[audio] cpus`` is not "auto", "none" or a list of CPUs this process may use."""


@dataclass(frozen=True)
class CpuPlan:
    audio: frozenset[int] | None  # None: not pinned
    control: frozenset[int] | None

    def describe(self) -> str:
        if self.audio is None:
            return "not pinned"
        return f"audio on CPU {_fmt(self.audio)}, control on CPU {_fmt(self.control or frozenset())}"

    def audio_arg(self) -> str | None:
        """The audio CPUs as the audio process's ``--cpus`` value (None: not pinned)."""
        return None if self.audio is None else _fmt(self.audio)


def _fmt(cpus) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def available() -> frozenset[int]:
    """The CPUs this machine runs processes on (online ones), not this process's current mask: a
    control process already pinned still plans the audio core the same way."""
    try:
        with open("/sys/devices/system/cpu/online") as f:
            return parse_list(f.read().strip())
    except (OSError, CpuSpecError):
        return frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()


def parse_list(text: str) -> frozenset[int]:
    """``"3"``, ``"2,3"`` or ``"1-3"`` as a set of CPU numbers."""
    out: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
    except ValueError:
        raise CpuSpecError(
            f'[audio] cpus = {text!r}: expected "auto", "none" or CPU numbers like "3" or "2,3"'
        ) from None
    if not out or min(out) < 0:
        raise CpuSpecError(f"[audio] cpus = {text!r}: no CPU numbers")
    return frozenset(out)


def check_spec(spec: str) -> None:
    """Raise :class:`CpuSpecError` if ``spec`` is neither "auto", "none" nor a CPU list (whether
    this machine has those CPUs is :func:`plan`'s question, asked where the daemon runs)."""
    if spec.strip().lower() not in ("auto", "none"):
        parse_list(spec)


def plan(spec: str, cpus: frozenset[int] | None = None) -> CpuPlan:
    """The plan for ``spec`` on a machine with ``cpus`` (default: this machine's online CPUs)."""
    cpus = available() if cpus is None else frozenset(cpus)
    spec = (spec or "none").strip().lower()
    if spec == "none" or len(cpus) < 2:
        return CpuPlan(None, None)
    if spec == "auto":
        audio = frozenset({max(cpus)})
    else:
        audio = parse_list(spec)
        if not audio <= cpus:
            raise CpuSpecError(
                f"[audio] cpus = {spec!r}: CPU {_fmt(audio - cpus)} is not one this process may use ({_fmt(cpus)})"
            )
        if audio == cpus:
            raise CpuSpecError(f"[audio] cpus = {spec!r}: leaves no CPU for the control process")
    return CpuPlan(audio, cpus - audio)


def plan_or_none(spec: str) -> CpuPlan:
    """:func:`plan`, or no pinning (with a warning saying why) when this machine cannot follow it."""
    try:
        return plan(spec)
    except CpuSpecError as err:
        log.warning("%s: the audio is not pinned", err)
        return CpuPlan(None, None)


def pin_process(cpus: frozenset[int] | None, pid: int | None = None) -> bool:
    """Every thread of process ``pid`` (default: this one) onto ``cpus``; threads it starts later
    inherit the mask. False (logged) when the system refuses; None pins nothing."""
    if cpus is None or not hasattr(os, "sched_setaffinity"):
        return False
    task_dir = f"/proc/{pid or 'self'}/task"
    try:
        tids = [int(t) for t in os.listdir(task_dir)]
    except OSError:
        tids = [pid or 0]
    ok = True
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:  # a thread that ended meanwhile
            continue
        except OSError as err:
            log.warning("could not pin thread %d to CPU %s: %s", tid, _fmt(cpus), err)
            ok = False
    return ok
