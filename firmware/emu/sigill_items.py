"""The items of pi-check's SIGILL matrix, run inside the emulated Pi (one CPU model per run).

``python sigill_items.py imports [--skip a,b]``: imports every top-level package of every
distribution installed in this interpreter's environment (the provisioned venv: whatever the
device extra pulls in, including what the real-time engine added) and the native submodules the
module uses, one after another. ``python sigill_items.py model PATH``: opens the model file in an
onnxruntime session and runs it (a voice frame by frame through
:class:`pimodule.device.session.ModelSession`; an effect estimator on a window of noise through
fx mode's own check, :func:`pimodule.device.fx.mode.checked_estimator`, and a dry or reference
model's estimate through the module's check of it, ``fx-check``), then, for a voice, plays it through the
compiled engine as the audio process does (:mod:`pimodule.device.rt.probe`, synth and transfer;
fx mode with every effect of the chain on, through ``engine_record.py``).

Each step prints ``BEGIN <step>`` before and ``OK <step> <detail>`` or ``ERROR <step> <why>``
after, flushed, so that when the process dies of a signal (SIGILL: exit status 132) the caller
(pi_check.py) knows the step that died from the last BEGIN, and resumes with ``--skip``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

NOT_DEPENDENCIES = {"pip", "setuptools", "pkg_resources", "_distutils_hack", "wheel", "distutils-precedence"}
# native code the module reaches beyond the packages' own __init__
SUBMODULES = (
    "numpy.linalg",
    "numpy.fft",
    "scipy.signal",
    "scipy.fft",
    "scipy.linalg",
    "scipy.interpolate",
    "onnxruntime.capi._pybind_state",
    "llvmlite.binding",
    "numba.np.ufunc",
    "soundfile",
    "sounddevice",
    "pimodule.device.daemon",
    "pimodule.device.rt.audio_main",
)


def say(*parts) -> None:
    print(*parts, flush=True)


def top_level_packages() -> list[tuple[str, str, str]]:
    """(import name, distribution, version) of every installed distribution's top-level modules."""
    from importlib import metadata

    out = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        tops = (dist.read_text("top_level.txt") or "").split()
        if not tops:  # no top_level.txt: modules and packages from the file list
            for f in dist.files or []:
                parts = f.parts
                if len(parts) == 1 and parts[0].endswith(".py"):
                    tops.append(parts[0][:-3])
                elif len(parts) > 1 and parts[1] == "__init__.py":
                    tops.append(parts[0])
        for top in tops:
            if top and top not in NOT_DEPENDENCIES and not top.startswith("_") and top.isidentifier():
                out.setdefault(top, (top, name, dist.version))
    return sorted(out.values())


def run_imports(skip: set[str]) -> int:
    failed = 0
    items = [(m, d, v) for m, d, v in top_level_packages()] + [(m, "", "") for m in SUBMODULES]
    for module, dist, version in items:
        if module in skip:
            continue
        say("BEGIN", module, dist, version)
        t0 = time.monotonic()
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - a Python error is not an illegal instruction: reported
            say("ERROR", module, f"{type(err).__name__}: {str(err)[:160]}".replace("\n", " "))
            failed += 1
            continue
        say("OK", module, f"{time.monotonic() - t0:.1f}s")
    return 1 if failed else 0


def run_model(path: str, seconds: float) -> int:
    import numpy as np

    say("BEGIN", "ort-session")
    kind = _kind(path)
    if kind == "ddsp":
        from pimodule.device.session import ModelSession

        s = ModelSession(path)
        out = np.zeros(s.info.block_size, np.float32)
        for f0 in np.geomspace(55.0, 1760.0, 50):
            s.process_frame(float(f0), -20.0, out)
        say("OK", "ort-session", f"ddsp, 50 frames, finite={bool(np.all(np.isfinite(out)))}")
        ok = bool(np.all(np.isfinite(out)))
        from pimodule.device.rt import probe

        for mode in ("synth", "transfer"):
            say("BEGIN", f"engine-{mode}")
            r = probe.run(path, mode, seconds, 128, 48000)
            say(
                "OK",
                f"engine-{mode}",
                f"compiled={r['compiled']} frames={r['frames']} finite={r['finite']} peak={r['peak']:.3f}",
            )
            ok = ok and r["compiled"] and r["finite"] and r["peak"] > 0
        from engine_record import record  # beside this file: fx mode with every effect of the chain on

        say("BEGIN", "engine-fx")
        played, _ = record(path, "fx", seconds, 128, 48000, None)
        peak = float(np.max(np.abs(played)))
        say("OK", "engine-fx", f"finite={bool(np.all(np.isfinite(played)))} peak={peak:.3f}")
        ok = ok and bool(np.all(np.isfinite(played))) and peak > 0
        return 0 if ok else 1
    from pimodule.device.fx.mode import checked_estimator

    est = checked_estimator(path)  # fx mode's own check: shapes, finite, in [0, 1] on a test window
    x = (0.1 * np.random.default_rng(1).standard_normal((1, est.window))).astype(np.float32)
    active, mode, unit = est.run(x, x if est.conditioning != "blind" else None)
    described = est.describe(active[0], mode[0], unit[0])
    say("OK", "ort-session", f"fx estimator ({est.conditioning}), window {est.window}, effects {','.join(described)}")
    if est.conditioning == "blind":
        return 0  # nothing to check a blind estimate against
    # fx mode's check of a conditioned estimate (numpy and scipy twins, on the check thread)
    from fx_check_run import check_inputs  # beside this file: what pi-bench counts

    from pimodule.device.fx.check_thread import make_check

    say("BEGIN", "fx-check")
    right, left, described = check_inputs(est)
    t0 = time.monotonic()
    out = make_check(est.conditioning, est.sample_rate)(right, left, described)
    on = [n for n, item in out.items() if item.get("active")]
    finite = all(np.isfinite(v) for item in out.values() for v in item["params"].values())
    say("OK" if finite else "ERROR", "fx-check", f"{time.monotonic() - t0:.1f}s on: {','.join(on)} finite={finite}")
    return 0 if finite else 1


def _kind(path: str) -> str:
    import onnx

    proto = onnx.load(path, load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    return meta.get("pimodule.kind", "ddsp")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sigill_items.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    i = sub.add_parser("imports")
    i.add_argument("--skip", default="", help="comma-separated modules not to import again")
    m = sub.add_parser("model")
    m.add_argument("path")
    m.add_argument("--seconds", type=float, default=0.5, help="audio through the compiled engine per mode")
    args = p.parse_args(argv)
    if args.what == "imports":
        return run_imports({s for s in args.skip.split(",") if s})
    return run_model(args.path, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
