"""Real-time twins: block-size independent parity with the torch effects, and torch-free."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.signal
import torch

from pimodule.core.fx_specs import DISTORTION_MODES, SPECS
from pimodule.device.fx.twin_effects import make_twin
from pimodule.laptop.fx import effects

BLOCK_SIZES = [1, 64, 65, 128, 8193]
# Documented tolerances (max abs difference, float64 signals of peak ~0.4):
#  - gain, distortion, EQ (IIR cascade vs torchlpc cascade), compressor, reverb: 1e-9
#  - frequency-sampled EQ (training) vs the IIR twin: 1e-5 relative to the peak (the IIR tail
#    beyond ~2x the signal length is what the frequency sampling drops)
TOL = 1e-9


def _signal(sample_rate: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sample_rate
    env = np.where((t * 4) % 1 < 0.5, 1.0, 0.1)  # bursts, so dynamics and tails matter
    x = env * (0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * rng.standard_normal(n))
    return np.stack([x, np.roll(x, 37)])  # 2 channels


def _random_params(name: str, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {s.name: float(s.from_unit(rng.random())) for s in SPECS[name]}


def _torch(name, x, sample_rate, params, mode):
    fn = effects.parametric_eq_iir if name == "eq" else effects.EFFECTS[name]
    extra = {"mode": mode} if name == "distortion" else {}
    tp = {k: torch.tensor([v], dtype=torch.float64) for k, v in params.items()}
    return fn(torch.tensor(x[None]), sample_rate, **tp, **extra)[0].numpy()


def _twin(name, x, sample_rate, params, mode, block_size):
    twin = make_twin(name, sample_rate, channels=x.shape[0], mode=mode)
    twin.set_params(ramp=False, **params)
    y = x.copy()
    for start in range(0, y.shape[-1], block_size):
        twin.process(y[:, start : start + block_size])  # in place on a view
    return y


CASES = [(n, "tanh") for n in ("gain", "eq", "compressor", "reverb")]
CASES += [("distortion", m) for m in DISTORTION_MODES]


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
@pytest.mark.parametrize("sample_rate", [16000, 48000])
@pytest.mark.parametrize("name,mode", CASES)
def test_twin_matches_torch(name, mode, sample_rate, block_size):
    n = 3000 if block_size == 1 else 9000
    x = _signal(sample_rate, n, seed=block_size)
    params = _random_params(name, seed=sample_rate + block_size)
    ref = _torch(name, x, sample_rate, params, mode)
    got = _twin(name, x, sample_rate, params, mode, block_size)
    assert np.max(np.abs(got - ref)) <= TOL * max(1.0, np.max(np.abs(ref)))


@pytest.mark.parametrize("block_size", [64, 8193])
def test_frequency_sampled_eq_vs_iir_twin(block_size):
    sample_rate = 24000
    x = _signal(sample_rate, 9000)
    params = _random_params("eq", seed=3)
    tp = {k: torch.tensor([v], dtype=torch.float64) for k, v in params.items()}
    ref = effects.parametric_eq(torch.tensor(x[None]), sample_rate, **tp)[0].numpy()
    got = _twin("eq", x, sample_rate, params, "tanh", block_size)
    assert np.max(np.abs(got - ref)) <= 1e-5 * np.max(np.abs(ref))


def test_twin_package_imports_no_torch():
    code = (
        "import sys, pimodule.device.fx.twin_effects, pimodule.device.fx.twin_chain, pimodule.device.fx.cost, "
        "pimodule.device.fx.estimator; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_parameters_are_clamped_and_unknown_names_refused():
    twin = make_twin("gain", 16000)
    twin.set_params(gain_db=1000.0)
    assert twin.params["gain_db"] == SPECS["gain"]["gain_db"].max
    with pytest.raises(KeyError):
        twin.set_params(volume=3.0)
    with pytest.raises(ValueError):
        twin.set_params(gain_db=float("nan"))
    with pytest.raises(ValueError):
        make_twin("distortion", 16000, mode="fuzz")


def _chain_run(smoothing_ms: float, block_size: int, sample_rate: int = 16000):
    from pimodule.device.fx.twin_chain import ChainTwin

    n = sample_rate // 2
    amp, freq = 0.2, 100.0
    x = np.tile(amp * np.sin(2 * np.pi * freq * np.arange(n) / sample_rate), (1, 1))
    chain = ChainTwin(sample_rate, ["eq", "compressor", "gain"], channels=1, smoothing_ms=smoothing_ms)
    chain.set_params("gain", immediate=True, gain_db=-12.0)
    chain.set_params("compressor", immediate=True, ratio=1.0)
    y = x.copy()
    jump = ((n // 2 + 40) // block_size) * block_size  # near a peak of the sine
    for start in range(0, n, block_size):
        if start == jump:  # every parameter target jumps at once
            chain.set_params("gain", gain_db=12.0)
            chain.set_params("eq", peak1_gain_db=12.0, peak1_freq_hz=100.0, low_shelf_gain_db=6.0)
        chain.process(y[:, start : start + block_size])
    # bound: the steepest sample-to-sample move of the settled output (a clean, louder sine), +5%
    settled = np.diff(y[0, -n // 4 :])
    slope_bound = 1.05 * np.max(np.abs(settled))
    return np.max(np.abs(np.diff(y[0]))), slope_bound, y


@pytest.mark.parametrize("block_size", [1, 64, 65, 128])
def test_chain_parameter_jump_gives_no_step(block_size):
    step, bound, y = _chain_run(20.0, block_size)
    assert np.isfinite(y).all()
    assert step <= bound  # no sample-to-sample step beyond what the final clean sine has


def test_chain_without_smoothing_does_step():
    step, bound, _ = _chain_run(0.0, 1)
    assert step > 2 * bound  # the same jump, unsmoothed, is a click: the bound above means something


def test_chain_bypass_is_identity_and_apply_sets_targets():
    from pimodule.device.fx.twin_chain import ChainTwin

    x = _signal(16000, 4000)
    chain = ChainTwin(16000, channels=2)
    for name in chain.stages:
        chain.set_active(name, False, immediate=True)
    y = x.copy()
    chain.process(y)
    assert np.array_equal(x, y)
    chain.apply({"gain": {"active": True, "params": {"gain_db": 6.0}}}, immediate=True)
    y = x.copy()
    chain.process(y)
    assert np.allclose(y, x * 10 ** (6 / 20))
    with pytest.raises(KeyError):
        chain.set_params("flanger", depth=1.0)


def test_bench_chain_reports_numbers():
    from pimodule.device.fx.cost import bench_chain

    r = bench_chain(48000, 65, n_blocks=20)
    assert r["budget_us"] == pytest.approx(65 / 48000 * 1e6)
    assert 0 < r["p50_us"] <= r["p99_us"] <= r["max_us"]


@pytest.mark.parametrize("block_size", [1, 64, 65, 128])
def test_eq_in_place_kernel_equals_public_sosfilt(block_size):
    x = _signal(48000, 4000)
    params = _random_params("eq", seed=11)
    contiguous, strided = make_twin("eq", 48000, channels=2), make_twin("eq", 48000, channels=2)
    contiguous.set_params(ramp=False, **params)
    strided.set_params(ramp=False, **params)
    a, b = x.copy(), x.copy()
    for start in range(0, x.shape[-1], block_size):
        block = np.ascontiguousarray(a[:, start : start + block_size])  # the fast path
        contiguous.process(block)
        a[:, start : start + block_size] = block
        strided.process(b[:, start : start + block_size])  # a view: scipy's public sosfilt
    assert np.max(np.abs(a - b)) <= 1e-12
    y, _ = scipy.signal.sosfilt(contiguous.sos, x, axis=-1, zi=np.zeros((contiguous.sos.shape[0], 2, 2)))
    assert np.max(np.abs(a - y)) <= 1e-12
