"""The compiled fx chain (pimodule.device.rt.fxchain) against the twin chain it replaces
(ChainTwin, as FxMatcher runs it): the same numbers to float64 rounding with targets changing
mid-stream, effects switched on and off, every distortion curve, at block sizes 1, 64, 65, 128 and
8193 (through the callback, which cuts it into chunks), at 48 and 44.1 kHz; nothing allocated per
block; finite at extreme parameters; out-of-range block contents never read out of bounds;
matching off passes the input through untouched."""

from __future__ import annotations

import numpy as np
import pytest
from numba.core.runtime import _nrt_python, rtsys

from pimodule.core.fx_specs import SPECS
from pimodule.device.fx.match import FxMatcher
from pimodule.device.rt import block as rt_block
from pimodule.device.rt import fxchain, fxlayout, setup
from pimodule.device.rt import shared as L
from pimodule.device.rt.fxparams import FxChainWriter, doubles_needed

FX = 2
ALL_ON = {
    "eq": {
        "active": True,
        "params": {
            "low_shelf_gain_db": -4.0,
            "peak1_gain_db": 6.0,
            "peak2_gain_db": -5.0,
            "peak2_q": 2.5,
            "peak3_gain_db": 4.0,
            "high_shelf_gain_db": 5.0,
        },
    },
    "compressor": {"active": True, "params": {"threshold_db": -30.0, "ratio": 6.0, "attack_ms": 3.0, "makeup_db": 6.0}},
    "distortion": {"active": True, "params": {"drive_db": 12.0, "output_gain_db": -6.0}, "mode": "soft"},
    "reverb": {"active": True, "params": {"decay_s": 0.8, "damping_pct": 40.0, "mix_pct": 30.0}},
    "gain": {"active": True, "params": {"gain_db": -3.0}},
}


def _random_estimate(rng, mode: str) -> dict:
    est = {}
    for name, specs in SPECS.items():
        params = {s.name: float(s.from_unit(rng.uniform())) for s in specs}
        est[name] = {"active": True, "params": params}
    est["distortion"]["mode"] = mode
    est["reverb"]["params"]["mix_pct"] = 40.0
    return est


def _events(seed: int = 1):
    """(fraction of the stream, what happens): estimates, jumps, curves, on/off, by hand."""
    rng = np.random.default_rng(seed)
    return [
        (0.02, ("apply", ALL_ON)),
        (0.20, ("apply", _random_estimate(rng, "hard"))),
        (
            0.35,
            (
                "apply",
                {
                    "reverb": {"active": True, "params": {"decay_s": 1.4, "damping_pct": 80.0}},
                    "distortion": {"active": True, "params": {}, "mode": "tanh"},
                },
            ),
        ),
        (0.36, ("apply", {"reverb": {"active": True, "params": {"decay_s": 0.2}}})),  # before the crossfade ended
        (
            0.50,
            (
                "apply",
                {
                    "eq": {"active": False},
                    "reverb": {"active": False},
                    "compressor": {"active": True, "params": {"attack_ms": 0.5, "ratio": 20.0}},
                },
            ),
        ),
        (
            0.62,
            (
                "apply",
                {
                    "eq": {"active": True, "params": {"peak1_freq_hz": 700.0}},
                    "reverb": {"active": True, "params": {"decay_s": 1.1}},
                },
            ),
        ),
        (0.75, ("set", ("distortion", "mode", "soft"))),
        (0.80, ("set", ("gain", "gain_db", 12.0))),
        (0.85, ("set", ("distortion", "active", 0))),
        (0.90, ("apply", _random_estimate(rng, "hard"))),
    ]


def _signal(n: int, rate: int, seed: int = 0) -> np.ndarray:
    t = np.arange(n) / rate
    noise = 0.15 * np.random.default_rng(seed).standard_normal(n)
    tone = 0.3 * np.sin(2 * np.pi * 330.0 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t))
    return noise + tone


