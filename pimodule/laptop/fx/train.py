"""``pimodule train fx``: train the effect-chain estimator.

Dry excerpts (speech, samples, soundfont instruments; the ``train`` split) go through random chains
on the fly; the objective is ``param``, ``audio`` (multi-resolution STFT through the differentiable
chain) or ``hybrid``. Writes into ``--out``: config.toml, model.safetensors (+ optimizer.pt) every
``checkpoint_every`` steps, history.json (losses, seconds per step), loss.png and example.png.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from pimodule.laptop.fx.batch import random_batch
from pimodule.laptop.fx.losses import OBJECTIVES, estimator_loss
from pimodule.laptop.fx.model import CONDITIONING, Estimator, analysis_samples
from pimodule.laptop.fx.run import (TrainConfig, learning_rate_at, load_config, load_optimizer_state, load_run,
                             save_run, with_overrides)
from pimodule.laptop.fx.sources import DryCorpus

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--config", type=Path, help="TOML config (defaults otherwise)")
    parser.add_argument("--objective", choices=OBJECTIVES)
    parser.add_argument("--conditioning", choices=CONDITIONING)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--sample-rate", type=int, dest="sample_rate")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def set_threads(n: int) -> None:
    """One thread per process for torch and for numba (torchcomp/torchlpc kernels run parallel
    loops otherwise, which thrash on a shared 2-core machine)."""
    torch.set_num_threads(n)
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass


def train(config: TrainConfig, run_dir: Path, resume: bool = False, progress: bool = True) -> dict:
    """Train (or resume) and return the history dict."""
    set_threads(config.threads)
    torch.manual_seed(config.seed)
    model = Estimator(config.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    history: dict = {"step": [], "loss": [], "parts": [], "seconds_per_step": None}
    start = 0
    if resume:
        model, config_saved, history = load_run(run_dir)
        if config_saved.model != config.model:
            raise ValueError(f"{run_dir}: model config differs from the saved run's")
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        state = load_optimizer_state(run_dir)
        if state:
            optimizer.load_state_dict(state)
        start = history["step"][-1] + 1 if history.get("step") else 0
    sr = config.model.sample_rate
    n_samples = analysis_samples(config.model, config.excerpt_s)
    corpus = DryCorpus.load(sr, "train", config.kinds, max_files=config.max_files or None,
                            instruments=config.instruments)
    rng = np.random.default_rng([config.seed, start])
    generator = torch.Generator().manual_seed(config.seed * 100003 + start)
    val = _validation_set(config, n_samples) if config.val_every else None
    log.info("estimator: %d parameters, %s/%s, %d-sample windows at %d Hz",
             model.n_parameters(), config.objective, config.model.conditioning, n_samples, sr)

    steps = range(start, config.steps)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(steps, desc=f"train fx ({config.objective})", unit="step")
        steps = bar
    seconds = []
    model.train()
    for step in steps:
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(config, step)
        batch = random_batch(corpus, rng, generator, config.model.conditioning, config.batch_size,
                             n_samples, config.p_active, config.labels)
        pred, active_logits, mode_logits = model(batch.wet, batch.other)
        loss, parts = estimator_loss(config.objective, pred, active_logits, mode_logits,
                                     batch.chain, batch.source, batch.target, sr,
                                     teacher_forcing=config.teacher_forcing,
                                     select_weight=config.select_weight, change=batch.change,
                                     change_weight=config.change_weight)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {step}: loss is {float(loss)} ({parts})")
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        seconds.append(time.perf_counter() - t0)
        history["step"].append(step)
        history["loss"].append(float(loss.detach()))
        history["parts"].append(parts)
        if bar is not None:
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", **{k: f"{v:.3f}" for k, v in parts.items()})
        last = step == config.steps - 1
        if val is not None and ((step + 1) % config.val_every == 0 or last):
            history.setdefault("val", []).append({"step": step + 1, **validate(model, val)})
            v = history["val"][-1]
            log.info("step %d: selection %.3f (clear %.3f, removal labels %.3f)", step + 1,
                     v["selection_accuracy"], v["selection_accuracy_clear"], v["selection_accuracy_removal"])
        if (step + 1) % config.checkpoint_every == 0 or last:
            history["seconds_per_step"] = float(np.median(seconds))
            history["train_seconds"] = history.get("train_seconds", 0.0) + float(np.sum(seconds))
            seconds = []
            save_run(run_dir, config, model, optimizer, history)
    if bar is not None:
        bar.close()
    plot_history(history, run_dir / "loss.png")
    plot_example(model, config, corpus, run_dir / "example.png")
    return history


def _validation_set(config: TrainConfig, n_samples: int):
    """Held-out chains drawn as `pimodule eval fx` draws its "chain" case (another seed)."""
    from pimodule.laptop.fx.evaluate import make_cases

    corpus = DryCorpus.load(config.model.sample_rate, "heldout", max_files=config.max_files or None)
    return make_cases(corpus, config.val_examples, n_samples, config.val_seed, ["chain"])["chain"]


def validate(model: Estimator, batch) -> dict:
    """Chain-selection scores of ``model`` on a validation batch (the model is left in train mode)."""
    from pimodule.laptop.fx.evaluate import predict, selection_scores

    model.eval()
    active = predict(model, batch).active
    model.train()
    return selection_scores(active, batch)


def plot_history(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.array(history["step"])
    keys = sorted({k for p in history["parts"] for k in p})
    for key in ["loss"] + keys:
        values = np.array(history["loss"] if key == "loss" else [p.get(key, np.nan) for p in history["parts"]])
        k = max(1, len(values) // 50)
        smooth = np.convolve(values, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, label=key)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("fx estimator training")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_example(model: Estimator, config: TrainConfig, corpus: DryCorpus, path: Path) -> None:
    """Spectrograms of one example: dry, target (wet) and the estimate re-rendered."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pimodule.laptop.fx.chain import apply_chain

    sr = config.model.sample_rate
    batch = random_batch(corpus, np.random.default_rng(123), torch.Generator().manual_seed(123),
                         config.model.conditioning, 1, analysis_samples(config.model, config.excerpt_s),
                         config.p_active)
    model.eval()
    with torch.no_grad():
        pred, _, _ = model(batch.wet, batch.other)
        est = apply_chain(batch.source[:, None], sr, pred.hard())[0, 0]
    fig, axes = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
    for ax, (title, sig) in zip(axes, [("input", batch.source[0]), ("target", batch.target[0]),
                                        ("estimate re-rendered", est)]):
        ax.specgram(sig.numpy(), NFFT=512, Fs=sr, noverlap=384, vmin=-140)
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else TrainConfig()
    if args.resume and (args.out / "config.toml").exists() and not args.config:
        config = load_config(args.out / "config.toml")
    config = with_overrides(config, objective=args.objective, conditioning=args.conditioning,
                            steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                            sample_rate=args.sample_rate)
    history = train(config, args.out, resume=args.resume, progress=not args.no_progress)
    print(f"trained {len(history['step'])} steps; median {history['seconds_per_step']:.3f} s/step, "
          f"{history.get('train_seconds', 0.0):.0f} s in all; run in {args.out}")
    return 0
