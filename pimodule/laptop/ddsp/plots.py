"""Training plots: loss curve and a target-vs-resynthesis spectrogram (PNG, in RUN/plots/)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


def _spectrogram_db(audio: np.ndarray, n_fft: int = 1024, hop: int = 128) -> np.ndarray:
    x = torch.from_numpy(np.asarray(audio, np.float32))
    spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs()
    return 20 * np.log10(spec.numpy() + 1e-6)


def write_plots(run_dir: Path, model, sampler, seed: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    # One fixed example, start of the first training example, resynthesised from zero state.
    sr = model.config.sample_rate
    frames = min(sampler.f0.shape[1], 2 * sr // model.config.hop_size)
    f0 = torch.from_numpy(sampler.f0[:1, :frames]).float()
    ld = torch.from_numpy(sampler.loudness[:1, :frames]).float()
    target = sampler.audio[0, : frames * model.config.hop_size]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        audio = model(f0, ld, model.controls_tensor(1), *model.initial_state(1))[0][0].numpy()
    model.train(was_training)
    fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    extent = (0, len(target) / sr, 0, sr / 2000)
    for ax, x, title in zip(axes, (target, audio), ("target", "resynthesis")):
        ax.imshow(_spectrogram_db(x), origin="lower", aspect="auto", extent=extent, vmin=-80, vmax=20, cmap="magma")
        ax.set(ylabel="kHz", title=title)
    axes[-1].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(out / "spectrogram.png", dpi=100)
    plt.close(fig)
