"""The real-recording benchmark: recordings the estimators never trained on, processed by
third-party effect chains, as a musician meets fx mode.

Recordings (:data:`RECORDINGS`) ship inside Debian and PyPI packages that the training material
(:mod:`pimodule.laptop.fx.sources`) never reads: speech (ALSA's test voice, Pure Data's voice, the
Apollo 11 recording of SuperCollider, pyo's baseball commentary), pyo's drum loop, flute, guitar
chord, aluminium hit and a piece of music, Pure Data's bell. Each example: an excerpt of
:data:`EXCERPT_S` seconds at :data:`SAMPLE_RATE` (shorter recordings are padded with silence, so a
reverb's tail is heard), its level set to a random peak between −20 and −1 dBFS (the dry file a
user has), a random chain of one family (:mod:`pimodule.laptop.fx.thirdparty`: each effect on with
probability ½, level changes anywhere) and the processed signal peak-normalised to −1 dBFS (the wet
file). Which effects are in the chain is judged by audibility: an effect is on when removing it
from the chain changes the level-matched log-mel of the output by at least
:data:`~pimodule.core.fx_specs.LABEL_DB` (1.5 dB), as the training labels by removal do.

Style transfer examples follow DeepAFx-ST: two different excerpts ``a`` and ``b`` of one recording,
reference = chain(a), input = b, target = chain(b).

Everything is drawn from one seed: the same seed gives the same examples, bit for bit.
"""

from __future__ import annotations

import importlib.util
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from pimodule.core.fx_specs import LABEL_DB, SELECTABLE
from pimodule.laptop.fx import thirdparty
from pimodule.laptop.fx.losses import mel_distance
from pimodule.laptop.fx.sources import DryCorpus

SAMPLE_RATE = 16000
EXCERPT_S = 2.0
STYLE_S = 1.5
WET_PEAK_DB = -1.0


@dataclass(frozen=True)
class Recording:
    name: str
    kind: str  # what is heard
    package: str  # "apt:NAME" or "pip:NAME"
    path: str  # absolute, or relative to the pip package's folder


RECORDINGS = (
    Recording("alsa_voice", "speech", "apt:alsa-utils", "/usr/share/sounds/alsa/Front_Center.wav"),
    Recording("pd_voice", "speech", "apt:puredata-doc", "/usr/share/puredata/doc/sound/voice.wav"),
    Recording("apollo11", "speech (radio)", "apt:supercollider-common", "/usr/share/SuperCollider/sounds/a11wlk01.wav"),
    Recording("baseball", "speech (commentary)", "pip:pyo", "examples/snds/baseballmajeur_m.aif"),
    Recording("drumloop", "drums", "pip:pyo", "examples/snds/drumloop.wav"),
    Recording("flute", "flute", "pip:pyo", "examples/snds/flute.aif"),
    Recording("bell", "bell", "apt:puredata-doc", "/usr/share/puredata/doc/sound/bell.aiff"),
    Recording("chord", "guitar chord", "pip:pyo", "lib/snds/accord.aif"),
    Recording("aluminium", "metal percussion", "pip:pyo", "examples/snds/alum4.wav"),
    Recording("music", "music (mixed)", "pip:pyo", "examples/snds/ounkmaster.aif"),
)


class BenchmarkError(RuntimeError):
    """A benchmark recording is missing (the message names the package)."""


def recording_path(rec: Recording) -> Path:
    kind, name = rec.package.split(":", 1)
    if kind == "apt":
        return Path(rec.path)
    spec = importlib.util.find_spec(name)  # the package's folder, without importing it
    if spec is None or not spec.submodule_search_locations:
        raise BenchmarkError(f"{rec.name}: the PyPI package {name} is not installed (pip install {name})")
    return Path(list(spec.submodule_search_locations)[0]) / rec.path