class Rig:
    """A block with the compiled chain, and two matchers fed the same targets: ``ref`` runs its twin
    chain (the reference), ``ctl`` is the control side's matcher whose changes reach the block."""

    def __init__(self, rate: int, **sizes):
        self.rate = rate
        self.block = setup.create_block(L.Sizes(device_rate_hz=rate, **sizes))
        self.block.ih[L.I_MATCH] = 1
        self.ref = FxMatcher(rate, 8192)
        self.ctl = FxMatcher(rate, 8192)
        self.writer = FxChainWriter(self.block)
        self.writer.attach(self.ctl)

    def event(self, what) -> None:
        kind, arg = what
        for m in (self.ref, self.ctl):
            if kind == "apply":
                m.apply(arg)
            else:
                m.set_value(*arg)

    def process64(self, w: np.ndarray) -> None:
        b = self.block
        fxchain.process64(b.ih, b.dh, b.fh, w, w.shape[0])

    def process32(self, x: np.ndarray) -> None:
        b = self.block
        fxchain.process(b.ih, b.dh, b.fh, x, x.shape[0])

    def close(self) -> None:
        self.block.close()


@pytest.fixture
def rig_factory():
    rigs = []

    def make(rate: int, **sizes) -> Rig:
        rigs.append(Rig(rate, **sizes))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def _play(rig: Rig, x: np.ndarray, block_size: int, events, run) -> np.ndarray:
    """Block by block: events at their block, the reference twin chain and ``run`` (the compiled one)."""
    n = x.shape[0]
    ref = x.copy()[None]
    out = x.copy()
    due = sorted((int(f * n), e) for f, e in events)
    k = 0
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        while k < len(due) and due[k][0] < stop:
            rig.event(due[k][1])
            k += 1
        rig.ref.chain.process(ref[:, start:stop])
        run(out[start:stop])
    return ref[0], out


@pytest.mark.parametrize("rate", [48000, 44100])
@pytest.mark.parametrize("block_size", [1, 64, 65, 128, 4096])
def test_parity_with_the_twin_chain(rig_factory, rate, block_size):
    """Float64 in and out: the compiled chain equals ChainTwin to rounding (measured: ≤ 1e-15)."""
    rig = rig_factory(rate)
    seconds = 0.4 if block_size == 1 else 3.0
    x = _signal(int(seconds * rate), rate)
    ref, out = _play(rig, x, block_size, _events(), rig.process64)
    peak = np.max(np.abs(ref))
    assert np.max(np.abs(out - x)) > 0.1  # the chain did something
    diff = np.max(np.abs(out - ref))
    assert diff <= 1e-12 * max(1.0, peak), diff


@pytest.mark.parametrize(
    "effect", ["eq", "compressor", "distortion:hard", "distortion:soft", "distortion:tanh", "reverb", "gain"]
)
def test_each_effect_alone(rig_factory, effect):
    """One stage on, its parameters moving: it changes the sound, and as the twin does."""
    name, _, mode = effect.partition(":")
    rig = rig_factory(48000)
    on = {k: {"active": k == name, "params": v["params"]} for k, v in ALL_ON.items()}
    on["distortion"]["mode"] = mode or "tanh"
    rng = np.random.default_rng(11)
    later = {name: {"active": True, "params": _random_estimate(rng, mode or "tanh")[name]["params"]}}
    off = {name: {"active": False}}
    x = _signal(48000, 48000)
    ref, out = _play(rig, x, 100, [(0.0, ("apply", on)), (0.3, ("apply", later)), (0.6, ("apply", off))], rig.process64)
    assert np.max(np.abs(out[:28000] - x[:28000])) > 0.05
    assert np.max(np.abs(out - ref)) <= 1e-12 * max(1.0, np.max(np.abs(ref)))
    assert np.array_equal(out[-2000:], x[-2000:])  # off again: the input as it was


def test_float32_blocks_equal_the_matcher(rig_factory):
    """What the callback does (float32 in place, float64 inside) against FxMatcher.process."""
    rig = rig_factory(48000)
    rig.ref.matching = True
    x = _signal(48000 * 2, 48000).astype(np.float32)
    ref, out = x.copy(), x.copy()
    due = sorted((int(f * x.shape[0]), e) for f, e in _events(3))
    k = 0
    for start in range(0, x.shape[0], 128):
        while k < len(due) and due[k][0] < start + 128:
            rig.event(due[k][1])
            k += 1
        rig.ref.process(ref[start : start + 128])
        rig.process32(out[start : start + 128])
    assert np.max(np.abs(out.astype(np.float64) - ref)) <= 1e-7


