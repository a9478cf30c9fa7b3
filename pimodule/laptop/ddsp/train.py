"""Train a DDSP voice on a prepared dataset (your recordings or rendered phrases).

The run folder (pimodule.laptop.runs) gets run.toml, log.jsonl, checkpoints/, plots/ and listen/
(pictures and a held-out resynthesis to listen to, every few minutes) and, at the end,
metrics.json with held-out quality numbers; a run whose numbers are not finite is refused.
--max-minutes bounds the time (the progress bar's total and ETA follow it); Ctrl-C saves a
checkpoint and prints the command that resumes. Runs unchanged under torchrun (DDP, gloo).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from pimodule.laptop import runs
from pimodule.laptop.data import dataset, summary
from pimodule.laptop.ddsp.evaluate import evaluate_run
from pimodule.laptop.ddsp.loss import multiscale_spectral_loss
from pimodule.laptop.ddsp.model import DDSPVoice
from pimodule.laptop.ddsp.plots import write_plots
from pimodule.laptop.ddsp.recipe import FAMILY, RunConfig, TrainConfig
from pimodule.laptop.loop import Budget, Interrupted

log = logging.getLogger(__name__)


def dataset_info(data_dir: Path) -> dict:
    """dataset.json without its per-file lists (they would bloat checkpoints and model files)."""
    path = Path(data_dir) / dataset.INFO_FILE
    return summarize_info(dataset.load_info(data_dir)) if path.is_file() else {}


def summarize_info(info: dict) -> dict:
    out = {k: v for k, v in info.items() if k not in ("splits", "skipped", "notes")}
    out["splits"] = {
        name: {k: v for k, v in split.items() if k != "files"} for name, split in info.get("splits", {}).items()
    }
    return out


class CropSampler:
    """Random crops of ``crop_frames`` frames (and their audio) from the examples, seeded."""

    def __init__(self, data: dict[str, np.ndarray], hop_size: int, crop_frames: int, seed: int):
        self.audio, self.f0, self.loudness = data["audio"], data["f0_hz"], data["loudness_db"]
        n_frames = self.f0.shape[1]
        if n_frames < crop_frames:
            raise ValueError(f"examples have {n_frames} frames, fewer than crop_frames={crop_frames}")
        self.hop, self.crop = hop_size, crop_frames
        self.rng = np.random.default_rng(seed)

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = self.rng.integers(0, len(self.f0), batch_size)
        start = self.rng.integers(0, self.f0.shape[1] - self.crop + 1, batch_size)
        f0 = np.stack([self.f0[i, s : s + self.crop] for i, s in zip(idx, start)])
        ld = np.stack([self.loudness[i, s : s + self.crop] for i, s in zip(idx, start)])
        audio = np.stack([self.audio[i, s * self.hop : (s + self.crop) * self.hop] for i, s in zip(idx, start)])
        return torch.from_numpy(f0).float(), torch.from_numpy(ld).float(), torch.from_numpy(audio).float()


def data_stats(data: dict[str, np.ndarray], sample_rate: int) -> dict:
    """Register and level of the training data, stored in the model file's provenance: ``render``
    warns when an input's pitch leaves ``f0_hz_range`` (5th to 95th percentile of the voiced frames)."""
    audible = data["loudness_db"] > summary.AUDIBLE_DB
    voiced = audible & (data.get("periodicity", np.ones_like(data["f0_hz"])) > summary.VOICED)
    hz = data["f0_hz"][voiced]
    midi = summary.hz_to_midi(hz)
    out = {
        "f0_midi_mean": round(float(midi.mean()), 2) if midi.size else None,
        "loudness_db_mean": round(float(data["loudness_db"][audible].mean()), 2) if audible.any() else None,
        "minutes": round(data["audio"].size / sample_rate / 60, 2),
    }
    if hz.size:
        p5, p50, p95 = (float(v) for v in np.percentile(hz, (5, 50, 95)))
        out.update(f0_hz_range=[round(p5, 1), round(p95, 1)], f0_hz_median=round(p50, 1))
        out["f0_notes"] = f"{summary.note_name(p5)}-{summary.note_name(p95)}"
    return out