def load_recording(rec: Recording, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    path = recording_path(rec)
    if not path.is_file():
        kind, name = rec.package.split(":", 1)
        how = f"apt-get install {name}" if kind == "apt" else f"pip install {name}"
        raise BenchmarkError(f"{rec.name}: {path} is missing ({how})")
    audio, sr = sf.read(str(path), dtype="float64", always_2d=True)
    audio = audio.mean(1)
    return soxr.resample(audio, sr, sample_rate) if sr != sample_rate else audio


def benchmark_paths() -> list[Path]:
    """The files the benchmark reads (a test holds them out of the training lists)."""
    out = []
    for rec in RECORDINGS:
        try:
            out.append(recording_path(rec))
        except BenchmarkError:
            out.append(Path(rec.path))
    return out


@dataclass
class Example:
    recording: str
    family: str
    chain: thirdparty.ForeignChain
    dry: np.ndarray  # what the user has unprocessed (or, in style examples, the input b)
    wet: np.ndarray  # the processed file (in style examples the target chain(b))
    change_db: dict  # effect -> what removing it changes in the output (dB)
    reference: np.ndarray | None = None  # style examples: chain(a)

    @property
    def audible(self) -> dict[str, bool]:
        """Each selectable effect: in the chain and heard (removing it changes >= LABEL_DB)."""
        return {e: self.change_db.get(e, 0.0) >= LABEL_DB for e in SELECTABLE}


def _seed(*parts) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(str(p).encode()) for p in parts])


def _excerpt(audio: np.ndarray, n: int, rng: np.random.Generator, avoid: tuple[int, int] | None = None) -> np.ndarray:
    """``n`` samples of ``audio`` from a random start that is not near-silent (padded when short);
    ``avoid`` = (start, n) of an excerpt it must not overlap when the recording is long enough."""
    if len(audio) <= n:
        return np.pad(audio, (0, n - len(audio)))
    peak_rms = np.sqrt(np.mean(audio**2)) + 1e-12
    best = None
    for _ in range(16):
        start = int(rng.integers(0, len(audio) - n + 1))
        if avoid is not None and abs(start - avoid[0]) < avoid[1] and len(audio) >= 2 * n:
            continue
        seg = audio[start : start + n]
        if np.sqrt(np.mean(seg**2)) > 0.3 * peak_rms:
            return seg.copy()
        best = seg if best is None else best
    return (best if best is not None else audio[:n]).copy()


def _peak(x: np.ndarray, db: float) -> np.ndarray:
    return x * (10 ** (db / 20) / (np.max(np.abs(x)) + 1e-12))


def _unit_rms(x: torch.Tensor) -> torch.Tensor:
    return x / (x.square().mean(-1, keepdim=True).sqrt() + 1e-9)


def removal_changes(x: np.ndarray, sample_rate: int, chain: thirdparty.ForeignChain, y: np.ndarray) -> dict:
    """effect -> level-matched log-mel distance (dB) between ``y`` (= chain on x) and the chain
    without that effect, for every effect in the chain."""
    out = {}
    for e in chain.effects:
        alt = thirdparty.render(x, sample_rate, chain.without(e))
        d = mel_distance(_unit_rms(torch.from_numpy(alt)[None]), _unit_rms(torch.from_numpy(y)[None]), sample_rate)
        out[e] = float(d[0])
    return out


def build(
    seed: int = 0,
    draws: int = 3,
    families=thirdparty.BENCHMARK,
    recordings=RECORDINGS,
    sample_rate: int = SAMPLE_RATE,
    seconds: float = EXCERPT_S,
) -> list[Example]:
    """Dry-conditioned and blind examples: ``draws`` chains of each family on each recording."""
    out = []
    n = int(seconds * sample_rate)
    for rec in recordings:
        audio = load_recording(rec, sample_rate)
        for family in families:
            for k in range(draws):
                rng = _seed(seed, rec.name, family, k)
                dry = _peak(_excerpt(audio, n, rng), rng.uniform(-20, -1))
                chain = thirdparty.draw(family, rng, sample_rate)
                wet = thirdparty.render(dry, sample_rate, chain)
                change = removal_changes(dry, sample_rate, chain, wet)
                out.append(Example(rec.name, family, chain, dry, _peak(wet, WET_PEAK_DB), change))
    return out


