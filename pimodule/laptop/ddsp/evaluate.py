"""Held-out quality of a DDSP voice: spectral loss, loudness error (dB), f0 error (cents); with
--listen, each held-out phrase's target and resynthesis as wavs, a picture and one HTML page.

The f0 and loudness of the *output* are measured with the same trackers that made the training
features (pimodule.core.features), on frames where the target is voiced and audible.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from pimodule.core import features
from pimodule.device.session import ModelSession
from pimodule.laptop import runs
from pimodule.laptop.data import dataset
from pimodule.laptop.ddsp.listen import write_listening
from pimodule.laptop.ddsp.loss import multiscale_spectral_loss
from pimodule.laptop.ddsp.recipe import load_run

AUDIBLE_DB = -60.0  # frames quieter than this (target) are not scored
VOICED = 0.7  # periodicity above which a target frame counts as voiced


def frame_errors(
    output: np.ndarray,
    target_f0_hz: np.ndarray,
    target_loudness_db: np.ndarray,
    target_periodicity: np.ndarray,
    sample_rate: int,
    hop_size: int,
    tracker: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame |loudness error| (dB, audible frames) and |f0 error| (cents, voiced audible
    frames), measuring the output with the tracker settings the targets were made with."""
    tracker = dict(tracker or {})
    n_fft = tracker.pop("n_fft", None)
    out_ld = features.a_weighted_loudness_db(output, sample_rate, hop_size=hop_size, n_fft=n_fft)
    out_f0, _ = features.yin_f0(output, sample_rate, hop_size=hop_size, **tracker)
    n = min(len(out_ld), len(target_loudness_db))
    audible = target_loudness_db[:n] > AUDIBLE_DB
    voiced = audible & (target_periodicity[:n] > VOICED)
    ld_err = np.abs(out_ld[:n] - target_loudness_db[:n])[audible]
    err = np.abs(features.cents(np.maximum(out_f0[:n], 1e-3), np.maximum(target_f0_hz[:n], 1e-3)))
    return ld_err, err[voiced]


def summarize(spectral: list[float], ld_errs: list[np.ndarray], f0_errs: list[np.ndarray]) -> dict:
    ld = np.concatenate(ld_errs) if ld_errs else np.zeros(0)
    f0 = np.concatenate(f0_errs) if f0_errs else np.zeros(0)
    return {
        "spectral_loss": float(np.mean(spectral)),
        "loudness_error_db": float(np.mean(ld)) if ld.size else float("nan"),
        "f0_error_cents_median": float(np.median(f0)) if f0.size else float("nan"),
        "n_examples": len(spectral),
        "n_scored_frames": int(ld.size),
    }


def score_examples(
    render, data: dict[str, np.ndarray], sample_rate: int, hop_size: int, tracker: dict | None = None
) -> list[dict]:
    """``render(f0_hz, loudness_db) -> audio`` for each held-out example: per example its index,
    output, spectral loss and the per-frame loudness and f0 errors."""
    loss_fn = multiscale_spectral_loss()
    scored = []
    for i in range(len(data["audio"])):
        out = np.asarray(render(data["f0_hz"][i], data["loudness_db"][i]), np.float32)
        target = data["audio"][i][: len(out)]
        with torch.no_grad():
            spectral = float(loss_fn(torch.from_numpy(out)[None, None], torch.from_numpy(target)[None, None]))
        ld, f0 = frame_errors(
            out, data["f0_hz"][i], data["loudness_db"][i], data["periodicity"][i], sample_rate, hop_size, tracker
        )
        scored.append({"index": i, "output": out, "spectral_loss": spectral, "loudness_error": ld, "f0_error": f0})
    return scored


def summarize_scored(scored: list[dict]) -> dict:
    return summarize(
        [s["spectral_loss"] for s in scored], [s["loudness_error"] for s in scored], [s["f0_error"] for s in scored]
    )


def evaluate_arrays(
    render, data: dict[str, np.ndarray], sample_rate: int, hop_size: int, tracker: dict | None = None
) -> dict:
    """The summary metrics of ``render`` on the held-out examples (see :func:`score_examples`)."""
    return summarize_scored(score_examples(render, data, sample_rate, hop_size, tracker))