def check_held_out(data_dir: Path) -> None:
    """Refuse before training when the held-out part cannot score the voice (no audible pitched
    frames): the evaluation at the end would give NaN."""
    if not dataset.split_path(data_dir, "held_out").is_file():
        return
    held = dataset.load_dataset(data_dir, "held_out")
    scored = (held["loudness_db"] > summary.AUDIBLE_DB) & (held["periodicity"] > summary.VOICED)
    if not scored.any():
        raise ValueError(
            f"{data_dir}: the held-out part has no pitched audio to score the voice on "
            f"({len(held['audio'])} examples): prepare the data again with more recordings "
            f"(pimodule data prepare says how much), or train with --no-eval"
        )


def _dist_setup() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    return (dist.get_rank() if world > 1 else 0), world


def train(data_dir: Path, run_dir: Path, config: RunConfig, *, resume: bool = False, progress: bool = True) -> dict:
    """Train; returns the final metadata (step, loss, seconds). Ctrl-C saves a checkpoint first
    and raises :class:`pimodule.laptop.loop.Interrupted` with the command that resumes."""
    rank, world = _dist_setup()
    tc = config.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    run_dir = Path(run_dir)
    data = dataset.load_dataset(data_dir, "train")
    held_out = (
        dataset.load_dataset(data_dir, "held_out") if dataset.split_path(data_dir, "held_out").is_file() else None
    )
    info = dataset_info(data_dir)
    info = {**info, "stats": data_stats(data, config.model.sample_rate)}
    if info.get("sample_rate", config.model.sample_rate) != config.model.sample_rate:
        raise ValueError(f"dataset sample rate {info['sample_rate']} != model's {config.model.sample_rate}")
    torch.manual_seed(tc.seed)  # same initial weights on every rank
    model = DDSPVoice(config.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.learning_rate)
    gamma = tc.lr_decay_per_1000 ** (1 / 1000)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)
    step, elapsed_before = 0, 0.0
    found = runs.checkpoint(run_dir) if resume else None
    if found is not None:
        weights, saved, _ = runs.load_checkpoint(run_dir)
        model.load_state_dict(weights)
        state = runs.load_training_state(found)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, elapsed_before = int(saved["step"]), float(saved.get("train_seconds", 0.0))
        log.info("resumed %s at step %d", run_dir, step)
    if rank == 0:
        runs.write_config(run_dir, FAMILY, config.model, config.train)
        runs.truncate_log(run_dir, step)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    sampler = CropSampler(data, config.model.hop_size, tc.crop_frames, tc.seed + 1000 * rank + step)
    gen = torch.Generator().manual_seed(tc.seed + 7919 * rank + step)
    loss_fn = multiscale_spectral_loss(tc.fft_sizes)
    losses: list[float] = []
    budget = Budget(
        steps=tc.steps,
        start=step,
        max_minutes=tc.max_minutes,
        elapsed_s=elapsed_before,
        desc="train ddsp",
        progress=progress and rank == 0,
    )

    def meta_now() -> dict:
        return {
            "train_seconds": budget.elapsed_s,
            "data": {"dir": str(data_dir), **info},
            "loss": float(np.mean(losses[-50:])) if losses else None,
            "world_size": world,
        }

    def checkpoint_now() -> None:
        runs.save_checkpoint(
            run_dir,
            budget.step,
            model,
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": budget.step},
            meta_now(),
        )

    try:
        for _ in budget:
            f0, ld, target = sampler.batch(tc.batch_size)
            state = model.initial_state(tc.batch_size, generator=gen)
            audio = net(f0, ld, model.controls_tensor(tc.batch_size), *state)[0]
            loss = loss_fn(audio.unsqueeze(1), target.unsqueeze(1))
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"the loss became {value} at step {budget.step + 1}: lower the learning "
                    f"rate or check the data (pimodule data prepare prints its summary)"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            scheduler.step()
            losses.append(value)
            budget.done(loss=value)
            if rank == 0:
                runs.append_log(run_dir, {"step": budget.step, "loss": value, "seconds": round(budget.elapsed_s, 2)})
                if budget.step % tc.checkpoint_every == 0 or budget.last:
                    checkpoint_now()
                if budget.every("listen", tc.listen_every_minutes) or budget.last:
                    write_plots(run_dir, model, held_out, config.model.sample_rate)
        if budget.out_of_time:
            log.info("time limit of %.1f min reached at step %d", tc.max_minutes, budget.step)
    except KeyboardInterrupt:
        if budget.step == step:
            raise Interrupted(
                f"stopped before the first step{' of this session' if step else ''}: nothing new saved"
            ) from None
        if rank == 0:
            checkpoint_now()
        raise Interrupted(
            f"stopped at step {budget.step}; checkpoint saved in {run_dir}. Resume with: "
            f"pimodule train ddsp --data {data_dir} --out {run_dir} --resume"
        ) from None
    finally:
        budget.close()
        if world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    return {"step": budget.step, **meta_now()}


