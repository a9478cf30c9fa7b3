"""The results page's renderers for the device's measurements: the emulated Pi's checks and
instruction counts (``make pi-check``, ``make pi-bench``) and the real-time bench (``make bench``)."""

from __future__ import annotations

from pimodule.laptop.results_fmt import f as _f
from pimodule.laptop.results_fmt import millions as _m
from pimodule.laptop.results_fmt import pct as _pct
from pimodule.laptop.results_fmt import table as _table


def render_pi_check(results: dict) -> str:
    checks = results.get("checks", [])
    n_ok = sum(1 for c in checks if c.get("ok"))
    steps = results.get("steps", {})
    out = [
        f"**{'passed' if results.get('passed') else 'FAILED'}**: {n_ok} of {len(checks)} checks in "
        f"{_f(results.get('seconds', 0) / 60, 1)} min after the root "
        f"({', '.join(f'{k} {_f(v / 60, 1)} min' for k, v in steps.items() if k != 'total')}). "
        f"{results.get('environment', {}).get('qemu', '')}; {results.get('environment', {}).get('root_os', '')}.\n\n"
    ]
    prov = results.get("provision")
    if prov:
        out.append(
            f"`firmware/provision.sh` ({'first run' if prov.get('first_run') else 'run again'}, exit "
            f"{prov.get('exit_code')}, {_f(prov.get('seconds', 0) / 60, 1)} min) reported as not applicable here: "
            + "; ".join(f"*{s.split(' because ')[0]}*" for s in prov.get("skipped", []))
            + ". Installed: "
            + ", ".join(
                f"{k} {v}"
                for k, v in prov.get("venv", {}).items()
                if k in ("numpy", "scipy", "onnxruntime", "onnx", "numba", "llvmlite", "sounddevice")
            )
            + ".\n\n"
        )
    daemon = results.get("daemon")
    if daemon:
        tol = daemon.get("tolerance", {})
        out.append(
            f"The daemon as `pimodule.service` starts it (`{daemon.get('unit', {}).get('command', '')}` as user "
            f"`{daemon.get('unit', {}).get('user', '')}`), {daemon.get('seconds_of_audio')} s on the simulated clock, "
            f"emulated cortex-a72 against the same command on x86_64 (tolerances per note: pitch "
            f"{tol.get('f0_cents')} cents, level {tol.get('level_db')} dB, spectrum {tol.get('spectrum_db')} dB; "
            f"per 100 ms window, 90 % of them: level {tol.get('level_db')} dB, "
            + (f"third-octave bands {tol['bands_db']}" if "bands_db" in tol else f"spectrum {tol.get('spectrum_db')}")
            + " dB):\n\n"
        )
        rows = []
        for mode, r in daemon.get("runs", {}).items():
            e, x, c = r.get("emulated", {}), r.get("x86_64", {}), r.get("compare_to_x86_64")
            if c and "windows_compared" in c:  # transfer / fx: per 100 ms window, p90
                what = "bands" if "bands_db_diff_p90" in c else "spectrum"  # reports before bands: FFT bins
                cmp = (
                    f"p90 {_f(c.get('level_db_diff_p90'))} dB / {what} "
                    f"{_f(c.get(f'{what}_db_diff_p90'))} dB over {c.get('windows_compared')} windows"
                )
            elif c:
                cmp = (
                    f"{_f(c.get('max_abs_f0_cents_diff'))} cents / {_f(c.get('max_abs_level_db_diff'))} dB / "
                    f"{_f(c.get('max_spectrum_db_diff'))} dB over {c.get('notes_compared')} notes"
                )
            else:
                cmp = "silent input: silence on both"
            rows.append(
                [
                    mode,
                    str(r.get("exit_code")),
                    _f(r.get("ready_after_s"), 0) + " s",
                    _f(r.get("seconds"), 0) + " s",
                    f"{_f(e.get('peak'), 3)} / {_f(e.get('rms'), 4)}",
                    f"{_f(x.get('peak'), 3)} / {_f(x.get('rms'), 4)}",
                    cmp,
                ]
            )
        out.append(
            _table(
                [
                    "mode",
                    "exit",
                    "READY=1 after",
                    "run",
                    "emulated peak / RMS",
                    "x86_64 peak / RMS",
                    "max difference: pitch / level / spectrum",
                ],
                rows,
            )
        )
    engine = results.get("engine")
    if engine:
        out.append(
            f"\nThe compiled engine sample by sample ({engine.get('model')}, input: {engine.get('input')}; "
            f"tolerance {engine.get('tolerance_max_abs')}):\n\n"
        )
        rows = []
        for mode, r in engine.get("runs", {}).items():
            c = r.get("compare_to_x86_64", {})
            rows.append(
                [
                    mode,
                    f"{c.get('max_abs_diff', float('nan')):.1e}",
                    _f(c.get("snr_db"), 0) + " dB",
                    _f(c.get("ref_peak"), 3),
                    str(c.get("samples", "–")),
                ]
            )
        out.append(_table(["mode", "max abs difference", "SNR", "peak", "samples"], rows))
    sig = results.get("sigill")
    if sig:
        cpus = list(sig.get("imports", {}))
        out.append("\nSIGILL matrix (every import and model under each CPU model; *pass*: ran to the end):\n\n")
        rows = []
        imports = sig.get("imports", {})
        if imports:

            def imp(cpu):
                r = imports.get(cpu, {})
                bad = {k: v["result"] for k, v in r.items() if v.get("result") != "pass"}
                return f"{len(r) - len(bad)} of {len(r)} pass" + (f"; {bad}" if bad else "")

            rows.append(["imports: " + ", ".join(sorted(imports.get(cpus[0], {}))[:60])] + [imp(c) for c in cpus])
        models = sig.get("models", {})
        names = sorted({m for c in models.values() for m in c})
        for m in names:
            cells = []
            for c in cpus:
                r = models.get(c, {}).get(m, {})
                st = r.get("steps", {})
                cells.append(", ".join(f"{k} {v.get('result')}" for k, v in st.items()) or f"exit {r.get('exit_code')}")
            rows.append([f"`{m}`"] + cells)
        ort = sig.get("onnxruntime", {})
        for v, r in ort.items():
            if v == "pinned":
                continue
            rows.append(
                [f"onnxruntime {v}{' (pinned)' if v == ort.get('pinned') else ''}: import, session, run"]
                + [r.get(c, {}).get("result", r.get("install", "–")[:60]) for c in cpus]
            )
        out.append(_table(["item"] + cpus, rows))
    tests = results.get("tests")
    if tests:
        out.append(
            "\nDevice tests without torch ("
            + ", ".join(f"`{f.split('/')[-1]}`" for f in tests.get("files", []))
            + "):\n\n"
        )
        rows = [
            [
                cpu,
                str(r.get("passed", "–")),
                str(r.get("failures", 0) + r.get("errors", 0)),
                str(r.get("skipped", "–")),
                _f(r.get("seconds", 0) / 60, 1) + " min",
            ]
            for cpu, r in tests.get("runs", {}).items()
        ]
        out.append(_table(["CPU", "passed", "failed", "skipped", "time"], rows))
    if results.get("failures"):
        out.append("\nFailed checks:\n\n" + "".join(f"- {f}\n" for f in results["failures"]))
    return "".join(out)


