"""The exported estimator (kind ``fx``) run by onnxruntime: torch-free, for the module and CLIs.

Inputs ``wet`` (and ``other`` for dry/reference-conditioned models) ``(batch, window)`` float32;
outputs ``active`` ``(batch, n_effects)`` probabilities, ``mode`` ``(batch, n_modes)`` and
``unit`` ``(batch, n_params)`` in [0, 1]. The metadata's ``pimodule.controls`` table (names
``effect.param``) maps ``unit`` to physical units; ``pimodule.fx.chain`` lists the effects in order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pimodule.core.fx_specs import EFFECTS_CHANGES, EFFECTS_VERSION, toward_neutral
from pimodule.core.modelfile import ModelFileError, parse_metadata
from pimodule.device.modelcheck import load_checked

KEY_CHAIN = "pimodule.fx.chain"
KEY_CONDITIONING = "pimodule.fx.conditioning"
#: per effect, the probability from which a blind estimate keeps it on (calibrated on the training
#: families so that what is kept rarely takes the sound away from the recording; JSON)
KEY_KEEP = "pimodule.fx.keep"
#: per effect, how much of a kept blind estimate's size is applied (0-1, towards doing nothing;
#: ``pimodule.core.fx_specs.toward_neutral``), calibrated with the thresholds (JSON)
KEY_STRENGTH = "pimodule.fx.strength"
#: the version of the effects' definition the file was trained for (``EFFECTS_VERSION``; absent: 1)
KEY_EFFECTS = "pimodule.fx.effects"
#: what each input carries for an estimator of each conditioning (status ``fx_inputs``); in
#: matching mode R is what plays through the chain
INPUTS = {"blind": "L wet, R input", "dry": "L wet, R dry", "reference": "L reference, R input"}
SELECTABLE = ("eq", "compressor", "distortion", "reverb")
CURVE_WORDS = {"hard": "hard clipping", "soft": "soft clipping", "tanh": "overdrive"}


class OnnxEstimator:
    def __init__(self, path: Path, threads: int = 1):
        import onnxruntime as ort

        name = Path(path).name
        # the file is data: read bounded and checked (no external data, no custom domains, sane
        # sizes) before onnxruntime sees it, and onnxruntime gets those bytes, never the path
        data, _ = load_checked(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise ModelFileError(f"{name}: not a loadable ONNX model ({type(err).__name__})") from err
        meta = self.session.get_modelmeta().custom_metadata_map
        self.info = parse_metadata(meta, name)
        if self.info.kind != "fx":
            raise ModelFileError(f"{name}: model kind {self.info.kind!r}, expected 'fx'")
        self.chain = json.loads(meta.get(KEY_CHAIN, "[]"))
        self.conditioning = meta.get(KEY_CONDITIONING, "blind")
        if self.conditioning not in INPUTS:
            raise ModelFileError(
                f"{name}: unknown conditioning {self.conditioning[:40]!r} (known: {', '.join(INPUTS)})"
            )
        #: what it reads on each input, in words (status ``fx_inputs``)
        self.inputs = INPUTS[self.conditioning]
        self.sample_rate = self.info.sample_rate
        self.window = self.info.block_size
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.keep = read_per_effect(meta.get(KEY_KEEP), 0.0, 1.01)
        self.strength = read_per_effect(meta.get(KEY_STRENGTH), 0.0, 1.0)
        self.effects_version = read_effects_version(meta.get(KEY_EFFECTS))
        #: what a user should know about this file on this runtime ("" when nothing)
        self.warning = effects_warning(name, self.effects_version, self.conditioning, self.keep)

    def run(self, wet: np.ndarray, other: np.ndarray | None = None):
        """``(batch, window)`` arrays -> ``(active, mode, unit)`` numpy arrays."""
        feeds = {"wet": np.ascontiguousarray(wet, dtype=np.float32)}
        if "other" in self.input_names:
            if other is None:
                raise ValueError(f"this estimator is {self.conditioning}-conditioned: needs a second signal")
            feeds["other"] = np.ascontiguousarray(other, dtype=np.float32)
        active, mode, unit = self.session.run(["active", "mode", "unit"], feeds)
        return active, mode, unit

    def describe(self, active: np.ndarray, mode: np.ndarray, unit: np.ndarray) -> dict:
        """One example's estimate as ``{effect: {"active", "probability", "params", ("mode")}}``."""
        out, col = {}, 0
        specs = list(self.info.controls)
        for i, entry in enumerate(self.chain):
            params = {}
            for name in entry["params"]:
                spec = specs[col]
                params[name] = float(spec.from_unit(float(unit[col])))
                col += 1
            p = float(active[i])
            item = {"active": p >= 0.5, "probability": round(p, 4), "params": params}
            if entry.get("modes"):
                item["mode"] = entry["modes"][int(np.argmax(mode))]
            out[entry["effect"]] = item
        return out


def read_per_effect(text: str | None, lo: float, hi: float) -> dict[str, float]:
    """A metadata entry ``{effect: number}`` (JSON): the selectable effects with a number in
    [lo, hi]; anything else in it is ignored (a file is data: a bad entry is no calibration)."""
    try:
        raw = json.loads(text or "{}")
        return {str(k): float(v) for k, v in raw.items() if str(k) in SELECTABLE and lo <= float(v) <= hi}
    except (ValueError, TypeError, AttributeError):
        return {}


def read_effects_version(text: str | None) -> int:
    """The file's ``pimodule.fx.effects`` entry: a whole number from 1 (absent: 1; unreadable:
    0, which no runtime plays as trained)."""
    if text is None:
        return 1
    try:
        version = int(str(text).strip())
    except ValueError:
        return 0
    return version if 1 <= version <= 1_000_000 else 0


