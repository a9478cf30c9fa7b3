"""A fourth family of effects for training: the Faust standard libraries, run by DawDreamer.

Faust's ``filters``, ``compressors``, ``misceffects`` and ``reverbs`` libraries are what many
plugins, Pd externals and hardware patches are built from, and their curves differ from
pedalboard's (JUCE) and the project's own: shelves and constant-Q peaks (``fi.low_shelf``,
``fi.peak_eq_cq``, ``fi.high_shelf``) with second-order high/low-passes, a peak-detecting
feed-forward compressor (``co.compressor_mono``) with make-up gain, a cubic soft clipper with a
drive and an asymmetry (``ef.cubicnl``, its offset making even harmonics), and two reverbs of
another design than freeverb: Fons Adriaensen's zita-rev1 feedback-delay network and JPverb
(``re.zita_rev1_stereo``, ``re.jpverb``, fed mono, their two outputs averaged, mixed with the
dry signal). The parameters are drawn in Faust's own terms, never mapped from the project's.

One program holds the whole chain (each effect switchable, a level change before each and at the
end), compiled once per process and per sample rate; each render sets its sliders. A chain is a
:class:`pimodule.laptop.fx.thirdparty.ForeignChain` of family ``"faust"``; :func:`draw` and
:func:`render` are what :mod:`pimodule.laptop.fx.thirdparty` calls for it. Training may use this
family; the benchmark does not (its families are pedalboard, SoX and dasp-pytorch).
"""

from __future__ import annotations

import functools

import numpy as np

from pimodule.laptop.fx.foreign import MissingImplementation
from pimodule.laptop.fx.foreign import log_uniform as _log
from pimodule.laptop.fx.foreign import uniform as _u

_N_PEAKS = 3


def _sl(name: str, value: float, lo: float, hi: float) -> str:
    return f'hslider("{name}", {value}, {lo}, {hi}, 0.0001)'


def _on(name: str) -> str:
    return f'(1 - hslider("{name}", 0, 0, 1, 1))'  # the bypass flag of ba.bypass1


def _lvl(name: str) -> str:
    return f"*(ba.db2linear({_sl(name, 0, -60, 60)}))"


def _dsp() -> str:
    """The Faust program: one mono chain, every stage switchable by a slider."""
    peaks = " : ".join(
        f"fi.peak_eq_cq({_sl(f'pk{i}_db', 0, -30, 30)}, {_sl(f'pk{i}_hz', 1000, 20, 24000)}, {_sl(f'pk{i}_q', 1, 0.05, 20)})"
        for i in range(_N_PEAKS)
    )
    mix = _sl("r_mix", 0.3, 0, 1)
    return f"""
    import("stdfaust.lib");
    hp = ba.bypass1({_on("hp_on")}, fi.highpass(2, {_sl("hp_hz", 100, 10, 24000)}));
    lp = ba.bypass1({_on("lp_on")}, fi.lowpass(2, {_sl("lp_hz", 8000, 10, 24000)}));
    eq = fi.low_shelf({_sl("ls_db", 0, -30, 30)}, {_sl("ls_hz", 200, 10, 24000)}) : {peaks}
       : fi.high_shelf({_sl("hs_db", 0, -30, 30)}, {_sl("hs_hz", 4000, 10, 24000)}) : hp : lp;
    comp = co.compressor_mono({_sl("c_ratio", 4, 1, 100)}, {_sl("c_thr_db", -20, -90, 0)},
                              {_sl("c_att_s", 0.01, 0.00001, 1)}, {_sl("c_rel_s", 0.1, 0.001, 5)}) : {_lvl("c_makeup_db")};
    dist = ef.cubicnl({_sl("d_drive", 0.5, 0, 1)}, {_sl("d_offset", 0, -1, 1)});
    zita = _ <: re.zita_rev1_stereo({_sl("z_pre_ms", 20, 0, 100)}, {_sl("z_xover_hz", 200, 50, 1000)},
                                   {_sl("z_damp_hz", 6000, 1000, 24000)}, {_sl("z_t60_low_s", 2, 0.1, 20)},
                                   {_sl("z_t60_mid_s", 2, 0.1, 20)}, 48000) :> *(0.5);
    jp = _ <: re.jpverb({_sl("j_t60_s", 1, 0.1, 60)}, {_sl("j_damp", 0, 0, 0.999)}, {_sl("j_size", 1, 0.5, 5)},
                        0.707, {_sl("j_mod_depth", 0.1, 0, 1)}, 2, {_sl("j_low", 1, 0, 1)}, 1, {_sl("j_high", 1, 0, 1)},
                        {_sl("j_lowcut_hz", 500, 100, 6000)}, {_sl("j_highcut_hz", 2000, 1000, 10000)}) :> *(0.5);
    rev = _ <: *(1 - {mix}), ((_ <: zita, jp : select2(hslider("r_jp", 0, 0, 1, 1))) : *({mix})) :> _;
    process = {_lvl("g_eq_db")} : ba.bypass1({_on("eq_on")}, eq)
            : {_lvl("g_compressor_db")} : ba.bypass1({_on("compressor_on")}, comp)
            : {_lvl("g_distortion_db")} : ba.bypass1({_on("distortion_on")}, dist)
            : {_lvl("g_reverb_db")} : ba.bypass1({_on("reverb_on")}, rev)
            : {_lvl("g_out_db")};
    """