def render_pi_bench(results: dict) -> str:
    ipc = results.get("ipc_assumed", {})
    boards = list(ipc)
    est = results.get("estimates", {})
    head = ["what (QEMU cortex-a72)", "instructions per s of audio", "from start (3 s)", "set-up"]
    head += [f"share of one core: {b['cpu']} {b['hz'] / 1e9:.1f} GHz (IPC {b['ipc']})" for b in ipc.values()]
    rows = []
    for label, r in results.get("per_second", {}).items():
        row = [label, _m(r.get("steady_per_s")), _m(r.get("from_start_per_s")), _m(r.get("setup"))]
        for b in boards:
            e = est.get(label, {}).get(b, {})
            lo, hi = e.get("share_range", [None, None])
            row.append(f"{_pct(e.get('share'))} ({_pct(lo)}–{_pct(hi)})" if e else "–")
        rows.append(row)
    out = [_table(head, rows)]
    pf = results.get("per_frame", {})
    if pf:
        out.append("\nPer model frame (the voice's frame function alone; 250 frames per second of audio):\n\n")
        out.append(
            _table(
                ["voice", "instructions per frame", "per second of audio"],
                [
                    [v, f"{r.get('per_frame', 0) / 1e3:,.1f} k", _m(r.get("per_frame", 0) * r.get("frames_per_s", 250))]
                    for v, r in pf.items()
                ],
            )
        )
    pc = results.get("per_check", {})
    if pc:
        out.append(
            "\nPer check of fx mode's check thread (one analysis window, every effect of the estimate "
            "rendered; `firmware/emu/fx_check_run.py`), and the seconds of one core it means at the "
            "assumed IPC:\n\n"
        )
        out.append(
            _table(
                ["estimator", "instructions per check", *[f"{b['cpu']} {b['hz'] / 1e9:.1f} GHz" for b in ipc.values()]],
                [
                    [m, _m(r.get("per_check")), *[f"{r.get('seconds', {}).get(b, 0):.1f} s" for b in boards]]
                    for m, r in pc.items()
                ],
            )
        )
    cs = results.get("cold_start", {})
    if cs:
        w = cs.get("warm_cache", {})
        e = cs.get("empty_cache", {})
        out.append(
            "\nCold start to first sound (beyond `python -c pass`, "
            f"{_m(w.get('python_itself'))}): the audio process loads the compiled callback "
            f"{_m(w.get('audio_process_import'))} with a warm cache"
            + (
                f", {_m(e.get('audio_process_import'))} with an empty one (the first start after an install: "
                "numba compiles the engine)"
                if e
                else ""
            )
            + f"; the control side's set-up (block, session, weights, voice published): {_m(w.get('control_setup'))}.\n"
        )
    tg = results.get("targets", {})
    if tg:
        out.append("\nAgainst issue 23's budgets:\n\n")
        out.append(
            _table(
                ["what", "budget per s of audio", "measured", "met"],
                [[k, _m(r["target"]), _m(r["measured"]), "yes" if r["met"] else "**no**"] for k, r in tg.items()],
            )
        )
    return "".join(out)


