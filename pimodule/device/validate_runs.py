"""The child side of :mod:`.validate` once the file is read: a voice played frame by frame and
an effect estimator run on test windows, each measured against the board's budget, and the
refusals they raise (a code and a reason a user can read)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pimodule.core.modelfile import ModelFileError
from pimodule.device.fx.mode import checked_estimator
from pimodule.device.session import ModelSession

MiB = 1024 * 1024


class _Refusal(Exception):
    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


def _ms(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us < 10_000 else f"{us / 1000:.0f} ms"


def _slow_reason(name: str, p99_us: float, budget_us: float, unit: str) -> str:
    return (
        f"{name}: too slow for this board: takes {_ms(p99_us)} per {unit} at p99, "
        f"the budget on this board is {_ms(budget_us)}"
    )


def _out_of_memory(text: str) -> bool:
    return any(s in text for s in ("bad_alloc", "bad allocation", "Failed to allocate", "MemoryError"))


def _load_refusal(err: ModelFileError, path: Path, budget, load_word: str) -> _Refusal:
    """Why a model could not be opened: the memory cap, a load failure (its message holds
    ``load_word``) or its signature; the file's directory left out of the reason."""
    text = str(err).replace(str(path), path.name)
    if _out_of_memory(text):
        return _Refusal("memory", f"{path.name}: needs more than the {budget.memory_bytes // MiB} MiB memory cap")
    return _Refusal("load" if load_word in text else "signature", text)


def _voice(path: Path, spec: dict, budget, report) -> None:
    name = path.name
    try:
        session = ModelSession(path, expect_kind="ddsp")
    except ModelFileError as err:
        raise _load_refusal(err, path, budget, "onnxruntime") from None
    info = session.info
    if spec.get("expect_rate") is not None and info.sample_rate != spec["expect_rate"]:
        raise _Refusal("signature", f"{name}: runs at {info.sample_rate} Hz, the engine at {spec['expect_rate']} Hz")
    if spec.get("expect_block") is not None and info.block_size != spec["expect_block"]:
        raise _Refusal(
            "signature", f"{name}: block of {info.block_size} samples, the engine uses {spec['expect_block']}"
        )
    n = max(64, int(budget.frames))
    half = np.geomspace(55.0, 2000.0, n // 2)
    f0 = np.concatenate([half, half[::-1], [55.0] * (n - 2 * len(half))]).astype(np.float32)
    loudness = (-80.0 + 80.0 * (0.5 - 0.5 * np.cos(np.linspace(0, 6 * np.pi, n)))).astype(np.float32)
    specs = list(info.controls)
    settings = [
        {s.name: s.default for s in specs},
        {s.name: s.min for s in specs},
        {s.name: s.max for s in specs},
        {s.name: (s.min if i % 2 else s.max) for i, s in enumerate(specs)},
    ]
    out = np.zeros(info.block_size, np.float32)
    cpu = np.zeros(n, np.int64)
    wall = np.zeros(n, np.int64)
    period_us = 1e6 * info.block_size / info.sample_rate
    budget_us = budget.frame_share * period_us
    report.timing["period_us"] = period_us
    report.timing["budget_us"] = budget_us
    peak = 0.0
    early = min(n, 300)  # after this many frames a model far too slow is refused without playing on
    for i in range(n):
        if i % 250 == 0:
            for control, value in settings[(i // 250) % len(settings)].items():
                session.set_control(control, value)
        t_cpu, t_wall = time.thread_time_ns(), time.perf_counter_ns()
        session.process_frame(float(f0[i]), float(loudness[i]), out)
        cpu[i], wall[i] = time.thread_time_ns() - t_cpu, time.perf_counter_ns() - t_wall
        if not np.all(np.isfinite(out)):
            raise _Refusal("nonfinite", f"{name}: the model outputs NaN or inf (frame {i} of the check)")
        for state_name, value in session.state.items():
            if not np.all(np.isfinite(value)):
                raise _Refusal("nonfinite", f"{name}: its state {state_name!r} turns NaN or inf at frame {i} of {n}")
        peak = max(peak, float(np.max(np.abs(out))))
        if peak > budget.max_level:
            raise _Refusal("level", f"{name}: the model's output is implausibly loud ({peak:.1f}, frame {i})")
        report.frames = i + 1
        if i + 1 == early and spec.get("time_budget", True):
            _time_check(report, cpu[:early], wall[:early], budget_us, name, warm=32)
    report.peak = peak
    _time_check(report, cpu, wall, budget_us, name, warm=32, enforce=spec.get("time_budget", True))


def _time_check(report, cpu, wall, budget_us: float, name: str, warm: int, enforce: bool = True) -> None:
    cpu_us, wall_us = cpu[warm:] / 1000.0, wall[warm:] / 1000.0
    report.timing.update(
        cpu_p50_us=float(np.median(cpu_us)),
        cpu_p99_us=float(np.percentile(cpu_us, 99)),
        wall_p50_us=float(np.median(wall_us)),
        wall_p99_us=float(np.percentile(wall_us, 99)),
    )
    if enforce and report.timing["cpu_p99_us"] > budget_us:
        raise _Refusal("slow", _slow_reason(name, report.timing["cpu_p99_us"], budget_us, "frame"))


def _estimator(path: Path, spec: dict, budget, report) -> None:
    name = path.name
    try:
        estimator = checked_estimator(path)
    except ModelFileError as err:
        raise _load_refusal(err, path, budget, "loadable") from None
    rng = np.random.default_rng(1)
    budget_us = budget.fx_share * budget.fx_interval_s * 1e6
    report.timing["budget_us"] = budget_us
    cpu, wall = [], []
    for i in range(max(1, budget.fx_windows)):
        x = (rng.standard_normal((1, estimator.window)) * (0.01 if i % 2 else 0.5)).astype(np.float32)
        t_cpu, t_wall = time.thread_time_ns(), time.perf_counter_ns()
        outputs = estimator.run(x, x if estimator.conditioning != "blind" else None)
        cpu.append(time.thread_time_ns() - t_cpu)
        wall.append(time.perf_counter_ns() - t_wall)
        if not all(np.all(np.isfinite(o)) and np.all((o >= 0) & (o <= 1)) for o in outputs):
            raise _Refusal("nonfinite", f"{name}: non-finite or out-of-range output on test window {i}")
        report.frames = i + 1
    cpu_us, wall_us = np.array(cpu[1:] or cpu) / 1000.0, np.array(wall[1:] or wall) / 1000.0
    report.timing.update(
        cpu_p50_us=float(np.median(cpu_us)),
        cpu_p99_us=float(np.max(cpu_us)),
        wall_p50_us=float(np.median(wall_us)),
        wall_p99_us=float(np.max(wall_us)),
    )
    if spec.get("time_budget", True) and report.timing["cpu_p99_us"] > budget_us:
        raise _Refusal("slow", _slow_reason(name, report.timing["cpu_p99_us"], budget_us, "analysis window"))