_EFFECTS = ("eq", "compressor", "distortion", "reverb")


def draw(effect: str, rng: np.random.Generator, nyquist: float) -> dict:
    """One effect's sliders, in Faust's terms and ranges a user would set."""
    if effect == "eq":
        p = {"ls_db": _u(rng, -15, 15) if rng.random() < 0.7 else 0.0, "ls_hz": _log(rng, 60, 500)}
        n_peaks = int(rng.integers(1, _N_PEAKS + 1))
        for i in range(_N_PEAKS):
            p[f"pk{i}_db"] = _u(rng, -15, 15) if i < n_peaks else 0.0
            p[f"pk{i}_hz"] = _log(rng, 100, 0.85 * nyquist)
            p[f"pk{i}_q"] = _log(rng, 0.3, 5.0)
        p["hs_db"] = _u(rng, -15, 15) if rng.random() < 0.7 else 0.0
        p["hs_hz"] = _log(rng, 1000, 0.8 * nyquist)
        cut = rng.random()
        p["hp_on"], p["hp_hz"] = float(cut < 0.125), _log(rng, 40, 300)
        p["lp_on"], p["lp_hz"] = float(0.125 <= cut < 0.25), _log(rng, 2000, 0.9 * nyquist)
        return p
    if effect == "compressor":
        return {
            "c_ratio": _log(rng, 2, 20),
            "c_thr_db": _u(rng, -45, -5),
            "c_att_s": _log(rng, 0.0005, 0.05),
            "c_rel_s": _log(rng, 0.02, 0.6),
            "c_makeup_db": _u(rng, 0, 12),
        }
    if effect == "distortion":
        return {"d_drive": _u(rng, 0.2, 1.0), "d_offset": _u(rng, 0, 0.4) if rng.random() < 0.5 else 0.0}
    if rng.random() < 0.6:
        p = {
            "r_jp": 0.0,
            "z_pre_ms": _u(rng, 0, 60),
            "z_xover_hz": _log(rng, 100, 400),
            "z_damp_hz": _log(rng, 1500, 0.9 * nyquist),
            "z_t60_low_s": _log(rng, 0.4, 6),
            "z_t60_mid_s": _log(rng, 0.3, 5),
        }
    else:
        p = {
            "r_jp": 1.0,
            "j_t60_s": _log(rng, 0.3, 5),
            "j_damp": _u(rng, 0, 0.9),
            "j_size": _u(rng, 0.5, 3),
            "j_mod_depth": _u(rng, 0, 0.5),
            "j_low": _u(rng, 0.5, 1),
            "j_high": _u(rng, 0.2, 1),
            "j_lowcut_hz": _log(rng, 200, 1000),
            "j_highcut_hz": _log(rng, 2000, min(10000, 0.9 * nyquist)),
        }
    p["r_mix"] = _u(rng, 0.1, 0.6)
    return p


class _Program:
    """The compiled chain at one sample rate (DawDreamer: a playback source into the program)."""

    def __init__(self, sample_rate: int):
        try:
            import dawdreamer
        except ImportError as err:
            raise MissingImplementation("dawdreamer is not installed: pip install dawdreamer") from err

        self.sample_rate = sample_rate
        self.engine = dawdreamer.RenderEngine(sample_rate, 256)
        self.faust = self.engine.make_faust_processor("chain")
        if not self.faust.set_dsp_string(_dsp()):
            raise RuntimeError("the Faust chain did not compile")
        self.source = self.engine.make_playback_processor("source", np.zeros((1, 1), np.float32))
        self.engine.load_graph([(self.source, []), (self.faust, ["source"])])
        self.defaults = {d["name"].rsplit("/", 1)[-1]: d["value"] for d in self.faust.get_parameters_description()}

    def __call__(self, x: np.ndarray, sliders: dict) -> np.ndarray:
        for name, default in self.defaults.items():
            self.faust.set_parameter(f"/dawdreamer/{name}", float(sliders.get(name, default)))
        self.source.set_data(np.asarray(x, np.float32)[None])
        self.engine.render(len(x) / self.sample_rate)
        y = np.asarray(self.engine.get_audio(), np.float64)[0]
        out = np.zeros(len(x))
        out[: min(len(x), len(y))] = y[: len(x)]
        return out


@functools.lru_cache(maxsize=4)
def _program(sample_rate: int) -> _Program:
    return _Program(sample_rate)


def sliders(stages: list[tuple[str, dict]]) -> dict:
    """A chain's stages as the program's sliders: each effect's own, ``<effect>_on``, and each
    level change as the one before the next effect (``g_<effect>_db``) or at the end."""
    out: dict[str, float] = {}
    pending = 0.0
    for name, p in stages:
        if name == "gain":
            pending += p["gain_db"]
            continue
        out[f"g_{name}_db"], pending = pending, 0.0
        out[f"{name}_on"] = 1.0
        out.update(p)
    out["g_out_db"] = pending
    return out


def render(x: np.ndarray, sample_rate: int, stages: list[tuple[str, dict]]) -> np.ndarray:
    """The chain's ``stages`` played on mono ``x`` (1-D float), float64 of x's length."""
    if any(name not in (*_EFFECTS, "gain") for name, _ in stages):
        raise ValueError(f"a Faust chain holds {_EFFECTS} and gains, not {[n for n, _ in stages]}")
    return _program(int(sample_rate))(x, sliders(stages))
