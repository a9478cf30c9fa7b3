"""Timing helpers for ``pimodule bench``: the real-time chain (µs per block) and the exported
estimator (ms per analysis window). numpy/onnxruntime only; no assertions, just numbers."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pimodule.core.fx_specs import EFFECT_NAMES
from pimodule.device.fx.check import SubsetCheck
from pimodule.device.fx.estimator import OnnxEstimator
from pimodule.device.fx.twin_chain import ChainTwin


def bench_chain(
    sample_rate: int = 48000,
    block_size: int = 128,
    n_blocks: int = 1000,
    channels: int = 1,
    effects=EFFECT_NAMES,
    seed: int = 0,
) -> dict:
    """Every effect on, a noise input; per-block time percentiles in µs and the block budget."""
    chain = ChainTwin(sample_rate, effects, channels=channels)
    x = np.random.default_rng(seed).standard_normal((channels, block_size)) * 0.1
    block = np.empty_like(x)
    times = np.empty(n_blocks)
    for i in range(n_blocks + 50):
        block[...] = x
        t0 = time.perf_counter()
        chain.process(block)
        if i >= 50:  # warm-up blocks not counted
            times[i - 50] = time.perf_counter() - t0
    us = times * 1e6
    budget = block_size / sample_rate * 1e6
    return {
        "sample_rate": sample_rate,
        "block_size": block_size,
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "max_us": float(us.max()),
        "budget_us": budget,
        "p99_share": float(np.percentile(us, 99) / budget),
    }


def bench_estimator(path: Path, n_runs: int = 20, seed: int = 0) -> dict:
    """Median and max ms per analysis window of an exported estimator (one thread)."""

    est = OnnxEstimator(path)
    rng = np.random.default_rng(seed)
    wet = (rng.standard_normal((1, est.window)) * 0.1).astype(np.float32)
    other = wet.copy() if est.conditioning != "blind" else None
    est.run(wet, other)
    times = []
    for _ in range(n_runs):
        t0 = time.perf_counter()
        est.run(wet, other)
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1e3
    return {
        "window": est.window,
        "sample_rate": est.sample_rate,
        "median_ms": float(np.median(ms)),
        "max_ms": float(ms.max()),
    }


def bench_check(path: Path, n_runs: int = 3, seed: int = 0) -> dict | None:
    """Median and max ms of the module's check of one estimate (pimodule.device.fx.check) of a
    dry-conditioned estimator, on a tone clipped and reverberated by the twins; None if blind."""

    est = OnnxEstimator(path)
    if est.conditioning != "dry":
        return None
    rng = np.random.default_rng(seed)
    t = np.arange(est.window) / est.sample_rate
    dry = 0.25 * np.sin(2 * np.pi * 196 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t))
    dry += 0.005 * rng.standard_normal(t.shape)
    chain = ChainTwin(est.sample_rate, channels=1, distortion_mode="soft")
    for name in ("eq", "compressor"):
        chain.set_active(name, False, immediate=True)
    chain.set_params("distortion", immediate=True, drive_db=18.0)
    wet = dry[None].copy()
    chain.process(wet)
    active, mode, unit = est.run(wet.astype(np.float32), dry[None].astype(np.float32))
    estimate = est.describe(active[0], mode[0], unit[0])
    check = SubsetCheck(est.sample_rate)
    times = []
    for _ in range(n_runs):
        t0 = time.perf_counter()
        check(dry, wet[0], estimate)
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1e3
    return {"median_ms": float(np.median(ms)), "max_ms": float(ms.max())}
