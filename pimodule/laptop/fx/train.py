"""Train an effect-chain estimator (which of EQ, compressor, distortion, reverb, and their settings).

Dry excerpts (speech, samples, soundfont instruments; the ``train`` split) go through random chains
on the fly; the objective is ``param``, ``audio`` (multi-resolution STFT through the differentiable
chain) or ``hybrid``. The run folder (pimodule.laptop.runs) gets run.toml, log.jsonl, a checkpoint
every ``checkpoint_every`` steps, plots/loss.png and plots/example.png; Ctrl-C saves a checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import matplotlib
import numba
import numpy as np
import torch

from pimodule.core.fx_specs import EFFECTS_VERSION
from pimodule.laptop import runs
from pimodule.laptop.fx.batch import random_batch
from pimodule.laptop.fx.chain import apply_chain
from pimodule.laptop.fx.evaluate import make_cases, predict, selection_scores
from pimodule.laptop.fx.losses import OBJECTIVES, estimator_loss
from pimodule.laptop.fx.model import CONDITIONING, Estimator, analysis_samples
from pimodule.laptop.fx.run import (
    TrainConfig,
    config_to_toml,
    learning_rate_at,
    load_config,
    load_optimizer_state,
    load_run,
    save_run,
    weights_from_onnx,
    with_overrides,
)
from pimodule.laptop.fx.sources import DryCorpus
from pimodule.laptop.loop import Budget, Interrupted

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the non-interactive backend)

log = logging.getLogger(__name__)

EXAMPLES = (
    "pimodule train fx --out runs/fx_dry --config configs/fx_dry.toml",
    "pimodule train fx --out runs/fx_blind --config configs/fx_blind.toml --steps 2000",
    "pimodule train fx --out runs/fx_dry --resume",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="run folder (created)")
    parser.add_argument("--config", type=Path, help="recipe TOML (family, [model], [train]), e.g. configs/fx_dry.toml")
    parser.add_argument(
        "--objective",
        choices=OBJECTIVES,
        help="param: parameter error; audio: distance of the re-rendered audio; hybrid: both",
    )
    parser.add_argument(
        "--conditioning",
        choices=CONDITIONING,
        help="what the estimator hears besides the wet signal: nothing, the dry source, or a reference",
    )
    parser.add_argument("--steps", type=int, help="training steps (overrides the recipe)")
    parser.add_argument("--batch-size", type=int, dest="batch_size", help="examples per step")
    parser.add_argument("--seed", type=int, help="random seed (data, chains and initial weights)")
    parser.add_argument("--sample-rate", type=int, dest="sample_rate", help="the model's sample rate in Hz")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def set_threads(n: int) -> None:
    """One thread per process for torch and for numba (torchcomp/torchlpc kernels run parallel
    loops otherwise, which thrash on a shared 2-core machine)."""
    torch.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def train(config: TrainConfig, run_dir: Path, resume: bool = False, progress: bool = True) -> dict:
    """Train (or resume) and return the run's metadata at the end (step, seconds, last validation).
    Ctrl-C saves a checkpoint and raises :class:`pimodule.laptop.loop.Interrupted`."""
    set_threads(config.threads)
    torch.manual_seed(config.seed)
    run_dir = Path(run_dir)
    model = Estimator(config.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    start, train_seconds = 0, 0.0
    if resume and runs.checkpoint(run_dir) is not None:
        model, config_saved, meta = load_run(run_dir)
        if config_saved.model != config.model:
            raise ValueError(f"{run_dir}: model config differs from the saved run's")
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        state = load_optimizer_state(run_dir)
        if state:
            optimizer.load_state_dict(state)
        start, train_seconds = int(meta["step"]), float(meta.get("train_seconds", 0.0))
    elif config.init_from:
        weights = weights_from_onnx(Path(config.init_from))
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise ValueError(f"{config.init_from}: not this architecture (missing {missing}, unexpected {unexpected})")
        log.info("starting from the weights of %s", config.init_from)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / runs.CONFIG_FILE).write_text(config_to_toml(config))
    runs.truncate_log(run_dir, start)
    sr = config.model.sample_rate
    n_samples = analysis_samples(config.model, config.excerpt_s)
    corpus = DryCorpus.load(
        sr, "train", config.kinds, max_files=config.max_files or None, instruments=config.instruments
    )
    rng = np.random.default_rng([config.seed, start])
    generator = torch.Generator().manual_seed(config.seed * 100003 + start)
    val = _validation_set(config, n_samples) if config.val_every else None
    log.info(
        "estimator: %d parameters, %s/%s, %d-sample windows at %d Hz",
        model.n_parameters(),
        config.objective,
        config.model.conditioning,
        n_samples,
        sr,
    )
    budget = Budget(
        steps=config.steps,
        start=start,
        max_minutes=config.max_minutes,
        elapsed_s=train_seconds,
        desc=f"train fx ({config.objective})",
        progress=progress,
    )
    seconds: list[float] = []
    # the effects' definition the weights are trained for (exported into the file's metadata)
    meta: dict = {"train_seconds": train_seconds, "effects_version": EFFECTS_VERSION}

    def checkpoint_now() -> None:
        meta["train_seconds"] = budget.elapsed_s
        meta["seconds_per_step"] = float(np.median(seconds)) if seconds else meta.get("seconds_per_step")
        save_run(run_dir, config, model, optimizer, budget.step, meta)

    model.train()
    try:
        for step in budget:
            t0 = time.perf_counter()
            lr = learning_rate_at(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = random_batch(
                corpus,
                rng,
                generator,
                config.model.conditioning,
                config.batch_size,
                n_samples,
                config.p_active,
                config.labels,
                config.foreign,
                config.foreign_share,
                config.peak_level,
            )
            pred, active_logits, mode_logits = model(batch.wet, batch.other)
            loss, parts = estimator_loss(
                config.objective,
                pred,
                active_logits,
                mode_logits,
                batch.chain,
                batch.source,
                batch.target,
                sr,
                teacher_forcing=config.teacher_forcing,
                select_weight=config.select_weight,
                change=batch.change,
                change_weight=config.change_weight,
                level_match=config.level_match,
            )
            if not torch.isfinite(loss):
                raise FloatingPointError(f"step {step}: loss is {float(loss)} ({parts})")
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            seconds.append(time.perf_counter() - t0)
            value = float(loss.detach())
            budget.done(loss=value, **parts)
            runs.append_log(
                run_dir,
                {"step": budget.step, "loss": value, "parts": parts, "lr": lr, "seconds": round(budget.elapsed_s, 2)},
            )
            if val is not None and (budget.step % config.val_every == 0 or budget.last):
                v = validate(model, val)
                meta["val"] = {"step": budget.step, **v}
                runs.append_log(run_dir, {"step": budget.step, "val": v})
                log.info(
                    "step %d: selection %.3f (clear %.3f, removal labels %.3f)",
                    budget.step,
                    v["selection_accuracy"],
                    v["selection_accuracy_clear"],
                    v["selection_accuracy_removal"],
                )
            if budget.step % config.checkpoint_every == 0 or budget.last:
                checkpoint_now()
                seconds = seconds[-50:]
    except KeyboardInterrupt:
        if budget.step > start:
            checkpoint_now()
        raise Interrupted(
            f"stopped at step {budget.step}; checkpoint saved in {run_dir}. Resume with: "
            f"pimodule train fx --out {run_dir} --resume"
        ) from None
    finally:
        budget.close()
    plot_history(runs.read_log(run_dir), run_dir / "plots" / "loss.png")
    plot_example(model, config, corpus, run_dir / "plots" / "example.png")
    return {"step": budget.step, **meta}


def _validation_set(config: TrainConfig, n_samples: int):
    """Held-out chains drawn as `pimodule eval fx` draws its "chain" case (another seed)."""

    corpus = DryCorpus.load(config.model.sample_rate, "heldout", max_files=config.max_files or None)
    return make_cases(corpus, config.val_examples, n_samples, config.val_seed, ["chain"])["chain"]


def validate(model: Estimator, batch) -> dict:
    """Chain-selection scores of ``model`` on a validation batch (the model is left in train mode)."""

    model.eval()
    active = predict(model, batch).active
    model.train()
    return selection_scores(active, batch)


def plot_history(records: list[dict], path: Path) -> None:
    steps_records = [r for r in records if "loss" in r]
    if not steps_records:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.array([r["step"] for r in steps_records])
    keys = sorted({k for r in steps_records for k in r.get("parts", {})})
    for key in ["loss"] + keys:
        values = np.array([r["loss"] if key == "loss" else r.get("parts", {}).get(key, np.nan) for r in steps_records])
        k = max(1, len(values) // 50)
        smooth = np.convolve(values, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1 :], smooth, label=key)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("fx estimator training")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_example(model: Estimator, config: TrainConfig, corpus: DryCorpus, path: Path) -> None:
    """Spectrograms of one example: dry, target (wet) and the estimate re-rendered."""
    sr = config.model.sample_rate
    batch = random_batch(
        corpus,
        np.random.default_rng(123),
        torch.Generator().manual_seed(123),
        config.model.conditioning,
        1,
        analysis_samples(config.model, config.excerpt_s),
        config.p_active,
    )
    model.eval()
    with torch.no_grad():
        pred, _, _ = model(batch.wet, batch.other)
        est = apply_chain(batch.source[:, None], sr, pred.hard())[0, 0]
    fig, axes = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
    for ax, (title, sig) in zip(
        axes, [("input", batch.source[0]), ("target", batch.target[0]), ("estimate re-rendered", est)]
    ):
        ax.specgram(sig.numpy(), NFFT=512, Fs=sr, noverlap=384, vmin=-140)
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    saved = args.out / runs.CONFIG_FILE
    if args.config:
        config = load_config(args.config)
    elif args.resume and saved.is_file():
        config = load_config(saved)
    else:
        config = TrainConfig()
    config = with_overrides(
        config,
        objective=args.objective,
        conditioning=args.conditioning,
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        sample_rate=args.sample_rate,
    )
    meta = train(config, args.out, resume=args.resume, progress=not args.no_progress)
    print(
        f"trained {meta['step']} steps; median {meta.get('seconds_per_step') or 0:.3f} s/step, "
        f"{meta.get('train_seconds', 0.0):.0f} s in all; run in {args.out}"
    )
    return 0