def render_bench(results: dict) -> str:
    """``pimodule bench``: response from each block's due time, both engines, idle and loaded."""
    head = [
        "voice",
        "engine",
        "block",
        "load",
        "p50 µs",
        "p99 µs",
        "max µs",
        "p99 % of period",
        "late blocks",
        "blocks",
        "wake-up p99 µs",
        "work p99 µs",
        "late at wake-up",
    ]
    rows = [
        [
            f"`{r['model']}`",
            r["engine"],
            str(r["block_size"]),
            r["load"],
            _f(r.get("p50_us"), 0),
            _f(r.get("p99_us"), 0),
            _f(r.get("max_us"), 0),
            _f(r.get("p99_percent_of_period"), 1),
            str(r["late_blocks"]),
            str(r["blocks"]),
            _f(r.get("wake_p99_us"), 0),
            _f(r.get("work_p99_us"), 0),
            str(r.get("late_at_wake", "–")),
        ]
        for r in results.get("rows", [])
    ]
    out = (
        "Response: from a block's deadline on the device's schedule to the end of its callback; late: more "
        "than its period. It is split into the wake-up (deadline to the callback's start: the server and the "
        "system) and the callback's own work; a block late at wake-up was late before any work began.\n\n"
    )
    out += _table(head, rows)
    ratios = results.get("ratios", [])
    if ratios:
        out += "\nonnxruntime engine ÷ compiled engine, same case, same run:\n\n"
        out += _table(
            ["voice", "block", "load", "p50 ratio", "p99 ratio", "late (compiled / onnxruntime)"],
            [
                [
                    f"`{r['model']}`",
                    str(r["block_size"]),
                    r["load"],
                    _f(r["p50_ratio"], 1),
                    _f(r["p99_ratio"], 1),
                    f"{r['late_compiled']} / {r['late_onnxruntime']}",
                ]
                for r in ratios
            ],
        )
    soak = results.get("soak")
    if soak:
        out += (
            f"\nSoak: {soak['seconds'] / 60:.0f} minutes, {soak['model']} at {soak['block_size']} frames under "
            f"{soak['load']}: {soak['late_blocks']} late blocks of {soak['blocks']}, p99 {_f(soak.get('p99_us'), 0)} µs, "
            f"max {_f(soak.get('max_us'), 0)} µs"
        )
        if "late_at_wake" in soak:
            out += (
                f"; {soak['late_at_wake']} of the late blocks were late when their callback began (wake-up p99 "
                f"{_f(soak.get('wake_p99_us'), 0)} µs), the callback's own work p99 {_f(soak.get('work_p99_us'), 0)} µs"
            )
        out += ".\n"
    if results.get("cpus"):
        out += f"\nCPUs ([audio] cpus = auto): {results['cpus']}.\n"
    floor = results.get("floor") or []
    if floor:
        out += (
            "\nThe machine's own floor: cyclictest (rt-tests) on the audio core at the audio threads' priority "
            "and the block's period, a thread that does nothing but wake up; idle and with the fx check "
            "running in the control process. Its wake-ups above 5 % of the period, or a whole period, are "
            "the system's and the hypervisor's before any of our code runs.\n\n"
        )
        out += _table(
            ["block", "load", "seconds", "wake-ups", "p50 µs", "p99 µs", "max µs", "over 5 % of period", "late"],
            [
                [
                    str(f["block_size"]),
                    f["load"],
                    _f(f["seconds"], 0),
                    str(f["wakeups"]),
                    _f(f.get("p50_us"), 0),
                    _f(f.get("p99_us"), 0),
                    _f(f.get("max_us"), 0),
                    str(f.get("over_5_percent", "–")),
                    str(f.get("late", "–")),
                ]
                for f in floor
            ],
        )
    return out


