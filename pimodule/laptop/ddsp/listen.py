"""Listening to a voice on its held-out phrases (``pimodule eval ddsp MODEL --data D --listen OUT``).

Per held-out phrase ``NN``: ``NN_target.wav`` and ``NN_resynthesis.wav`` (one gain for both, so
A/B is at the same level, never clipped) and ``NN.png`` (pitch, loudness and the two spectrograms
over time). ``index.html`` lists the pairs with audio players, the pictures and the numbers: one
self-contained page (inline style, no script, no external resource), files referenced by
relative paths, so the folder can be moved or sent as it is.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np
import soundfile as sf

from pimodule.core import features
from pimodule.laptop.ddsp.plots import spectrogram_db

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the non-interactive backend)

PAGE = "index.html"
JUDGE = (
    "How to read the numbers: <b>f0 error</b> (median, cents) under 10 means the voice plays the "
    "notes it is given, above 50 it misses notes or jumps octaves. <b>Loudness error</b> (mean, dB) "
    "under 2 dB follows the dynamics, above 6 dB it does not. The <b>spectral loss</b> compares "
    "timbre; it only means something next to another voice's: the shipped violin and flute score "
    "0.76 and 0.70 with 0.8 dB and under 1 cent. Your ears decide: listen to the pairs."
)
STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "th{background:#eee}.phrase{border-top:2px solid #888;margin-top:1.5em;padding-top:.5em}"
    ".ab{display:flex;gap:2em;flex-wrap:wrap}.ab div{min-width:320px}img{max-width:100%}"
)


def _fmt(value: float | None, digits: int) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def phrase_picture(
    path: Path,
    target: np.ndarray,
    output: np.ndarray,
    example: dict[str, np.ndarray],
    sample_rate: int,
    hop: int,
    tracker: dict,
) -> None:
    """Pitch (target voiced frames vs the output's measured f0), loudness, and both spectrograms."""
    tracker = dict(tracker)
    n_fft = tracker.pop("n_fft", None)
    out_f0, out_per = features.yin_f0(output, sample_rate, hop_size=hop, **tracker)
    out_ld = features.a_weighted_loudness_db(output, sample_rate, hop_size=hop, n_fft=n_fft)
    n = min(len(out_f0), len(example["f0_hz"]))
    t = np.arange(n) * hop / sample_rate
    voiced = (example["periodicity"][:n] > 0.7) & (example["loudness_db"][:n] > -60)
    fig, axes = plt.subplots(4, 1, figsize=(9, 9), sharex=True, gridspec_kw={"height_ratios": [1, 1, 1.3, 1.3]})
    axes[0].plot(t, np.where(voiced, example["f0_hz"][:n], np.nan), lw=2, label="target (voiced)")
    axes[0].plot(t, np.where(out_per[:n] > 0.7, out_f0[:n], np.nan), lw=1, label="resynthesis")
    axes[0].set(ylabel="f0 (Hz)", yscale="log", title="pitch")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    axes[0].yaxis.set_major_formatter(plain)
    axes[0].yaxis.set_minor_formatter(plain)
    axes[1].plot(t, example["loudness_db"][:n], lw=2, label="target")
    axes[1].plot(t, out_ld[:n], lw=1, label="resynthesis")
    axes[1].set(ylabel="dB (A)", ylim=(-90, 0), title="loudness")
    for ax in axes[:2]:
        ax.legend(loc="upper right", fontsize=8)
    extent = (0, len(target) / sample_rate, 0, sample_rate / 2000)
    for ax, x, title in zip(axes[2:], (target, output), ("target (held out)", "resynthesis")):
        ax.imshow(spectrogram_db(x), origin="lower", aspect="auto", extent=extent, vmin=-80, vmax=20, cmap="magma")
        ax.set(ylabel="kHz", title=title)
    axes[-1].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_pair(out_dir: Path, stem: str, target: np.ndarray, output: np.ndarray, sample_rate: int) -> float:
    """Both wavs at one gain (peak at most -0.1 dBFS); returns the gain applied."""
    peak = max(float(np.max(np.abs(target))), float(np.max(np.abs(output))), 1e-9)
    gain = min(1.0, 0.99 / peak)
    for kind, x in (("target", target), ("resynthesis", output)):
        sf.write(str(out_dir / f"{stem}_{kind}.wav"), np.clip(x * gain, -1, 1), sample_rate, subtype="PCM_16")
    return gain


def page(title: str, metrics: dict, phrases: list[dict]) -> str:
    """The HTML text: overall numbers, how to read them, one section per phrase."""
    esc = html.escape
    rows = "".join(
        f"<tr><td><a href='#p{p['stem']}'>{esc(p['stem'])}</a></td><td>{_fmt(p['spectral_loss'], 3)}</td>"
        f"<td>{_fmt(p['loudness_error_db'], 2)}</td><td>{_fmt(p['f0_error_cents_median'], 1)}</td>"
        f"<td>{p['voiced_share']:.0%}</td></tr>"
        for p in phrases
    )
    head = (
        "<tr><th>phrase</th><th>spectral loss</th><th>loudness error (dB)</th>"
        "<th>f0 error (cents, median)</th><th>pitched</th></tr>"
    )
    total = (
        f"<tr><th>all</th><th>{_fmt(metrics.get('spectral_loss'), 3)}</th>"
        f"<th>{_fmt(metrics.get('loudness_error_db'), 2)}</th>"
        f"<th>{_fmt(metrics.get('f0_error_cents_median'), 1)}</th><th></th></tr>"
    )
    sections = "".join(
        f"<div class='phrase' id='p{p['stem']}'><h2>phrase {esc(p['stem'])}</h2><div class='ab'>"
        f"<div>A: held-out target<br><audio controls preload='none' src='{esc(p['stem'])}_target.wav'></audio></div>"
        f"<div>B: resynthesis<br><audio controls preload='none' src='{esc(p['stem'])}_resynthesis.wav'></audio></div>"
        f"</div><p>spectral loss {_fmt(p['spectral_loss'], 3)}, loudness error {_fmt(p['loudness_error_db'], 2)} dB, "
        f"f0 error {_fmt(p['f0_error_cents_median'], 1)} cents</p>"
        f"<img src='{esc(p['stem'])}.png' alt='pitch, loudness and spectrograms of phrase {esc(p['stem'])}'></div>"
        for p in phrases
    )
    return (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>"
        f"<p>{len(phrases)} held-out phrases: A is the recording, B the voice playing its pitch and "
        f"loudness (same gain).</p><table>{head}{rows}{total}</table><p>{JUDGE}</p>{sections}</body></html>\n"
    )


def write_listening(
    out_dir: Path | str,
    title: str,
    data: dict[str, np.ndarray],
    scored: list[dict],
    metrics: dict,
    sample_rate: int,
    hop: int,
    tracker: dict,
) -> Path:
    """Wavs, pictures and ``index.html`` for the scored held-out phrases (see
    :func:`pimodule.laptop.ddsp.evaluate.score_examples`); returns the page's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    width = max(2, len(str(len(scored))))
    phrases = []
    for s in scored:
        i, output = s["index"], s["output"]
        stem = f"{i + 1:0{width}d}"
        target = data["audio"][i][: len(output)]
        example = {k: data[k][i] for k in ("f0_hz", "periodicity", "loudness_db")}
        write_pair(out_dir, stem, target, output, sample_rate)
        phrase_picture(out_dir / f"{stem}.png", target, output, example, sample_rate, hop, tracker)
        voiced = (example["periodicity"] > 0.7) & (example["loudness_db"] > -60)
        phrases.append(
            {
                "stem": stem,
                "spectral_loss": s["spectral_loss"],
                "loudness_error_db": float(np.mean(s["loudness_error"])) if s["loudness_error"].size else None,
                "f0_error_cents_median": float(np.median(s["f0_error"])) if s["f0_error"].size else None,
                "voiced_share": float(voiced.mean()),
            }
        )
    (out_dir / "phrases.json").write_text(
        json.dumps({"title": title, "metrics": metrics, "phrases": phrases}, indent=1)
    )
    path = out_dir / PAGE
    path.write_text(page(title, metrics, phrases), encoding="utf-8")
    return path
