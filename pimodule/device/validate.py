"""Validation of a model file in a child process with limits: what the model does once it plays,
and what it costs on this board, found out before the module installs or plays it.

:func:`validate` starts ``python -m pimodule.device.validate`` with a wall-clock deadline (the
child is killed when it passes), and the child first caps itself (``RLIMIT_AS``: address space,
``RLIMIT_CPU``, ``RLIMIT_FSIZE``, ``RLIMIT_CORE``, ``RLIMIT_NOFILE``) before touching the file.
In the child:

1. :mod:`pimodule.device.modelcheck` reads the file as data (no external data, standard
   operators, bounded sizes and shapes);
2. onnxruntime opens the checked bytes; the signature and metadata are checked (a voice at the
   engine's rate and block when those are given);
3. a **voice** (``ddsp``) plays ``frames`` frames (2000 = 8 s at 16 kHz) through the real-time
   path (:class:`pimodule.device.session.ModelSession`): pitch sweeping 55-2000 Hz and back,
   loudness from -80 to 0 dB, controls at their minimum, maximum and default in turn; every
   frame's audio and state must stay finite and the level bounded, and each frame's CPU time
   is measured: at p99 it must stay within ``frame_share`` of the frame period (40 % of 4 ms:
   1.6 ms), or the model is refused with the figure;
   an **estimator** (``fx``) runs test windows: outputs of its chain's shapes, finite, in
   [0, 1], and each window's time within ``fx_share`` of the analysis interval.

The :class:`Report` is plain data (JSON). CPU time of the validating thread is measured, not
wall time: other processes on a busy machine do not make a model look slower than it is (the
wall-clock figures are reported too). The real-time engine, which may run a voice faster than
onnxruntime, can give its own measurement through ``engine_cost`` (see :func:`validate`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pimodule.core.modelfile import ModelFileError
from pimodule.device import modelcheck
from pimodule.device.validate_runs import MiB, _estimator, _out_of_memory, _Refusal, _slow_reason, _voice

MAX_LEVEL = 100.0  # a voice louder than this (+40 dBFS) is broken, not loud
REPORT_PREFIX = "PIMODULE-VALIDATE "


@dataclass(frozen=True)
class ValidationBudget:
    """The limits of one validation and the real-time budget a model must meet."""

    memory_bytes: int = 512 * MiB  # RLIMIT_AS of the child (its address space)
    deadline_s: float = 60.0  # wall clock; the child is killed after it
    cpu_s: int = 60  # RLIMIT_CPU
    frames: int = 2000  # voice frames played (8 s of audio at 16 kHz, 64 samples a frame)
    frame_share: float = 0.4  # a voice frame may take this share of its period at p99
    fx_windows: int = 5
    fx_interval_s: float = 0.25  # fx mode estimates at most every this often
    fx_share: float = 0.4  # an estimator window may take this share of the interval (worst)
    max_level: float = MAX_LEVEL


@dataclass
class Report:
    """What validation found: ``ok`` or ``code`` + ``reason``, and the measured figures."""

    ok: bool
    reason: str = ""
    code: str = ""  # static, load, signature, nonfinite, level, slow, memory, deadline, crashed
    kind: str | None = None
    name: str = ""
    sample_rate: int | None = None
    block_size: int | None = None
    frames: int = 0
    peak: float = 0.0
    timing: dict = field(default_factory=dict)  # cpu_p50_us, cpu_p99_us, wall_p50_us, wall_p99_us, budget_us
    max_rss_kb: int = 0
    elapsed_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Report:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def raise_if_refused(self) -> Report:
        """ModelFileError with the reason unless the model passed; else the report."""
        if not self.ok:
            raise ModelFileError(self.reason)
        return self


# -- the parent side -----------------------------------------------------------------------------
def validate(
    path: str | Path,
    kind: str | None = None,
    budget: ValidationBudget = ValidationBudget(),
    *,
    expect_rate: int | None = None,
    expect_block: int | None = None,
    engine_cost: Callable[[Path], dict] | None = None,
) -> Report:
    """Validate ``path`` in a child process with limits; never raises for a bad model (the
    report says why). ``kind``: the kind it must be (None: ``ddsp`` or ``fx``). ``expect_rate``
    and ``expect_block``: the engine's model rate and block (a voice must match).

    ``engine_cost(path) -> {"p99_us": ..., "p50_us": ...}``: when the real-time engine runs the
    voice as compiled code it can report its own per-frame cost; it is called (in this process,
    after the child passed the file) and its p99 is held against the budget instead of
    onnxruntime's, which is then only reported.
    """
    path = Path(path)
    t0 = time.monotonic()
    spec = {
        "path": str(path),
        "kind": kind,
        "budget": asdict(budget),
        "expect_rate": expect_rate,
        "expect_block": expect_block,
        "time_budget": engine_cost is None,
    }
    report = _run_child(spec, budget)
    report.elapsed_s = round(time.monotonic() - t0, 3)
    if report.ok and engine_cost is not None and report.kind == "ddsp":
        cost = engine_cost(path)
        report.timing["engine_p99_us"] = float(cost["p99_us"])
        report.timing["engine_p50_us"] = float(cost.get("p50_us", cost["p99_us"]))
        if float(cost["p99_us"]) > report.timing["budget_us"]:
            report.ok, report.code = False, "slow"
            report.reason = _slow_reason(path.name, float(cost["p99_us"]), report.timing["budget_us"], "frame")
    return report


def _child_env() -> dict:
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the pimodule package
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "NUMBA_CACHE_DIR")}
    env["PYTHONPATH"] = root + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", MALLOC_ARENA_MAX="2")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run_child(spec: dict, budget: ValidationBudget) -> Report:
    name = Path(spec["path"]).name
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pimodule.device.validate", "--child", json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=_child_env(),
            close_fds=True,
            start_new_session=True,  # its own process group: killed whole on the deadline
        )
        try:
            rc = proc.wait(budget.deadline_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return Report(
                False,
                f"{name}: validation did not finish within {budget.deadline_s:.0f} s (killed): the model "
                "hangs or is far too slow for this board",
                "deadline",
            )
        out.seek(0)
        text = out.read(1 * MiB).decode("utf-8", "replace")
        err.seek(0)
        tail = err.read()[-4096:].decode("utf-8", "replace").strip().splitlines()
    for line in reversed(text.splitlines()):
        if line.startswith(REPORT_PREFIX):
            try:
                return Report.from_dict(json.loads(line[len(REPORT_PREFIX) :]))
            except (ValueError, TypeError):
                break
    cap = f"{budget.memory_bytes // MiB} MiB"
    if rc < 0:
        sig = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(-rc)
        if -rc == signal.SIGXCPU:
            return Report(False, f"{name}: validation used more than {budget.cpu_s} s of CPU (killed)", "deadline")
        return Report(
            False,
            f"{name}: the validation process died ({sig}): the model crashed it or ran out of its {cap} memory cap",
            "memory" if -rc in (signal.SIGSEGV, signal.SIGABRT, signal.SIGKILL, signal.SIGBUS) else "crashed",
        )
    last = tail[-1][:300] if tail else "no output"
    if "MemoryError" in last or "bad_alloc" in last or "bad allocation" in last:
        return Report(False, f"{name}: needs more than the {cap} memory cap of validation", "memory")
    return Report(False, f"{name}: the validation process failed (exit {rc}): {last}", "crashed")


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait(10)


# -- the child side ------------------------------------------------------------------------------
def _limit_self(budget: ValidationBudget) -> None:
    def cap(which: int, value: int, hard_extra: int = 0) -> None:
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        new_hard = value + hard_extra if hard == resource.RLIM_INFINITY else min(hard, value + hard_extra)
        resource.setrlimit(which, (value, new_hard))

    cap(resource.RLIMIT_AS, int(budget.memory_bytes))
    cap(resource.RLIMIT_CPU, int(budget.cpu_s), 2)  # SIGXCPU at the soft limit, SIGKILL 2 s later
    cap(resource.RLIMIT_FSIZE, 4 * MiB)  # its report and log only
    cap(resource.RLIMIT_CORE, 0)
    cap(resource.RLIMIT_NOFILE, 256)


def _peak_rss_kb() -> int:
    """This process's peak resident memory since its exec (``VmHWM``; ``ru_maxrss`` would count
    the parent's image it was forked from)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _child(spec: dict) -> Report:
    budget = ValidationBudget(**spec["budget"])
    path = Path(spec["path"])
    name = path.name
    report = Report(True, name=path.stem)
    try:
        checked = modelcheck.check_file(path)
        info = checked.info
        report.kind, report.sample_rate, report.block_size = info.kind, info.sample_rate, info.block_size
        want = spec.get("kind")
        if want is not None and info.kind != want:
            label = {"ddsp": "a voice (ddsp)", "fx": "an effect estimator (fx)"}
            raise _Refusal(
                "signature",
                f"{name}: {label.get(info.kind, repr(info.kind))}, where {label.get(want, repr(want))} is expected",
            )
        if info.kind == "ddsp":
            _voice(path, spec, budget, report)
        elif info.kind == "fx":
            _estimator(path, spec, budget, report)
        else:  # pragma: no cover - modelfile knows only these two kinds
            raise _Refusal("signature", f"{name}: a {info.kind!r} model: this module plays 'ddsp' and 'fx' models")
    except _Refusal as refusal:
        report.ok, report.code, report.reason = False, refusal.code, refusal.reason
    except MemoryError:
        report.ok, report.code = False, "memory"
        report.reason = f"{name}: needs more than the {budget.memory_bytes // MiB} MiB memory cap of validation"
    except ModelFileError as err:
        text = str(err).replace(str(path), name)
        memory = _out_of_memory(text)
        report.ok = False
        report.code = "memory" if memory else ("static" if "onnxruntime" not in text else "load")
        report.reason = (
            f"{name}: needs more than the {budget.memory_bytes // MiB} MiB memory cap of validation ({text[:200]})"
            if memory
            else text
        )
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
        text = f"{type(err).__name__}: {err}".replace(str(path), name)[:300]
        memory = _out_of_memory(text)
        report.ok, report.code = False, "memory" if memory else "crashed"
        report.reason = (
            f"{name}: needs more than the {budget.memory_bytes // MiB} MiB memory cap of validation"
            if memory
            else f"{name}: fails when run ({text})"
        )
    report.max_rss_kb = _peak_rss_kb()
    return report


def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m pimodule.device.validate")
    parser.add_argument("--child", required=True, help="the validation spec (JSON), from validate()")
    spec = json.loads(parser.parse_args(argv).child)
    _limit_self(ValidationBudget(**spec["budget"]))
    report = _child(spec)
    sys.stdout.write(REPORT_PREFIX + json.dumps(report.to_dict()) + "\n")
    sys.stdout.flush()
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
