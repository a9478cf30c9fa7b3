"""Effect chains of other implementations, each with its own parameter ranges and curves.

A :class:`ForeignChain` is a list of stages in processing order, each ``(effect, params)`` with the
effect one of ``eq``, ``compressor``, ``distortion``, ``reverb`` or ``gain`` and the parameters in
the implementation's own terms (never mapped from the project's ranges). :func:`draw` makes one as
a user's random pedalboard would be: each of the four effects on with probability ``p_active``,
independently, in the order eq → compressor → distortion → reverb, a level change before any of
them (and at the end) with probability ``p_gain``; the audio is peak-normalised afterwards by the
caller. :func:`render` plays it.

Families (:data:`FAMILIES`):

- ``pedalboard``: Spotify's pedalboard (JUCE): shelves, peaks and sometimes a high/low-pass,
  ``Compressor`` + makeup, ``Distortion`` (tanh) or ``Clipping``, ``Reverb`` (freeverb).
- ``sox``: the SoX command line: ``equalizer``/``bass``/``treble``/``highpass``/``lowpass``,
  ``compand``, ``overdrive``, ``reverb``. SoX computes in fixed point: a linear effect gets 24 dB
  of headroom around it, a nonlinear one sees its input capped at −1 dBFS peak.
- ``dasp``: dasp-pytorch's effects (DeepAFx-ST's authors): six-band parametric EQ, a peak-detecting
  compressor with one-pole ballistics, tanh distortion, noise-shaped reverberation in twelve
  octave bands.
- ``faust``: the Faust standard libraries run by DawDreamer (:mod:`pimodule.laptop.fx.faust_family`):
  shelves and constant-Q peaks, ``co.compressor_mono``, an asymmetric cubic clipper, zita-rev1 or
  JPverb. For training only: the benchmark's families are :data:`BENCHMARK`.

Everything is seeded by the numpy Generator handed in; the dasp reverb's noise is seeded from the
chain's own parameters, so a chain renders the same way every time.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf

from pimodule.laptop.fx import faust_family
from pimodule.laptop.fx.foreign import MissingImplementation
from pimodule.laptop.fx.foreign import log_uniform as _logu
from pimodule.laptop.fx.foreign import uniform as _u

EFFECTS = ("eq", "compressor", "distortion", "reverb")
FAMILIES = ("pedalboard", "sox", "dasp", "faust")
#: the families the real-recording benchmark draws its chains from
BENCHMARK = ("pedalboard", "sox", "dasp")
#: the family that training and tuning never see (the benchmark's held-out implementations)
HELD_OUT = ("sox", "dasp")


@dataclass
class ForeignChain:
    family: str
    stages: list[tuple[str, dict]] = field(default_factory=list)

    @property
    def effects(self) -> tuple[str, ...]:
        """The effects switched on (gains not counted), in order."""
        return tuple(name for name, _ in self.stages if name != "gain")

    def without(self, effect: str) -> ForeignChain:
        """The same chain with ``effect`` taken out (its level changes stay)."""
        return ForeignChain(self.family, [(n, p) for n, p in self.stages if n != effect])

    def to_json(self) -> dict:
        return {"family": self.family, "stages": [[n, dict(p)] for n, p in self.stages]}


# -- drawing: each family's own ranges ------------------------------------------------------------
def _draw_pedalboard(effect: str, rng: np.random.Generator, nyquist: float) -> dict:
    if effect == "eq":
        bands = []
        if rng.random() < 0.7:
            bands.append(["low_shelf", _logu(rng, 60, 500), _u(rng, -15, 15), _u(rng, 0.5, 1.0)])
        for _ in range(int(rng.integers(1, 4))):
            bands.append(["peak", _logu(rng, 100, 0.85 * nyquist), _u(rng, -15, 15), _logu(rng, 0.3, 5.0)])
        if rng.random() < 0.7:
            bands.append(["high_shelf", _logu(rng, 1000, 0.8 * nyquist), _u(rng, -15, 15), _u(rng, 0.5, 1.0)])
        if rng.random() < 0.25:
            bands.append(
                ["highpass", _logu(rng, 40, 300), 0.0, 0.0]
                if rng.random() < 0.5
                else ["lowpass", _logu(rng, 2000, 0.9 * nyquist), 0.0, 0.0]
            )
        return {"bands": bands}
    if effect == "compressor":
        return {
            "threshold_db": _u(rng, -45, -5),
            "ratio": _logu(rng, 2, 20),
            "attack_ms": _logu(rng, 0.5, 50),
            "release_ms": _logu(rng, 20, 500),
            "makeup_db": _u(rng, 0, 12),
        }
    if effect == "distortion":
        if rng.random() < 0.5:
            return {"kind": "Distortion", "drive_db": _u(rng, 10, 40)}
        return {"kind": "Clipping", "threshold_db": _u(rng, -30, -6)}
    return {
        "room_size": _u(rng, 0.1, 0.95),
        "damping": _u(rng, 0.0, 1.0),
        "wet_level": _u(rng, 0.1, 0.6),
        "dry_level": _u(rng, 0.4, 1.0),
    }


def _draw_sox(effect: str, rng: np.random.Generator, nyquist: float) -> dict:
    if effect == "eq":
        args = []
        for _ in range(int(rng.integers(1, 4))):
            args.append(
                [
                    "equalizer",
                    f"{_logu(rng, 100, 0.85 * nyquist):.1f}",
                    f"{_logu(rng, 0.4, 4):.2f}q",
                    f"{_u(rng, -15, 15):.2f}",
                ]
            )
        if rng.random() < 0.6:
            args.append(["bass", f"{_u(rng, -15, 15):.2f}", f"{_logu(rng, 80, 400):.1f}"])
        if rng.random() < 0.6:
            args.append(["treble", f"{_u(rng, -15, 15):.2f}", f"{_logu(rng, 2000, 0.75 * nyquist):.1f}"])
        if rng.random() < 0.25:
            args.append(
                ["highpass", f"{_logu(rng, 40, 300):.1f}"]
                if rng.random() < 0.5
                else ["lowpass", f"{_logu(rng, 2000, 0.9 * nyquist):.1f}"]
            )
        return {"args": args}
    if effect == "compressor":
        t, r = _u(rng, -40, -10), _logu(rng, 2, 20)
        return {
            "attack_s": _logu(rng, 0.001, 0.05),
            "decay_s": _logu(rng, 0.05, 0.8),
            "knee_db": _u(rng, 0, 10),
            "threshold_db": t,
            "ratio": r,
            "makeup_db": _u(rng, 0, 10),
        }
    if effect == "distortion":
        return {"gain": _u(rng, 5, 40), "colour": _u(rng, 0, 100)}
    return {
        "reverberance": _u(rng, 10, 100),
        "hf_damping": _u(rng, 0, 100),
        "room_scale": _u(rng, 10, 100),
        "pre_delay_ms": _u(rng, 0, 50),
        "wet_gain_db": _u(rng, -10, 0),
    }


_DASP_EQ_BANDS = (  # DeepAFx-ST's ranges, the top capped below the benchmark's Nyquist
    ("low_shelf", 20.0, 2000.0),
    ("band0", 80.0, 2000.0),
    ("band1", 2000.0, 8000.0),
    ("band2", 200.0, 5000.0),
    ("band3", 500.0, 8000.0),
    ("high_shelf", 4000.0, 8000.0),
)


def _draw_dasp(effect: str, rng: np.random.Generator, nyquist: float) -> dict:
    if effect == "eq":
        p = {}
        for name, lo, hi in _DASP_EQ_BANDS:
            p[f"{name}_gain_db"] = _u(rng, -15, 15)
            p[f"{name}_cutoff_freq"] = _logu(rng, lo, min(hi, 0.9 * nyquist))
            p[f"{name}_q_factor"] = _logu(rng, 0.1, 5.0) if "shelf" not in name else _u(rng, 0.5, 1.0)
        return p
    if effect == "compressor":
        return {
            "threshold_db": _u(rng, -60, 0),
            "ratio": _logu(rng, 1, 20),
            "attack_ms": _logu(rng, 0.1, 100),
            "release_ms": _logu(rng, 10, 1000),
            "knee_db": _u(rng, 1, 12),
            "makeup_gain_db": _u(rng, 0, 12),
        }
    if effect == "distortion":
        return {"drive_db": _u(rng, 0, 40)}
    p = {f"band{i}_gain": _u(rng, 0, 1) for i in range(12)}
    p.update({f"band{i}_decay": _u(rng, 0, 1) for i in range(12)})
    p["mix"] = _u(rng, 0.05, 0.7)
    return p


_DRAW = {"pedalboard": _draw_pedalboard, "sox": _draw_sox, "dasp": _draw_dasp, "faust": faust_family.draw}


def draw(
    family: str,
    rng: np.random.Generator,
    sample_rate: int,
    p_active: float = 0.5,
    p_gain: float = 0.5,
    gain_db: float = 12.0,
) -> ForeignChain:
    """A random chain of ``family``: each effect on with ``p_active``, a level change of up to
    ±``gain_db`` before each effect and at the end with ``p_gain``."""
    if family not in _DRAW:
        raise ValueError(f"family must be one of {FAMILIES}, not {family!r}")
    stages: list[tuple[str, dict]] = []
    for effect in EFFECTS:
        if rng.random() < p_active:
            if rng.random() < p_gain:
                stages.append(("gain", {"gain_db": _u(rng, -gain_db, gain_db)}))
            stages.append((effect, _DRAW[family](effect, rng, sample_rate / 2)))
    if rng.random() < p_gain:
        stages.append(("gain", {"gain_db": _u(rng, -gain_db, gain_db)}))
    return ForeignChain(family, stages)


# -- rendering ------------------------------------------------------------------------------------
def _gain(x: np.ndarray, db: float) -> np.ndarray:
    return x * 10 ** (db / 20)


def _pedalboard_stage(effect: str, p: dict):
    try:
        import pedalboard as pb
    except ImportError as err:
        raise MissingImplementation("pedalboard is not installed: pip install pedalboard") from err
    if effect == "eq":
        out = []
        for kind, f, g, q in p["bands"]:
            if kind == "low_shelf":
                out.append(pb.LowShelfFilter(f, g, q))
            elif kind == "high_shelf":
                out.append(pb.HighShelfFilter(f, g, q))
            elif kind == "peak":
                out.append(pb.PeakFilter(f, g, q))
            elif kind == "highpass":
                out.append(pb.HighpassFilter(f))
            else:
                out.append(pb.LowpassFilter(f))
        return out
    if effect == "compressor":
        return [pb.Compressor(p["threshold_db"], p["ratio"], p["attack_ms"], p["release_ms"]), pb.Gain(p["makeup_db"])]
    if effect == "distortion":
        return [pb.Distortion(p["drive_db"])] if p["kind"] == "Distortion" else [pb.Clipping(p["threshold_db"])]
    if effect == "reverb":
        return [
            pb.Reverb(
                room_size=p["room_size"],
                damping=p["damping"],
                wet_level=p["wet_level"],
                dry_level=p["dry_level"],
                width=1.0,
            )
        ]
    return [pb.Gain(p["gain_db"])]


def _render_pedalboard(x: np.ndarray, sample_rate: int, chain: ForeignChain) -> np.ndarray:
    import pedalboard as pb

    plugins = [plugin for name, p in chain.stages for plugin in _pedalboard_stage(name, p)]
    return pb.Pedalboard(plugins)(x[None].astype(np.float32), sample_rate, reset=True)[0].astype(np.float64)


def _sox_args(effect: str, p: dict) -> list[str]:
    if effect == "eq":
        return [a for args in p["args"] for a in args]
    if effect == "compressor":
        t, r = p["threshold_db"], p["ratio"]
        points = f"{p['knee_db']:.2f}:-90,-90,{t:.2f},{t:.2f},0,{t * (1 - 1 / r):.2f}"
        return ["compand", f"{p['attack_s']:.4f},{p['decay_s']:.4f}", points, f"{p['makeup_db']:.2f}", "-90", "0"]
    if effect == "distortion":
        return ["overdrive", f"{p['gain']:.2f}", f"{p['colour']:.2f}"]
    return [
        "reverb",
        f"{p['reverberance']:.1f}",
        f"{p['hf_damping']:.1f}",
        f"{p['room_scale']:.1f}",
        "100",
        f"{p['pre_delay_ms']:.1f}",
        f"{p['wet_gain_db']:.2f}",
    ]


_SOX_LINEAR = ("eq", "reverb")
_SOX_HEADROOM_DB = 24.0


def _sox(x: np.ndarray, sample_rate: int, args: list[str]) -> np.ndarray:
    if shutil.which("sox") is None:
        raise MissingImplementation("the sox command is missing: apt-get install sox")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        sf.write(str(src), x.astype(np.float32), sample_rate, subtype="FLOAT")
        subprocess.run(
            ["sox", "-q", "-V1", str(src), "-e", "floating-point", str(dst), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )
        y, _ = sf.read(str(dst), dtype="float64", always_2d=True)
    y = y.mean(1)
    out = np.zeros_like(x)
    out[: min(len(x), len(y))] = y[: len(x)]
    return out


def _render_sox(x: np.ndarray, sample_rate: int, chain: ForeignChain) -> np.ndarray:
    y = np.asarray(x, np.float64)
    for effect, p in chain.stages:
        if effect == "gain":
            y = _gain(y, p["gain_db"])
        elif effect in _SOX_LINEAR:
            y = _gain(_sox(_gain(y, -_SOX_HEADROOM_DB), sample_rate, _sox_args(effect, p)), _SOX_HEADROOM_DB)
        else:
            peak = np.max(np.abs(y)) + 1e-12
            cap = min(1.0, 10 ** (-1 / 20) / peak)  # fixed point: no input over -1 dBFS
            y = _sox(y * cap, sample_rate, _sox_args(effect, p))
    return y


def _dasp_stage(effect: str, x, sample_rate: int, p: dict):
    import torch

    try:
        import dasp_pytorch.functional as F
    except ImportError as err:
        raise MissingImplementation("dasp-pytorch is not installed: pip install dasp-pytorch") from err
    t = {k: torch.tensor([float(v)], dtype=torch.float64) for k, v in p.items()}
    if effect == "eq":
        return F.parametric_eq(x, sample_rate, **t)
    if effect == "compressor":
        return F.compressor(x, sample_rate, **t)
    if effect == "distortion":
        return F.distortion(x, sample_rate, **t)
    if effect == "reverb":
        return _dasp_reverb(x, sample_rate, p)
    return F.gain(x, sample_rate, t["gain_db"])


DASP_RATE = 44100  # dasp's octave filterbank reaches 18 kHz: the dasp chain runs at 44.1 kHz
DASP_IR_S = 0.75  # its reverb's impulse-response length (the decay parameter scales with it)


def _dasp_reverb(x, sample_rate: int, p: dict):
    """dasp-pytorch's ``noise_shaped_reverberation``: its octave filterbank, noise and band
    envelopes as in the library (seeded from the parameters), convolved by FFT (the library's
    direct convolution needs tens of GB at this length), mixed as it mixes."""
    import dasp_pytorch.signal as S
    import torch

    n = int(DASP_IR_S * sample_rate)
    taps = 1023
    gen = torch.Generator().manual_seed(int(1e6 * (sum(float(v) for v in p.values()) % 1.0)))
    filters = S.octave_band_filterbank(taps, sample_rate).to(torch.float64)[:, 0]  # flipped FIRs
    bands = filters.shape[0]
    noise = torch.randn(bands, n + taps - 1, generator=gen, dtype=torch.float64)
    # = the library's grouped conv1d (a correlation with the flipped FIRs), by FFT
    filtered = torch.from_numpy(scipy.signal.fftconvolve(noise.numpy(), filters.flip(-1).numpy(), "valid", axes=-1))
    gains = torch.tensor([p[f"band{i}_gain"] for i in range(bands)], dtype=torch.float64)[:, None]
    decays = torch.tensor([p[f"band{i}_decay"] for i in range(bands)], dtype=torch.float64)[:, None]
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    ir = (filtered * torch.exp(-(decays * 10.0 + 1.0) * t) * gains).mean(0)
    m = x.shape[-1] + n - 1
    wet = torch.fft.irfft(torch.fft.rfft(x, m) * torch.fft.rfft(ir, m), m)[..., : x.shape[-1]]
    return (1 - p["mix"]) * x + p["mix"] * wet


def _render_dasp(x: np.ndarray, sample_rate: int, chain: ForeignChain) -> np.ndarray:
    import soxr
    import torch

    up = soxr.resample(np.asarray(x, np.float64), sample_rate, DASP_RATE) if sample_rate != DASP_RATE else x
    y = torch.from_numpy(np.asarray(up, np.float64).copy())[None, None]
    with torch.no_grad():
        for effect, p in chain.stages:
            y = _dasp_stage(effect, y, DASP_RATE, p)
    out = y[0, 0].numpy().astype(np.float64)
    return soxr.resample(out, DASP_RATE, sample_rate) if sample_rate != DASP_RATE else out


_RENDER = {
    "pedalboard": _render_pedalboard,
    "sox": _render_sox,
    "dasp": _render_dasp,
    "faust": lambda x, sample_rate, chain: faust_family.render(x, sample_rate, chain.stages),
}


def render(x: np.ndarray, sample_rate: int, chain: ForeignChain) -> np.ndarray:
    """``chain`` played on mono ``x`` (1-D); the output has x's length, float64."""
    out = _RENDER[chain.family](np.asarray(x, np.float64).reshape(-1), sample_rate, chain)
    out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    return out[: len(x)]