def build_style(
    seed: int = 0,
    draws: int = 3,
    families=thirdparty.BENCHMARK,
    recordings=RECORDINGS,
    sample_rate: int = SAMPLE_RATE,
    seconds: float = STYLE_S,
) -> list[Example]:
    """DeepAFx-ST examples from the recordings long enough for two separate excerpts: reference =
    chain(a), input b (``dry``), target chain(b) (``wet``)."""
    out = []
    n = int(seconds * sample_rate)
    for rec in recordings:
        audio = load_recording(rec, sample_rate)
        if len(audio) < 2 * n:
            continue
        for family in families:
            for k in range(draws):
                rng = _seed(seed, "style", rec.name, family, k)
                start_a = int(rng.integers(0, len(audio) - n + 1))
                a = audio[start_a : start_a + n].copy()
                b = _excerpt(audio, n, rng, avoid=(start_a, n))
                level = rng.uniform(-20, -1)
                a, b = _peak(a, level), _peak(b, level)
                chain = thirdparty.draw(family, rng, sample_rate)
                ref = thirdparty.render(a, sample_rate, chain)
                target = thirdparty.render(b, sample_rate, chain)
                change = removal_changes(b, sample_rate, chain, target)
                out.append(
                    Example(rec.name, family, chain, b, _peak(target, WET_PEAK_DB), change, _peak(ref, WET_PEAK_DB))
                )
    return out


#: the training material a tuning set draws from (never the benchmark's recordings)
TUNING_KINDS = ("speech", "samples", "voices", "music", "drums", "lmms")
#: the families the shipped files' thresholds and settings were tuned on (``faust`` may be added)
TUNING_FAMILIES = ("pedalboard",)


def build_tuning(
    seed: int = 0,
    n: int = 128,
    families=TUNING_FAMILIES,
    kinds=TUNING_KINDS,
    sample_rate: int = SAMPLE_RATE,
    seconds: float = EXCERPT_S,
    corpus=None,
) -> list[Example]:
    """Examples made as the benchmark's are, from the *training* recordings and the families
    training may see (not the held-out ones): what thresholds and settings are tuned on."""

    if any(f in thirdparty.HELD_OUT for f in families):
        raise ValueError(f"tuning never sees the held-out families {thirdparty.HELD_OUT}")
    corpus = corpus or DryCorpus.load(sample_rate, "train", kinds)
    names = [k for k in corpus.clips if corpus.clips[k]]
    out = []
    m = int(seconds * sample_rate)
    for i in range(n):
        rng = _seed(seed, "tuning", i)
        kind = names[int(rng.integers(len(names)))]
        clip = corpus.clips[kind][int(rng.integers(len(corpus.clips[kind])))].astype(np.float64)
        family = families[int(rng.integers(len(families)))]
        dry = _peak(_excerpt(clip, m, rng), rng.uniform(-20, -1))
        chain = thirdparty.draw(family, rng, sample_rate)
        wet = thirdparty.render(dry, sample_rate, chain)
        change = removal_changes(dry, sample_rate, chain, wet)
        out.append(Example(kind, family, chain, dry, _peak(wet, WET_PEAK_DB), change))
    return out


def describe_benchmark(examples: list[Example]) -> dict:
    """What the benchmark holds, for the results file."""
    heard = {e: sum(ex.audible[e] for ex in examples) for e in SELECTABLE}
    return {
        "n_examples": len(examples),
        "sample_rate": SAMPLE_RATE,
        "recordings": {
            r.name: {"kind": r.kind, "package": r.package, "file": Path(r.path).name}
            for r in RECORDINGS
            if any(ex.recording == r.name for ex in examples)
        },
        "families": sorted({ex.family for ex in examples}),
        "held_out_families": list(thirdparty.HELD_OUT),
        "audible_effects": heard,
        "examples_with_nothing_audible": sum(not any(ex.audible.values()) for ex in examples),
    }