@pytest.mark.parametrize("rate", [48000, 44100])
def test_8193_frames_through_the_callback(rig_factory, rate):
    """block.process cuts 8193 frames into chunks of 4096, 4096, 1: the chain sees three blocks, as
    ChainTwin fed those blocks (the output guard set to pass everything)."""
    rig = rig_factory(rate)
    b = rig.block
    b.ih[L.I_MODE_NOW] = b.ih[L.I_MODE_REQ] = FX
    p = b.buf("D_PARAMS")
    p[L.P_GAIN], p[L.P_GAIN_TAU], p[L.P_RELEASE_TAU], p[L.P_CEILING] = 1.0, 100.0, 1000.0, 1e30
    rig.ref.matching = True
    frames = 8193
    x = _signal(frames * 6, rate, seed=5).astype(np.float32)
    inp = np.zeros(2 * frames, np.float32)
    out = np.zeros(2 * frames, np.float32)
    ref = x.copy()
    got = np.zeros_like(x)
    events = [e for _, e in _events(4)]
    for k in range(6):
        if k < 5:
            rig.event(events[k])
        seg = slice(k * frames, (k + 1) * frames)
        inp[1::2] = x[seg]  # input R
        inp[0::2] = 0.5
        rt_block.process(b.ih, b.dh, b.fh, inp, 2, out, 2, frames)
        got[seg] = out[0::2]
        assert np.array_equal(out[0::2], out[1::2])
        for a, z in ((0, 4096), (4096, 8192), (8192, 8193)):
            rig.ref.process(ref[seg][a:z])
    assert np.max(np.abs(got - x)) > 0.1
    assert np.max(np.abs(got.astype(np.float64) - ref)) <= 1e-7


def _alloc() -> np.ndarray:
    s = rtsys.get_allocation_stats()
    return np.array([s.alloc, s.free, s.mi_alloc, s.mi_free])


def test_no_allocation_per_block(rig_factory):
    """Calls with every effect on, parameters moving and IRs crossfading allocate exactly what calls
    that return at once allocate (numba's boxing of the arguments): nothing inside."""
    _nrt_python.memsys_enable_stats()
    rig = rig_factory(48000)
    x = _signal(48000, 48000).astype(np.float32)
    rig.event(("apply", ALL_ON))
    rig.process32(x[:128].copy())  # compiled
    b = rig.block

    def calls(count: int, match: int) -> np.ndarray:
        b.ih[L.I_MATCH] = match
        a = _alloc()
        for i in range(count):
            if i % 50 == 10:  # a new estimate: ramps, coefficients, a new IR
                rig.event(("apply", _random_estimate(np.random.default_rng(i), "hard")))
            rig.process32(x[(i * 128) % 40000 : (i * 128) % 40000 + 128])
        return _alloc() - a

    busy = calls(300, 1)
    idle = calls(300, 0)
    assert np.array_equal(busy, idle), (busy, idle)


def test_matching_off_passes_the_input_untouched(rig_factory):
    rig = rig_factory(48000)
    rig.event(("apply", ALL_ON))
    rig.block.ih[L.I_MATCH] = 0
    x = _signal(4096, 48000).astype(np.float32)
    y = x.copy()
    rig.process32(y)
    assert np.array_equal(x, y)
    w = x.astype(np.float64)
    rig.process64(w)
    assert np.array_equal(w, x.astype(np.float64))


@pytest.mark.parametrize("mode", ["hard", "soft", "tanh"])
@pytest.mark.parametrize("end", [0.0, 1.0])
def test_extreme_parameters_stay_finite(rig_factory, mode, end):
    rig = rig_factory(48000)
    est = {
        name: {"active": True, "params": {s.name: (s.min if end == 0.0 else s.max) for s in specs}}
        for name, specs in SPECS.items()
    }
    est["distortion"]["mode"] = mode
    rig.event(("apply", est))
    rng = np.random.default_rng(2)
    for x in (np.sign(rng.standard_normal(48000)), np.sin(np.arange(48000) * 0.3), np.zeros(48000)):
        y = x.astype(np.float32)
        for start in range(0, y.shape[0], 256):
            rig.process32(y[start : start + 256])
        assert np.all(np.isfinite(y))
        assert np.max(np.abs(y)) < 1e4
    assert rig.writer.n_resets == 0


def test_a_non_finite_input_resets_the_chain_and_it_recovers(rig_factory):
    rig = rig_factory(48000)
    rig.event(("apply", ALL_ON))
    x = _signal(48000, 48000).astype(np.float32)
    x[1000] = np.nan
    for start in range(0, x.shape[0], 128):
        rig.process32(x[start : start + 128])
    assert rig.writer.n_resets == 1
    assert np.all(np.isfinite(x[1024:]))