def render_transfer_analysis(results: dict) -> str:
    """Knot spacings of transfer mode's analysis against every-frame analysis (analysis_eval)."""
    rows = []
    for r in results["rows"]:
        c, d = r["f0_cents"], r["loudness_db"]
        rows.append(
            [
                f"{r['f0_every']} / {r['loudness_every']}" + (" (shipped)" if r["shipped"] else ""),
                _f(r["added_latency_ms"], 0),
                *(_f(c.get(k), 1) for k in ("p50", "p90", "p99")),
                *(_f(d.get(k), 2) for k in ("p50", "p90", "p99")),
            ]
        )
    head = ["f0 / loudness every (frames)", "added look-ahead ms"]
    head += [f"f0 cents {k}" for k in ("p50", "p90", "p99")] + [f"loudness dB {k}" for k in ("p50", "p90", "p99")]
    out = (
        f"Recordings ({len(results['recordings'])}): {', '.join(results['recordings'])}. Differences from analysing "
        f"every frame ({results['hop']} samples at {results['rate_hz'] // 1000} kHz); f0 on voiced frames louder "
        "than -50 dB, loudness on frames louder than -50 dB.\n\n" + _table(head, rows)
    )
    shipped = [r for r in results["rows"] if r["shipped"]]
    if shipped:
        per = shipped[0]["per_recording_p90"]
        out += "\nThe shipped spacing, p90 per recording (f0 cents / loudness dB):\n\n" + _table(
            ["recording", "f0 cents p90", "loudness dB p90"], [[k, _f(v[0], 1), _f(v[1], 2)] for k, v in per.items()]
        )
    return out


def render_voice_variants(results: dict) -> str:
    """The shipped voices as small-cache variants (voice_variants)."""
    rows = []
    for r in results["rows"]:
        rows.append(
            [
                f"`{r['voice']}`" + (" (small-cache choice)" if r["small_cache_choice"] else ""),
                f"GRU {r['hidden']}, {r['dtype']}",
                f"{r['weight_bytes'] / 1024:,.0f} KB",
                "yes" if r["fits_a53_l2"] else "no",
                _m(r["insns_per_s"]),
                _f(r["p99_us_idle"], 0),
                _f(r["p99_us_load"], 0),
                _f(r["spectral_loss"], 3),
                _f(r["loudness_error_db"], 2),
                _f(r["f0_error_cents"], 1),
                "yes" if r["within_aims"] else "**no**",
            ]
        )
    head = [
        "voice",
        "decoder, weights",
        "weight bytes",
        f"fits {results['l2_bytes'] // 1024} KB L2 (A53)",
        "insns per s of audio (pi-bench)",
        "p99 µs, 128 frames, idle (bench)",
        "p99 µs, under load",
        "spectral loss",
        "loudness dB",
        "f0 cents",
        "within ≤ 1 dB, ≤ 10 cents",
    ]
    return _table(head, rows) + f"\n{results['not_built']}\n"