def effects_warning(name: str, version: int, conditioning: str, keep: dict[str, float]) -> str:
    """Why an estimator file's estimates may not sound on this runtime as they did in training:
    the effects it can apply whose definition changed since the version it was trained for ("" when
    none; a blind file's effect that it never keeps, threshold above 1, cannot be applied)."""
    if version == EFFECTS_VERSION:
        return ""
    if version > EFFECTS_VERSION or version < 1:
        return (
            f"{name}: trained for effects version {version}, this runtime plays version {EFFECTS_VERSION}: "
            "update pimodule here so that its estimates sound as they were trained"
        )

    def applied(effect: str) -> bool:
        return conditioning != "blind" or keep.get(effect, 0.5) <= 1.0

    changes = [text for v, (effect, text) in sorted(EFFECTS_CHANGES.items()) if v > version and applied(effect)]
    if not changes:
        return ""
    return (
        f"{name}: trained for effects version {version}, this runtime plays version {EFFECTS_VERSION}: "
        + "; ".join(changes)
        + " (export it again from its run, or train it again, to be exact)"
    )


def keep_confident(estimate: dict, keep: dict[str, float], strength: dict[str, float] | None = None) -> dict:
    """A blind ``estimate`` (:meth:`OnnxEstimator.describe`) with only the effects the network is
    sure enough of left on: an effect stays on when its probability reaches ``keep[effect]`` (0.5
    when not calibrated), its size moved to ``strength[effect]`` of the estimate's (1 when not
    calibrated; :func:`pimodule.core.fx_specs.toward_neutral`, noted as ``strength``). Every
    selectable effect gets ``confidence`` in words: "on, sure" (p at least 0.9 and the threshold),
    "on, probably" (kept below 0.9), "unsure, left off" (p ≥ 0.5 but under the threshold), "off,
    probably" (p 0.1-0.5), "off, sure" (p < 0.1). The level stage is left at 0 dB: a processed
    file's level says nothing of the level its source had (networks trained on peak-normalised
    files put anything there, up to +16 dB from the shipped one), and what plays it must not jump."""
    strength = strength or {}
    out = {name: dict(item) for name, item in estimate.items()}
    if "gain" in out:
        out["gain"]["params"] = {**out["gain"].get("params", {}), "gain_db": 0.0}
    for name in SELECTABLE:
        if name not in out:
            continue
        p = float(out[name].get("probability", 1.0 if out[name].get("active") else 0.0))
        t = max(0.5, float(keep.get(name, 0.5)))
        on = p >= t
        out[name]["active"] = on
        if on:
            out[name]["confidence"] = "on, sure" if p >= max(t, 0.9) else "on, probably"
            s = min(1.0, max(0.0, float(strength.get(name, 1.0))))
            if s < 1.0:
                out[name]["params"] = toward_neutral(name, out[name].get("params", {}), s)
                out[name]["strength"] = s
        elif p >= 0.5:
            out[name]["confidence"] = "unsure, left off"
        else:
            out[name]["confidence"] = "off, probably" if p >= 0.1 else "off, sure"
    return out


def _db(v: float) -> str:
    return f"{v:+.1f} dB"


def settings_in_words(name: str, item: dict) -> str:
    """An effect's settings as a musician reads them ("decay 1.2 s, mix 25 %")."""
    p = item.get("params", {})
    if name == "eq":
        bands = []
        for band, label in (
            ("low_shelf", "low shelf"),
            ("peak1", "peak"),
            ("peak2", "peak"),
            ("peak3", "peak"),
            ("high_shelf", "high shelf"),
        ):
            g = p.get(f"{band}_gain_db", 0.0)
            if abs(g) >= 1.0:
                f = p.get(f"{band}_freq_hz", 0.0)
                where = f"{f / 1000:.1f} kHz" if f >= 1000 else f"{f:.0f} Hz"
                bands.append(f"{_db(g)} {label} at {where}")
        return ", ".join(bands) or "flat"
    if name == "compressor":
        return (
            f"threshold {p.get('threshold_db', 0):.0f} dB, ratio {p.get('ratio', 1):.1f}:1, attack "
            f"{p.get('attack_ms', 0):.0f} ms, release {p.get('release_ms', 0):.0f} ms, makeup {_db(p.get('makeup_db', 0))}"
        )
    if name == "distortion":
        curve = CURVE_WORDS.get(item.get("mode", ""), item.get("mode", ""))
        return f"{curve}, drive {p.get('drive_db', 0):.0f} dB, output {_db(p.get('output_gain_db', 0))}"
    if name == "reverb":
        return f"decay {p.get('decay_s', 0):.1f} s, mix {p.get('mix_pct', 0):.0f} %, damping {p.get('damping_pct', 0):.0f} %"
    if name == "gain":
        return f"level {_db(p.get('gain_db', 0))}"
    return ", ".join(f"{k} {v:.3g}" for k, v in p.items())


def in_words(estimate: dict) -> list[str]:
    """One line per effect: "reverb      on, sure        decay 1.2 s, mix 25 %, damping 40 %"."""
    lines = []
    for name, item in estimate.items():
        if name == "gain":
            lines.append(f"{'level':<11} {'':<17} {settings_in_words(name, item)}")
            continue
        word = item.get("confidence") or ("on" if item.get("active") else "off")
        said = settings_in_words(name, item) if item.get("active") else ""
        if item.get("active") and item.get("strength", 1.0) < 1.0:
            said += f" (applied at {100 * item['strength']:.0f} %: surer that it is there than of how much)"
        lines.append(f"{name:<11} {word:<17} {said}".rstrip())
    return lines