def test_whatever_the_block_holds_nothing_is_read_out_of_bounds(rig_factory):
    """Garbage in every field the callback reads (targets, curve, slots, positions, the FFT's
    table, the geometry): it plays on or passes the input through, and never crashes."""
    rig = rig_factory(48000)
    rig.event(("apply", ALL_ON))
    b = rig.block
    d, xi = b.buf("D_FX"), b.buf("I_FX")
    rng = np.random.default_rng(7)
    x = _signal(256, 48000).astype(np.float32)
    rig.process32(x.copy())
    good_d, good_x = d[: fxlayout.HEADER].copy(), xi.copy()
    for trial in range(60):
        d[: fxlayout.HEADER] = good_d
        xi[:] = good_x
        junk = [np.nan, np.inf, -np.inf, -1e300, 1e300, -1.0, 3.7, 1e18]
        for j in rng.choice(fxlayout.R_END - fxlayout.R_TARGET, 8):
            d[fxlayout.R_TARGET + j] = rng.choice(junk)
        for j in rng.choice(fxlayout.HEADER, 4):
            d[j] = rng.choice(junk)
        ints = [-(2**62), -5, -1, 0, 1, 2, 3, 7, 255, 256, 257, 10**9, 2**62]
        for j in rng.choice(np.r_[0:18, fxlayout.X_REV : fxlayout.X_REV + 256], 6):
            xi[j] = rng.choice(ints)
        xi[fxlayout.X_GEN] = xi[fxlayout.X_SEEN] + 2 * (trial % 2)
        xi[fxlayout.X_IR_GEN] = xi[fxlayout.X_IR_SEEN] + (trial % 3 == 0)
        y = x.copy()
        rig.process32(y)  # must not crash
        w = x.astype(np.float64)
        rig.process64(w)
    # back to sane contents: the chain plays again
    d[: fxlayout.HEADER] = good_d
    xi[:] = good_x
    rig.block.ih[L.I_MATCH] = 1
    fxchain.reset(b.ih, b.dh, b.fh)
    y = x.copy()
    rig.process32(y)
    assert np.all(np.isfinite(y))


def test_reset_clears_the_audio_state_like_the_twins_reset(rig_factory):
    rig = rig_factory(48000)
    x = _signal(48000, 48000)
    ev = [(0.0, ("apply", ALL_ON))]
    _play(rig, x[:20000], 128, ev, rig.process64)
    b = rig.block
    fxchain.reset(b.ih, b.dh, b.fh)
    for stage in rig.ref.chain.stages.values():
        stage.effect.reset()
    ref, out = _play(rig, x[20000:], 128, [], rig.process64)
    assert np.max(np.abs(out - ref)) <= 1e-12


def test_an_ir_waits_while_the_callback_has_not_taken_the_last(rig_factory):
    """Two reverb changes with no callback between: the second waits in the writer; poll publishes
    it once the callback took the first. The chain then plays the second's IR."""
    rig = rig_factory(48000)
    rig.event(("apply", ALL_ON))
    rig.ctl.apply({"reverb": {"active": True, "params": {"decay_s": 0.3}}})
    rig.ctl.apply({"reverb": {"active": True, "params": {"decay_s": 1.2}}})
    assert rig.writer.waiting
    assert not rig.writer.poll()
    zeros = np.zeros(64)
    rig.process64(zeros)  # the callback takes the first
    assert rig.writer.poll() and not rig.writer.waiting
    # against a twin chain that saw only the last change before the same first block
    rig.ref.apply({"reverb": {"active": True, "params": {"decay_s": 1.2}}})
    rig.ref.chain.process(np.zeros((1, 64)))
    x = _signal(48000, 48000)
    ref, out = _play(rig, x, 128, [], rig.process64)
    assert np.max(np.abs(out - ref)) <= 1e-12  # the newest IR replaced the first before it was installed


def test_the_block_is_large_enough_by_default():
    for rate in (44100, 48000):
        assert doubles_needed(rate, L.Sizes().max_chunk) <= L.Sizes().fx_floats
    block = setup.create_block(L.Sizes(device_rate_hz=48000, fx_floats=1 << 16))
    try:
        with pytest.raises(ValueError, match="fx_floats"):
            FxChainWriter(block)
    finally:
        block.close()
