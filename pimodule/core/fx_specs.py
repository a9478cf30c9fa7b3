"""Parameter-spec tables of the effects: one table per effect, torch-free.

The torch effects (:mod:`pimodule.laptop.fx.effects`), their real-time twins (:mod:`pimodule.device.fx`), the
estimator's heads and the OSC/PD controls all read ranges from here, never from literals of their
own. A spec's name is the effect function's keyword argument, unit included (``_hz``, ``_db``,
``_ms``, ``_s``, ``_pct``); a test checks the names against the functions' signatures.
"""

from __future__ import annotations

from pimodule.core.params import ParamSpec, ParamTable


def _gain(name: str, lo: float = -12.0, hi: float = 12.0, doc: str = "") -> ParamSpec:
    return ParamSpec(name, "dB", lo, hi, 0.0, "lin", doc)


def _freq(name: str, lo: float, hi: float, default: float) -> ParamSpec:
    return ParamSpec(name, "Hz", lo, hi, default, "log", "centre/corner frequency")


def _q(name: str) -> ParamSpec:
    return ParamSpec(name, "", 0.4, 4.0, 0.707, "log", "quality factor (RBJ)")


#: Parametric EQ: low shelf, three peaking bands, high shelf (RBJ biquads, shelf slope S = 1).
EQ_SPECS = ParamTable(
    [
        _gain("low_shelf_gain_db"),
        _freq("low_shelf_freq_hz", 40.0, 400.0, 120.0),
        _gain("peak1_gain_db"),
        _freq("peak1_freq_hz", 80.0, 800.0, 250.0),
        _q("peak1_q"),
        _gain("peak2_gain_db"),
        _freq("peak2_freq_hz", 300.0, 3000.0, 1000.0),
        _q("peak2_q"),
        _gain("peak3_gain_db"),
        _freq("peak3_freq_hz", 1000.0, 7000.0, 3000.0),
        _q("peak3_q"),
        _gain("high_shelf_gain_db"),
        _freq("high_shelf_freq_hz", 1500.0, 7000.0, 4000.0),
    ]
)

#: Feed-forward compressor: peak detector (the instantaneous level, channels linked by their mean
#: square), soft-knee static curve, attack/release gain ballistics. Peak, as the compressors of
#: pedalboard (JUCE), Faust, SoX and dasp-pytorch detect: with a smoothed RMS detector ours could not
#: follow their fast compression of peaks, and a fit added a distortion to make up the difference.
COMPRESSOR_SPECS = ParamTable(
    [
        ParamSpec("threshold_db", "dB", -50.0, 0.0, -20.0, "lin", "static-curve threshold"),
        ParamSpec("ratio", ":1", 1.0, 20.0, 4.0, "log", "compression ratio"),
        ParamSpec("attack_ms", "ms", 0.5, 100.0, 10.0, "log", "gain-reduction time constant"),
        ParamSpec("release_ms", "ms", 10.0, 1000.0, 100.0, "log", "gain-recovery time constant"),
        ParamSpec("knee_db", "dB", 0.0, 18.0, 6.0, "lin", "soft-knee width"),
        ParamSpec("makeup_db", "dB", 0.0, 24.0, 0.0, "lin", "gain after compression"),
    ]
)

#: Waveshaping distortion; the curve (hard/soft/tanh) is a fixed per-chain choice, not a parameter.
DISTORTION_SPECS = ParamTable(
    [
        ParamSpec("drive_db", "dB", 0.0, 36.0, 12.0, "lin", "gain into the waveshaper"),
        ParamSpec("output_gain_db", "dB", -24.0, 0.0, -6.0, "lin", "gain after the waveshaper"),
    ]
)
DISTORTION_MODES = ("hard", "soft", "tanh")

