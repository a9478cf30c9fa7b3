"""make pi-bench: executed aarch64 instructions per second of audio on an emulated Pi (as root).

``.venv/bin/python firmware/emu/pi_bench.py [--root DIR] [--json FILE] [--only a,b]``
(``firmware/emu/pi-bench.sh`` runs it after building the root and provisioning it if needed.)

Every figure is a difference of two counts of ``firmware/emu/pi-count.sh`` (QEMU's TCG plugin,
all threads of the process, ``QEMU_CPU=cortex-a72``, seed 0, ``OPENBLAS_NUM_THREADS=1``), of the
repository's code (``PYTHONPATH=/src``) in the provisioned venv, with numba's cache warm unless
said otherwise:

- per second of audio, the whole audio path (``python -m pimodule.device.rt.probe``: the block,
  the voice published, the callback's work block by block on the simulated clock):
  ``(count(--seconds 3) - count(--seconds 1)) / 2`` (steady state) and
  ``(count(--seconds 3) - count(--seconds 0)) / 3`` (start-up included), for every shipped voice
  in synth mode and for violin in transfer and fx mode; and the earlier engine (the Python
  callback with onnxruntime in it, ``--engine earlier``) for comparison;
- per model frame: ``(count(--frames-only 500) - count(--frames-only 0)) / 500``;
- per check of fx mode's check thread, for a dry and a reference estimator
  (``firmware/emu/fx_check_run.py``): ``(count(3 checks) - count(1 check)) / 2``;
- a cold start to first sound: the audio process's start (``import pimodule.device.rt.stream``,
  which loads the compiled callback) minus ``python -c pass``'s, with the cache warm and with an
  empty cache (the first start after an install: numba compiles the engine), plus the control
  side's set-up (``probe --seconds 0``: block, model session, weights, the voice published).

Counts are deterministic (the same command counts the same to a few parts per million), so one
run of each suffices. The instructions are converted to a share of one core with an assumed IPC
(instructions per cycle; see ``IPC`` below and docs/results.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

EMU = Path(__file__).resolve().parent
REPO = EMU.parents[1]
VENV_PY = "/opt/pimodule/venv/bin/python"
CACHE = "/var/tmp/pi-bench/numba"
VOICES = ("violin", "flute", "violin-small", "flute-small", "violin-int8")
ENV = ["OPENBLAS_NUM_THREADS=1", "PYTHONPATH=/src", f"NUMBA_CACHE_DIR={CACHE}"]
FRAMES = 500
CHECKED = ("fx-dry", "fx-ref")  # estimators whose estimates fx mode checks (firmware/emu/fx_check_run.py)
TARGETS = {"violin synth": 40e6, "small voice synth": 20e6, "violin transfer": 80e6}  # issue 23's budgets

# Assumed sustained IPC (instructions per cycle) for this code: a mix of NEON matrix-vector
# products, scalar DSP loops and some CPython. Cortex-A72: 3-wide decode, out of order (ARM's
# Cortex-A72 Software Optimization Guide); Cortex-A53: 2-wide, in order. The low and high ends
# give the range in the report.
IPC = {
    "pi4_a72_1500mhz": {"cpu": "Cortex-A72", "hz": 1.5e9, "ipc": 1.0, "ipc_range": (0.7, 1.5)},
    "pi3_a53_1200mhz": {"cpu": "Cortex-A53", "hz": 1.2e9, "ipc": 0.6, "ipc_range": (0.45, 0.8)},
    "zero2w_a53_1000mhz": {"cpu": "Cortex-A53", "hz": 1.0e9, "ipc": 0.6, "ipc_range": (0.45, 0.8)},
    "pi3bplus_a53_1400mhz": {"cpu": "Cortex-A53", "hz": 1.4e9, "ipc": 0.6, "ipc_range": (0.45, 0.8)},
}


class Bench:
    def __init__(self, args):
        self.args = args
        self.root = Path(args.root).resolve()
        self.out = Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.counts: dict[str, dict] = {}
        cached = self.out / "counts.json"
        if args.resume and cached.exists():
            self.counts = json.loads(cached.read_text())
        self.t0 = time.monotonic()

    def log(self, msg: str) -> None:
        print(f">> [{time.monotonic() - self.t0:6.0f} s] {msg}", flush=True)

    def exec(self, cmd: list[str], env: list[str] = (), timeout: int = 7200) -> subprocess.CompletedProcess:
        full = [str(EMU / "pi-exec.sh"), "--cpu", "cortex-a72", "--root", str(self.root)]
        for e in env:
            full += ["--env", e]
        return subprocess.run([*full, "--", "timeout", str(timeout), *cmd], capture_output=True, text=True)

    def count(self, key: str, cmd: list[str], env: list[str] = ENV, mode: str = "inline") -> int:
        """Instructions of ``cmd`` in the root (cached in out/pi-bench/counts.json by ``key``)."""
        if key in self.counts and self.counts[key].get("insns"):
            return int(self.counts[key]["insns"])
        out = self.out / f"{key.replace(' ', '_')}.json"
        full = [
            str(EMU / "pi-count.sh"),
            "--cpu",
            "cortex-a72",
            "--root",
            str(self.root),
            "--mode",
            mode,
            "--out",
            str(out),
        ]
        for e in env:
            full += ["--env", e]
        t0 = time.monotonic()
        p = subprocess.run([*full, "--", *cmd], capture_output=True, text=True)
        if p.returncode != 0 or not out.exists():
            raise RuntimeError(f"{key}: exit {p.returncode}: {p.stderr[-600:]}")
        data = json.loads(out.read_text())
        data["wall_s"] = round(time.monotonic() - t0, 1)
        data["stdout"] = p.stdout.strip()[-400:]
        self.counts[key] = data
        (self.out / "counts.json").write_text(json.dumps(self.counts, indent=1))
        self.log(f"{key}: {data['insns']:,} instructions ({data['wall_s']:.0f} s)")
        return int(data["insns"])

    def probe(self, key: str, *args: str, mode: str = "inline") -> int:
        return self.count(key, [VENV_PY, "-m", "pimodule.device.rt.probe", *args], mode=mode)

    def warm(self) -> None:
        """numba's cache filled (not counted): every path the counted runs take."""
        self.log("warming numba's cache (not counted)")
        code = (
            "from pimodule.device.rt import warm, probe; warm.warm(); "
            f"[probe.run(f'/src/export/{{v}}.onnx', m, 0.05, 128, 48000) for v in {VOICES!r} for m in ('synth', 'transfer', 'fx')]; "
            f"[probe.frames_only(f'/src/export/{{v}}.onnx', 2) for v in {VOICES!r}]"
        )
        p = self.exec([VENV_PY, "-c", code], env=ENV)
        if p.returncode != 0:
            raise RuntimeError(f"warming failed: {p.stderr[-800:]}")

    def run(self) -> dict:
        only = set(self.args.only.split(",")) if self.args.only else None

        def want(group: str) -> bool:
            return only is None or group in only

        if only is None or only - {"checks"}:  # the checks use no compiled code
            self.warm()
        res: dict = {"per_second": {}, "per_frame": {}, "cold_start": {}}
        base = self.count("python -c pass", [VENV_PY, "-c", "pass"])

        def per_second(label: str, *args: str, mode: str = "inline") -> dict:
            c = {s: self.probe(f"{label} s{s}", *args, "--seconds", str(s), mode=mode) for s in (0, 1, 3)}
            return {
                "steady_per_s": (c[3] - c[1]) / 2,
                "from_start_per_s": (c[3] - c[0]) / 3,
                "setup": c[0],
                "counts": c,
            }

        if want("voices"):
            for v in VOICES:
                res["per_second"][f"{v} synth"] = per_second(
                    f"{v} synth", "--model", f"/src/export/{v}.onnx", "--mode", "synth"
                )
        if want("modes"):
            for m in ("transfer", "fx"):
                res["per_second"][f"violin {m}"] = per_second(
                    f"violin {m}", "--model", "/src/export/violin.onnx", "--mode", m
                )
        if want("earlier"):
            res["per_second"]["violin synth, earlier engine (Python callback, onnxruntime in it)"] = per_second(
                "violin synth earlier",
                "--model",
                "/src/export/violin.onnx",
                "--mode",
                "synth",
                "--engine",
                "earlier",
            )
        if want("frames"):
            for v in VOICES:
                c0 = self.probe(f"{v} frames 0", "--model", f"/src/export/{v}.onnx", "--frames-only", "0")
                c1 = self.probe(
                    f"{v} frames {FRAMES}", "--model", f"/src/export/{v}.onnx", "--frames-only", str(FRAMES)
                )
                res["per_frame"][v] = {"per_frame": (c1 - c0) / FRAMES, "frames_per_s": 250}
        if want("cold"):
            imp = [VENV_PY, "-c", "import pimodule.device.rt.stream"]
            warm_import = self.count("import stream, warm cache", imp)
            setup = self.probe(
                "violin synth s0", "--model", "/src/export/violin.onnx", "--mode", "synth", "--seconds", "0"
            )
            res["cold_start"]["warm_cache"] = {
                "audio_process_import": warm_import - base,
                "control_setup": setup - base,
                "python_itself": base,
            }
            if not self.args.no_cold:
                empty = f"/var/tmp/pi-bench/numba-empty-{os.getpid()}"
                self.exec(["rm", "-rf", empty])
                cold = self.count(
                    "import stream, empty cache",
                    imp,
                    env=["OPENBLAS_NUM_THREADS=1", "PYTHONPATH=/src", f"NUMBA_CACHE_DIR={empty}"],
                )
                self.exec(["rm", "-rf", empty])
                res["cold_start"]["empty_cache"] = {"audio_process_import": cold - base}
        if want("checks"):
            res["per_check"] = {}
            for m in CHECKED:
                c = {
                    n: self.count(
                        f"{m} check x{n}",
                        [VENV_PY, "/src/firmware/emu/fx_check_run.py", f"/src/export/{m}.onnx", str(n)],
                    )
                    for n in (1, 3)
                }
                per = (c[3] - c[1]) / 2
                res["per_check"][m] = {
                    "per_check": per,
                    "counts": c,
                    "seconds": {b: per / (v["ipc"] * v["hz"]) for b, v in IPC.items()},
                }
        res["estimates"] = self.estimates(res)
        res["targets"] = self.targets(res)
        res["ipc_assumed"] = {k: {**v, "ipc_range": list(v["ipc_range"])} for k, v in IPC.items()}
        res["counts"] = {k: {f: v.get(f) for f in ("insns", "wall_s", "argv")} for k, v in self.counts.items()}
        res["method"] = {
            "cpu": "cortex-a72 (QEMU 7.2 TCG, insn_count plugin)",
            "frames_per_s": 250,
            "block": 128,
            "rate_hz": 48000,
            "env": ENV,
            "seconds": round(time.monotonic() - self.t0),
        }
        return res

    @staticmethod
    def estimates(res: dict) -> dict:
        """Share of one core: instructions per second / (IPC x clock), with the IPC range."""
        out = {}
        for label, row in res["per_second"].items():
            out[label] = {}
            for board, b in IPC.items():
                lo, hi = b["ipc_range"]
                per_s = row["steady_per_s"]
                out[label][board] = {
                    "share": per_s / (b["ipc"] * b["hz"]),
                    "share_range": [per_s / (hi * b["hz"]), per_s / (lo * b["hz"])],
                }
        return out

    @staticmethod
    def targets(res: dict) -> dict:
        ps = res["per_second"]
        rows = {}
        if "violin synth" in ps:
            rows["violin synth"] = {"target": TARGETS["violin synth"], "measured": ps["violin synth"]["steady_per_s"]}
        for v in ("violin-small", "flute-small"):
            if f"{v} synth" in ps:
                rows[f"{v} synth"] = {
                    "target": TARGETS["small voice synth"],
                    "measured": ps[f"{v} synth"]["steady_per_s"],
                }
        if "violin transfer" in ps:
            rows["violin transfer"] = {
                "target": TARGETS["violin transfer"],
                "measured": ps["violin transfer"]["steady_per_s"],
            }
        for r in rows.values():
            r["met"] = r["measured"] <= r["target"]
        return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pi_bench.py", description=__doc__.splitlines()[0])
    cache = os.environ.get("PIMODULE_CACHE", os.path.expanduser("~/.cache/pimodule"))
    p.add_argument("--root", default=os.environ.get("PI_ROOT", os.path.join(cache, "pi-root")))
    p.add_argument("--out", default=str(REPO / "out" / "pi-bench"), help="every count's JSON")
    p.add_argument("--json", default=str(REPO / "docs" / "results" / "pi_bench.json"))
    p.add_argument("--only", help="comma-separated groups: voices,modes,earlier,frames,cold,checks")
    p.add_argument("--no-cold", action="store_true", help="skip the empty-cache start (it compiles the engine)")
    p.add_argument("--resume", action="store_true", help="reuse the counts already in --out")
    p.add_argument("--no-stamp", dest="stamp", action="store_false")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        p.error("run as root")
    res = Bench(args).run()
    path = Path(args.json)
    path.write_text(json.dumps(res, indent=1) + "\n")
    if args.stamp:
        subprocess.run(
            [
                str(REPO / ".venv/bin/python"),
                "-m",
                "pimodule.laptop.results_page",
                "--stamp",
                str(path),
                "--kind",
                "pi_bench",
                "--title",
                "Executed aarch64 instructions per second of audio (make pi-bench)",
                "--command",
                "make pi-bench",
            ],
            check=False,
        )
    print(json.dumps(res["targets"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