EXAMPLES = (
    "pimodule train ddsp --data data/mine --out runs/mine --max-minutes 30",
    "pimodule train ddsp --data data/violin --out runs/violin --config configs/ddsp.toml",
    "pimodule train ddsp --data data/mine --out runs/mine --resume",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="dataset folder made by pimodule data")
    parser.add_argument("--out", type=Path, required=True, help="run folder (created)")
    parser.add_argument("--config", type=Path, help="recipe TOML (family, [model], [train]), e.g. configs/ddsp.toml")
    parser.add_argument("--steps", type=int, help="number of training steps (overrides the recipe)")
    parser.add_argument("--max-minutes", type=float, help="stop after this many minutes of training")
    parser.add_argument("--seed", type=int, help="random seed (same seed, same data: same weights)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation at the end")


def main(args: argparse.Namespace) -> int:
    saved = args.out / runs.CONFIG_FILE
    config = RunConfig.from_toml(args.config if args.config or not (args.resume and saved.is_file()) else saved)
    overrides = {
        k: v
        for k, v in (("steps", args.steps), ("max_minutes", args.max_minutes), ("seed", args.seed))
        if v is not None
    }
    if overrides:
        config = RunConfig(config.model, TrainConfig(**{**asdict(config.train), **overrides}))
    if not args.no_eval:
        check_held_out(args.data)
    info = dataset.load_info(args.data) if (args.data / dataset.INFO_FILE).is_file() else {}
    for warning in info.get("summary", {}).get("warnings", []):
        log.warning("data: %s", warning)
    try:
        meta = train(args.data, args.out, config, resume=args.resume)
    except Interrupted as stop:
        print(f"pimodule train ddsp: {stop}", file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(f"trained {meta['step']} steps in {meta['train_seconds'] / 60:.1f} min, loss {meta['loss']:.3f}")
    if not args.no_eval and dataset.split_path(args.data, "held_out").is_file():
        metrics = evaluate_run(args.out, args.data)
        bad = [
            k
            for k in ("spectral_loss", "loudness_error_db", "f0_error_cents_median")
            if not math.isfinite(metrics.get(k, float("nan")))
        ]
        if bad:
            raise ValueError(
                f"held-out {', '.join(bad)} not finite: the held-out set has no audible voiced frames "
                f"({metrics.get('n_scored_frames', 0)} scored). Record more, with the instrument "
                f"playing; see pimodule data prepare --help"
            )
        print(json.dumps(metrics, indent=1))
    print(f"run folder: {args.out}   next: pimodule export {args.out} --out export/NAME.onnx")
    return 0