#: Reverb: exponentially decaying filtered noise in three bands (low decays slowest), FFT convolution.
REVERB_SPECS = ParamTable(
    [
        ParamSpec("decay_s", "s", 0.1, 1.5, 0.5, "log", "T60 of the low band"),
        ParamSpec("damping_pct", "%", 0.0, 100.0, 50.0, "lin", "how much faster mid/high bands decay"),
        ParamSpec("mix_pct", "%", 0.0, 100.0, 30.0, "lin", "wet share of the output"),
    ]
)

GAIN_SPECS = ParamTable([ParamSpec("gain_db", "dB", -24.0, 24.0, 0.0, "lin", "broadband gain")])

#: The chain's effects, in processing order.
SPECS: dict[str, ParamTable] = {
    "eq": EQ_SPECS,
    "compressor": COMPRESSOR_SPECS,
    "distortion": DISTORTION_SPECS,
    "reverb": REVERB_SPECS,
    "gain": GAIN_SPECS,
}
EFFECT_NAMES: tuple[str, ...] = tuple(SPECS)
#: The effects chain selection decides on; ``gain`` is the always-on level stage.
SELECTABLE: tuple[str, ...] = ("eq", "compressor", "distortion", "reverb")
#: The version of the effects' definition a model is trained for (an estimator file's metadata
#: ``pimodule.fx.effects``; a file without it was made for version 1). A change to how an effect
#: sounds for the same parameters takes the next number, with what it changes for older files.
EFFECTS_VERSION = 2
EFFECTS_CHANGES: dict[int, tuple[str, str]] = {
    2: (
        "compressor",
        "the compressor now follows the peak level (it read a 5 ms RMS level when this file was "
        "trained), so its compressor estimates compress a few dB harder than they were meant to",
    ),
}
#: What counts as heard (pimodule.laptop.fx.batch): an effect that changes the sound by less than
#: INAUDIBLE_DB (level-matched log-mel) is off, from AUDIBLE_DB on; LABEL_DB decides in between.
INAUDIBLE_DB = 1.0
AUDIBLE_DB = 2.0
LABEL_DB = 0.5 * (INAUDIBLE_DB + AUDIBLE_DB)

#: Per effect, the parameters that say how much it does, each with the value at which it does
#: nothing (EQ gains 0 dB, compression ratio 1:1 at 0 dB threshold, no makeup, no drive, a dry
#: reverb). :func:`toward_neutral` moves an estimate part of the way there: what a blind estimate's
#: calibrated strength (``pimodule.fx.strength``) does with an effect it is unsure of the size of.
NEUTRAL: dict[str, dict[str, float]] = {
    "eq": {f"{band}_gain_db": 0.0 for band in ("low_shelf", "peak1", "peak2", "peak3", "high_shelf")},
    "compressor": {"threshold_db": 0.0, "ratio": 1.0, "makeup_db": 0.0},
    "distortion": {"drive_db": 0.0},
    "reverb": {"mix_pct": 0.0},
}


def toward_neutral(effect: str, params: dict[str, float], strength: float) -> dict[str, float]:
    """``params`` (physical units) with each amount parameter of ``effect`` moved to ``strength``
    of its distance from doing nothing, along its spec's own scale (a ratio of 4:1 at strength 0.5
    is 2:1); 1 leaves them, 0 makes the effect do nothing. Other parameters are kept."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be within [0, 1], got {strength}")
    out = dict(params)
    for name, neutral in NEUTRAL.get(effect, {}).items():
        if name not in out:
            continue
        v = float(out[name])
        if SPECS[effect][name].scale == "log":
            v = neutral * (max(v, 1e-12) / neutral) ** strength
        else:
            v = neutral + strength * (v - neutral)
        out[name] = v
    return out


# Fixed constants of the effects' structure (not parameters).
REVERB_PREDELAY_MS = 10.0  # the twin's partitioned convolution needs a predelay of >= one partition
REVERB_IR_S = 1.0  # impulse-response length
REVERB_BAND_EDGES_HZ = (500.0, 3000.0)  # low | mid | high
REVERB_SEED = 1234  # the noise is part of the effect's definition: torch and twin share it