def torch_renderer(model):
    def render(f0_hz, loudness_db):
        with torch.no_grad():
            f0 = torch.from_numpy(np.asarray(f0_hz, np.float32))[None]
            ld = torch.from_numpy(np.asarray(loudness_db, np.float32))[None]
            return model(f0, ld, model.controls_tensor(1), *model.initial_state(1))[0][0].numpy()

    return render


def onnx_renderer(session):
    def render(f0_hz, loudness_db):
        session.reset()
        return session.process(f0_hz, loudness_db)

    return render


def _listen(
    out_dir: Path | None, title: str, data: dict, scored: list[dict], metrics: dict, sr: int, hop: int, tracker: dict
) -> None:
    if out_dir is not None:
        page = write_listening(out_dir, title, data, scored, metrics, sr, hop, tracker)
        print(f"listen: {page} ({len(scored)} held-out phrases: target and resynthesis, pictures, numbers)")


def evaluate_run(run_dir: Path, data_dir: Path, listen: Path | None = None) -> dict:
    """Evaluate a run's latest checkpoint on the held-out split; writes RUN/metrics.json and adds
    the metrics to the checkpoint's metadata (so `pimodule export` records them)."""
    model, meta = load_run(run_dir)
    data = dataset.load_dataset(data_dir, "held_out")
    tracker = features.tracker_settings(dataset.load_info(data_dir))
    sr, hop = model.config.sample_rate, model.config.hop_size
    scored = score_examples(torch_renderer(model), data, sr, hop, tracker)
    metrics = summarize_scored(scored)
    metrics["step"] = meta.get("step")
    metrics["train_minutes"] = round(meta.get("train_seconds", 0.0) / 60, 2)
    runs.write_metrics(run_dir, metrics)
    found = runs.checkpoint(run_dir)
    if found is not None and (found / "meta.json").is_file():
        meta["metrics"] = metrics
        (found / "meta.json").write_text(json.dumps(meta, indent=1))
    _listen(
        listen, f"{Path(run_dir).name} (step {meta.get('step')}) on {data_dir}", data, scored, metrics, sr, hop, tracker
    )
    return metrics


def evaluate_model_file(model_path: Path, data_dir: Path, listen: Path | None = None) -> dict:
    """Evaluate an exported ONNX model with the device runtime (what ships)."""

    session = ModelSession(model_path)
    data = dataset.load_dataset(data_dir, "held_out")
    tracker = features.tracker_settings(dataset.load_info(data_dir))
    sr, hop = session.info.sample_rate, session.info.block_size
    scored = score_examples(onnx_renderer(session), data, sr, hop, tracker)
    metrics = summarize_scored(scored)
    _listen(listen, f"{Path(model_path).name} on {data_dir}", data, scored, metrics, sr, hop, tracker)
    return metrics


EXAMPLES = (
    "pimodule eval ddsp export/violin.onnx --data data/violin",
    "pimodule eval ddsp export/violin.onnx export/flute.onnx --data data/violin data/flute --json out/ddsp_eval.json",
    "pimodule eval ddsp runs/mine --data data/mine",
    "pimodule eval ddsp export/mine.onnx --data data/mine --listen out/listen-mine   # then open out/listen-mine/index.html",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, nargs="+", help="exported .onnx files or training run folders")
    parser.add_argument(
        "--data", type=Path, nargs="+", required=True, help="dataset folder per model (one for all, or one each)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--listen",
        type=Path,
        help="folder for each held-out phrase's target and resynthesis (wav), a picture and index.html to "
        "open in a browser (one subfolder per model when there are several)",
    )


def main(args: argparse.Namespace) -> int:
    data_dirs = args.data if len(args.data) == len(args.model) else args.data[:1] * len(args.model)
    results = {}
    if len(set(args.model)) != len(args.model):
        raise ValueError("a model is named twice")
    for model, data in zip(args.model, data_dirs):
        listen = args.listen if args.listen is None or len(args.model) == 1 else args.listen / model.stem
        metrics = evaluate_run(model, data, listen) if model.is_dir() else evaluate_model_file(model, data, listen)
        results[str(model)] = metrics
    print("| model | spectral loss | loudness error (dB) | f0 error (cents, median) |")
    print("| --- | --- | --- | --- |")
    for name, m in results.items():
        print(
            f"| {name} | {m['spectral_loss']:.3f} | {m['loudness_error_db']:.2f} | {m['f0_error_cents_median']:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0
