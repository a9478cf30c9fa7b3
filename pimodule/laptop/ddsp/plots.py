"""Training plots and sound: the loss curve, a held-out phrase against its resynthesis as
spectrograms (RUN/plots/) and as two wav files at the same gain (RUN/listen/)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import soundfile as sf
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the non-interactive backend)


def spectrogram_db(audio: np.ndarray, n_fft: int = 1024, hop: int = 128) -> np.ndarray:
    x = torch.from_numpy(np.asarray(audio, np.float32))
    spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs()
    return 20 * np.log10(spec.numpy() + 1e-6)


def write_plots(run_dir: Path, model, held_out: dict | None, sample_rate: int, seconds: float = 4.0) -> None:
    """RUN/plots/loss.png, and for the held-out phrase with the most sound RUN/plots/spectrogram.png
    (target against resynthesis) and RUN/listen/heldout_{target,resynthesis}.wav, overwritten each
    time. ``pimodule eval ddsp --listen`` does this for every held-out phrase."""
    out = Path(run_dir) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    entries = [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines() if line]
    if entries:
        steps = np.array([e["step"] for e in entries])
        loss = np.array([e["loss"] for e in entries])
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot(steps, loss, lw=0.5, alpha=0.4, label="step")
        k = min(50, len(loss))
        ax.plot(steps[k - 1 :], np.convolve(loss, np.ones(k) / k, "valid"), lw=1.5, label=f"mean of {k}")
        ax.set(xlabel="step", ylabel="multi-scale spectral loss", title="training loss")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "loss.png", dpi=100)
        plt.close(fig)
    if held_out is None or len(held_out["f0_hz"]) == 0:
        return
    hop = model.config.hop_size
    frames = min(held_out["f0_hz"].shape[1], int(seconds * sample_rate) // hop)
    k = int(np.argmax((held_out["loudness_db"][:, :frames] > -60.0).sum(axis=1)))  # the fullest phrase
    f0 = torch.from_numpy(held_out["f0_hz"][k : k + 1, :frames]).float()
    ld = torch.from_numpy(held_out["loudness_db"][k : k + 1, :frames]).float()
    target = held_out["audio"][k, : frames * hop]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        audio = model(f0, ld, model.controls_tensor(1), *model.initial_state(1))[0][0].numpy()
    model.train(was_training)
    fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    extent = (0, len(target) / sample_rate, 0, sample_rate / 2000)
    for ax, x, title in zip(axes, (target, audio), ("held-out target", "resynthesis")):
        ax.imshow(spectrogram_db(x), origin="lower", aspect="auto", extent=extent, vmin=-80, vmax=20, cmap="magma")
        ax.set(ylabel="kHz", title=title)
    axes[-1].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(out / "spectrogram.png", dpi=100)
    plt.close(fig)
    listen = Path(run_dir) / "listen"
    listen.mkdir(exist_ok=True)
    peak = max(float(np.max(np.abs(target))), float(np.max(np.abs(audio))), 1e-9)
    scale = min(1.0, 0.99 / peak)  # one gain for both: A/B at the same level, never clipped
    sf.write(str(listen / "heldout_target.wav"), target * scale, sample_rate, subtype="PCM_16")
    sf.write(str(listen / "heldout_resynthesis.wav"), audio * scale, sample_rate, subtype="PCM_16")
