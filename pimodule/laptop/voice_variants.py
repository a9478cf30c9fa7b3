"""The shipped voices side by side as variants for small caches: weight bytes against a
Cortex-A53's 512 KB L2, executed aarch64 instructions per second of audio (``make pi-bench``),
response p99 here (``make bench``) and held-out quality (``make models`` / ``make small-models`` /
``make int8-models``).

No new measurement: it reads the voice files in ``export/`` (their weights as the compiled engine
loads them) and the result files, and writes ``docs/results/voice_variants.json`` (``make
results`` runs it). A variant that fits the L2, keeps the DDSP aims (≤ 1 dB, ≤ 10 cents) and
stays within the small voice's instruction budget (20 M per second of audio, ``make pi-bench``)
is marked as the small-cache choice.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pimodule.device.voice.weights import read_voice

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "docs" / "results"
VOICES = ("violin", "flute", "violin-small", "flute-small", "violin-int8")
L2_BYTES = 512 * 1024  # Cortex-A53 (Raspberry Pi 3, Zero 2 W)
AIMS = {"loudness_error_db": 1.0, "f0_error_cents_median": 10.0}
SMALL_BUDGET = 20e6  # aarch64 instructions per second of audio for the small-cache voice (issue 23)
NOT_BUILT = (
    "int8: the decoder's six matrices as int8 with one float32 scale per row (`pimodule quantize`; "
    "the kernel reads them as they are, widening each weight before its multiply-add: 2.8x the "
    "float32 violin's instructions), everything else float32; its quality comes from `make "
    "int8-models`, which scores the float32 violin on the same phrases in the same run (the same "
    "figures). The p99 columns are this x86 machine's (its caches hold every voice, and the wake-up "
    "sets most of the response); on a Pi the instruction count is the yardstick. Small-cache "
    "choice: fits the L2, within the aims and within 20 M instructions per second of audio. Not "
    "built: fp16 weights (numba has no float16 arithmetic; int8 is half their bytes)."
)
SOURCES = ("pi_bench", "bench", "ddsp_eval", "ddsp_small_eval", "ddsp_int8_eval")


def _load(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _results(name: str) -> dict:
    data = _load(name)
    return data.get("results", data)


def _bench_p99(rows: list[dict], voice: str, load: str) -> float | None:
    for r in rows:
        if (r.get("model"), r.get("engine"), r.get("mode", "synth"), r.get("block_size"), r.get("load")) == (
            voice,
            "compiled",
            "synth",
            128,
            load,
        ):
            return r.get("p99_us")
    return None


def variants(export_dir: Path = REPO / "export") -> dict:
    pi = _results("pi_bench").get("per_second", {})
    bench_rows = _results("bench").get("rows", [])
    quality = {**_results("ddsp_int8_eval"), **_results("ddsp_eval"), **_results("ddsp_small_eval")}
    rows = []
    for v in VOICES:
        path = export_dir / f"{v}.onnx"
        if not path.is_file():
            continue
        w = read_voice(path)
        q = quality.get(f"export/{v}.onnx", {})
        within = bool(q) and all(q.get(k, float("inf")) <= lim for k, lim in AIMS.items())
        nbytes = int(w.weights.nbytes)
        insns = pi.get(f"{v} synth", {}).get("steady_per_s")
        rows.append(
            {
                "voice": v,
                "hidden": int(w.hidden),
                "dtype": "int8 matrices" if w.constants.get("int8") else "float32",
                "weight_bytes": nbytes,
                "fits_a53_l2": nbytes <= L2_BYTES,
                "insns_per_s": insns,
                "p99_us_idle": _bench_p99(bench_rows, v, "idle"),
                "p99_us_load": _bench_p99(bench_rows, v, "all"),
                "spectral_loss": q.get("spectral_loss"),
                "loudness_error_db": q.get("loudness_error_db"),
                "f0_error_cents": q.get("f0_error_cents_median"),
                "within_aims": within,
                "small_cache_choice": within and nbytes <= L2_BYTES and (insns or float("inf")) <= SMALL_BUDGET,
            }
        )
    return {"l2_bytes": L2_BYTES, "aims": AIMS, "budget_per_s": SMALL_BUDGET, "rows": rows, "not_built": NOT_BUILT}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pimodule.laptop.voice_variants", description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, default=RESULTS / "voice_variants.json", help="where to write the table")
    args = p.parse_args(argv)
    metas = {k: _load(k).get("_meta", {}) for k in SOURCES}
    data = {
        "_meta": {
            "kind": "voice_variants",
            "title": "Voices for small caches: weights, instructions, response, quality",
            "command": "make results   # python -m pimodule.laptop.voice_variants (from export/ and the result files)",
            "date": max((m.get("date", "") for m in metas.values()), default="") or "undated",
            "machine": "derived from " + ", ".join(f"{k}.json ({m.get('date', '?')})" for k, m in metas.items()),
            "commit": "of each source",
        },
        "results": variants(),
    }
    text = json.dumps(data, indent=1) + "\n"
    if not args.json.is_file() or args.json.read_text() != text:
        args.json.write_text(text)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
