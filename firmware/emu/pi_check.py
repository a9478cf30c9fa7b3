"""make pi-check: the module on an emulated Raspberry Pi, from provisioning to sound (as root).

``.venv/bin/python firmware/emu/pi_check.py [--root DIR] [--json FILE] [--steps ...]``
(``firmware/emu/pi-check.sh`` runs it after building the root.) Steps, in order:

``provision``  ``firmware/provision.sh --src /src`` for real inside the root, as on a fresh Pi
               (what cannot apply in a chroot is reported by the script as ``skipped: ...``).
``torch``      torch is absent from the root: neither the provisioned venv nor the system Python
               can import it, and no torch distribution is installed.
``daemon``     ``pimodule.service`` as systemd starts it (``unit_run.py``: the installed unit's
               ExecStart, user, groups, directories, environment, limits, NOTIFY_SOCKET) plus
               test-harness options only, on the simulated clock, in synth (the simulated CV
               melody), transfer and fx mode (a real recording into input L, ``--input``), under
               cortex-a72; the same command on this x86_64 machine; the recordings compared per
               note (spectrum) or per 100 ms window (third-octave bands) (``compare_recordings.py``;
               each note's onset and the windows a CV note change can land in are left out: the
               CV reaches the audio process through the control threads, a poll or more later
               under emulation, after which the recordings drift apart in detail).
``engine``     the compiled engine in the root and here, fed the same recording, with everything
               a function of the sample position (``engine_record.py``): sample by sample.
``sigill``     every device dependency imported and every shipped model run (onnxruntime, and
               the compiled engine for voices) under cortex-a72 and cortex-a53; onnxruntime
               releases around the pin imported and run the same way.
``tests``      the device tests that need no torch (``pi_pytest.py``) under both CPU models.

Writes a JSON report (default docs/results/pi_check.json, stamped for docs/results.md) and
exits 1 when any check failed. Logs and recordings: ``--out`` (default out/pi-check).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

EMU = Path(__file__).resolve().parent
REPO = EMU.parents[1]
sys.path.insert(0, str(EMU))

import compare_recordings  # noqa: E402
import engine_record  # noqa: E402

CPUS = ("cortex-a72", "cortex-a53")
STEPS = ("provision", "torch", "daemon", "engine", "sigill", "tests")
VENV_PY = "/opt/pimodule/venv/bin/python"
WORK = "/var/lib/pimodule/pi-check"  # in the root: the service user's state dir, so it may write there
CACHE = "/var/cache/pimodule/numba"  # the unit's NUMBA_CACHE_DIR: the daemon's compiled engine
INPUT = "/usr/share/sounds/alsa/Front_Center.wav"  # a real recording (speech, 48 kHz) from alsa-utils
AS_USER = ["setpriv", "--reuid=pimodule", "--regid=pimodule", "--init-groups", "--"]
USER_ENV = ["HOME=/var/lib/pimodule", f"NUMBA_CACHE_DIR={CACHE}", "OPENBLAS_NUM_THREADS=1", "PYTHONDONTWRITEBYTECODE=1"]
MODES = ("synth", "transfer", "fx")
# The device tests run on the emulated Pi: the engine and voice against onnxruntime, the trust
# boundary, the model store and the CV/hardware layer (about 25 min for both CPU models on
# 2 shared cores; the rest of tests/device runs on x86_64 in `make test`).
TESTS = (
    "tests/device/rt/test_engine.py",
    "tests/device/voice/test_parity.py",
    "tests/device/test_resample.py",
    "tests/device/test_guard.py",
    "tests/device/test_modelcheck.py",
    "tests/device/test_store.py",
    "tests/device/io/test_cv.py",
    "tests/device/io/test_hardware.py",
    "tests/device/io/test_no_torch.py",
)
ORT_VERSIONS = ("1.21.0", "1.22.0")  # around the pin (pyproject.toml: onnxruntime==1.20.1)

# Pass thresholds (the report carries the measured values next to them).
ENGINE_MAX_ABS = 1e-4  # -80 dBFS: float32 rounding of one engine on two ISAs, never a different sound
DAEMON_F0_CENTS = 5.0  # the CV reader's dead-band is 3 mV = 3.6 cents: where a note settles varies
DAEMON_LEVEL_DB = 1.0
DAEMON_SPECTRUM_DB = 2.0
DAEMON_BANDS_DB = 1.0  # transfer/fx, per 100 ms window: drifted detail 0.1-0.6 dB, an octave off 14
SILENCE = 1e-3  # a recording whose peak stays below this is silent (-60 dBFS)
# Emulated time is not a Pi's: validation's real-time budget would refuse every voice (shim/sitecustomize.py)
SHIM_ENV = ("PYTHONPATH=/src/firmware/emu/shim", "PI_CHECK_NO_RT_BUDGET=1")


class Check:
    def __init__(self, args):
        self.args = args
        self.root = Path(args.root).resolve()
        self.out = Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.report: dict = {"checks": [], "steps": {}}
        if args.root_seconds is not None:
            self.report["steps"]["root"] = args.root_seconds
        self.failures: list[str] = []
        self.t_start = time.monotonic()

    # -- helpers ----------------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        print(f">> [{time.monotonic() - self.t_start:6.0f} s] {msg}", flush=True)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.report["checks"].append({"check": name, "ok": bool(ok), "detail": detail})
        self.log(("ok   " if ok else "FAIL ") + name + (f": {detail}" if detail else ""))
        if not ok:
            self.failures.append(name + (f": {detail}" if detail else ""))
        return ok

    def in_root(
        self,
        cmd: list[str],
        *,
        cpu: str = "cortex-a72",
        env: list[str] = (),
        timeout: float = 3600,
        log: str | None = None,
        workdir: str = "/",
    ) -> subprocess.CompletedProcess:
        """Run ``cmd`` inside the emulated Pi (pi-exec.sh); output to ``out/<log>`` when given."""
        full = [str(EMU / "pi-exec.sh"), "--cpu", cpu, "--root", str(self.root), "--workdir", workdir]
        for e in env:
            full += ["--env", e]
        full += ["--", "timeout", "-s", "KILL", str(int(timeout)), *cmd]
        t0 = time.monotonic()
        p = subprocess.run(full, capture_output=True, text=True)
        p.seconds = round(time.monotonic() - t0, 1)
        if log:
            (self.out / log).write_text(
                f"$ {' '.join(cmd)}\n# {cpu}, exit {p.returncode}, {p.seconds} s\n"
                + p.stdout
                + ("\n--- stderr ---\n" + p.stderr if p.stderr else "")
            )
        return p

    def host(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def step(self, name: str, fn) -> None:
        if name not in self.args.steps:
            return
        self.log(f"step {name}")
        t0 = time.monotonic()
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - a broken step is a failed check, the others still run
            self.check(f"{name} step ran", False, f"{type(err).__name__}: {err}")
        self.report["steps"][name] = round(time.monotonic() - t0, 1)
        self.log(f"step {name} took {self.report['steps'][name]:.0f} s")

    # -- provision --------------------------------------------------------------------------------
    def provision(self) -> None:
        first = not self.host(VENV_PY).exists()
        p = self.in_root(["bash", "/src/firmware/provision.sh", "--src", "/src"], log="provision.log", timeout=3600)
        skipped = re.findall(r"^skipped: (.*)$", p.stdout, re.M)
        pkgs = self.in_root([VENV_PY, "-m", "pip", "list", "--format=json"], timeout=600)
        versions = {}
        if pkgs.returncode == 0:
            versions = {d["name"].lower(): d["version"] for d in json.loads(pkgs.stdout or "[]")}
        self.report["provision"] = {
            "first_run": first,
            "exit_code": p.returncode,
            "seconds": p.seconds,
            "skipped": skipped,
            "venv": {k: versions[k] for k in sorted(versions) if k not in ("pip", "setuptools")},
        }
        self.check("provision.sh exits 0", p.returncode == 0, f"{p.seconds:.0f} s, {'first run' if first else 'again'}")
        expected = ("boot config", "WM8731 mixer", "systemctl daemon-reload")
        self.check(
            "provision.sh reports what a chroot cannot do (boot config, codec mixer, daemon-reload)",
            all(any(s.startswith(e) for s in skipped) for e in expected),
            "; ".join(s.split(" because")[0] for s in skipped),
        )
        for path in (
            "/etc/pimodule/config.toml",
            "/etc/systemd/system/pimodule.service",
            "/var/lib/pimodule/models/violin.onnx",
            "/etc/systemd/system/multi-user.target.wants/pimodule.service",
        ):
            self.check(f"provisioned {path}", self.host(path).exists() or self.host(path).is_symlink())
        same = (
            self.host("/etc/pimodule/config.toml").read_bytes() == (REPO / "configs/pi.toml").read_bytes()
            if self.host("/etc/pimodule/config.toml").exists()
            else False
        )
        self.report["provision"]["config_is_configs_pi_toml"] = same

    # -- torch ------------------------------------------------------------------------------------
    def torch(self) -> None:
        code = (
            "import importlib.util, importlib.metadata as m, sys; "
            "found = importlib.util.find_spec('torch') is not None; "
            "dists = [d.metadata['Name'] for d in m.distributions() if d.metadata['Name'].lower().startswith('torch')]; "
            "print(found, dists); sys.exit(1 if found or dists else 0)"
        )
        res = {}
        for py in (VENV_PY, "/usr/bin/python3"):
            p = self.in_root([py, "-c", code], timeout=600)
            res[py] = p.stdout.strip() or p.stderr.strip()[-200:]
            self.check(f"torch absent ({py})", p.returncode == 0, res[py])
        self.report["torch"] = res

    # -- the daemon, as the service ------------------------------------------------------------------
    def daemon(self) -> None:
        secs = self.args.seconds
        work = self.host(WORK)
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        os.chown(work, *self._root_uid_gid("pimodule"))
        cache_files = list(self.host(CACHE).rglob("*.nbi")) if self.host(CACHE).exists() else []
        runs = {}
        # 1. exactly as the unit, nothing added to its environment: the first start after provisioning
        #    (numba compiles the engine), no --offline (the daemon finds no codec and falls back to
        #    the simulated clock by itself). Emulated time is 20-50 x slower than a Pi's, so
        #    validation refuses the voice as too slow for the board: reported, not held against it.
        extra = ["--cv", "simulated", "--mode", "synth", "--duration", "1", "--osc-port", "0", "--flash-port", "0"]
        p, info = self._unit("as-unit", extra, [])
        runs["as-unit"] = self._as_unit_run(p, info)
        # 2. the same with validation's real-time budget lifted (firmware/emu/shim), in every mode,
        #    and the same command on this x86_64 machine
        host_cfg, host_models = self._host_config()
        import soundfile

        host_input = self.out / "input.wav"
        shutil.copy(self.host(INPUT), host_input)
        # fx mode processes input R (the chain is matched on L): the same speech on both inputs
        speech, rate = soundfile.read(str(host_input), dtype="float32")
        stereo = np.stack([speech, speech], 1) if speech.ndim == 1 else speech
        host_stereo = self.out / "input-stereo.wav"
        soundfile.write(str(host_stereo), stereo, rate)
        shutil.copy(host_stereo, self.host(f"{WORK}/input-stereo.wav"))
        inputs = {"transfer": (INPUT, host_input), "fx": (f"{WORK}/input-stereo.wav", host_stereo)}
        for mode in MODES:
            dur = secs
            extra = [
                "--offline",
                "--cv",
                "simulated",
                "--mode",
                mode,
                "--duration",
                str(dur),
                "--osc-port",
                "0",
                "--flash-port",
                "0",
            ]
            # transfer and fx play a real recording (speech) into input L, looped on the simulated clock
            given = ["--input", inputs[mode][0]] if mode in inputs else []
            p, info = self._unit(mode, extra + given, SHIM_ENV)
            h_rec = self.out / f"host-daemon-{mode}.wav"
            h_given = ["--input", str(inputs[mode][1])] if given else []
            t0 = time.monotonic()
            hp = subprocess.run(
                [
                    str(REPO / ".venv/bin/pimodule"),
                    "run",
                    "--config",
                    str(host_cfg),
                    *extra,
                    *h_given,
                    "--record",
                    str(h_rec),
                ],
                capture_output=True,
                text=True,
                timeout=900,
                env={
                    **os.environ,
                    "PYTHONDONTWRITEBYTECODE": "1",
                    "PI_CHECK_NO_RT_BUDGET": "1",
                    "PYTHONPATH": str(EMU / "shim"),
                },
            )
            (self.out / f"host-daemon-{mode}.log").write_text(hp.stdout + hp.stderr)
            runs[mode] = self._daemon_run(
                mode, p, info, self.host(f"{WORK}/daemon-{mode}.wav"), h_rec, hp, time.monotonic() - t0, dur
            )
        shutil.rmtree(host_models, ignore_errors=True)
        unit = runs["as-unit"].pop("unit", {})
        self.report["daemon"] = {
            "unit": unit,
            "harness_environment": dict(e.split("=", 1) for e in SHIM_ENV),
            "numba_cache_was_empty": not cache_files,
            "seconds_of_audio": secs,
            "tolerance": {
                "f0_cents": DAEMON_F0_CENTS,
                "level_db": DAEMON_LEVEL_DB,
                "spectrum_db": DAEMON_SPECTRUM_DB,
                "bands_db": DAEMON_BANDS_DB,
                "silence_peak": SILENCE,
            },
            "runs": runs,
        }

    def _unit(self, name: str, extra: list[str], env: list[str]):
        """unit_run.py in the root (cortex-a72): the service's command plus ``extra``, recording."""
        args = [
            "/usr/bin/python3",
            "/src/firmware/emu/unit_run.py",
            "--log",
            f"{WORK}/daemon-{name}.log",
            "--timeout",
            "3000",
        ]
        for e in env:
            args += ["--env", e]
        p = self.in_root(
            [*args, "--", *extra, "--record", f"{WORK}/daemon-{name}.wav"], timeout=3600, log=f"unit-{name}.log"
        )
        journal = self.host(f"{WORK}/daemon-{name}.log")
        if journal.exists():
            shutil.copy(journal, self.out / f"daemon-{name}.log")
        return p, _last_json(p.stdout)

    def _as_unit_run(self, p, info) -> dict:
        journal = self.out / "daemon-as-unit.log"
        text = journal.read_text() if journal.exists() else ""
        refusal = _first_line(text, r"failed validation|starting without a voice")
        out = {
            "exit_code": p.returncode,
            "seconds": p.seconds,
            "ready_after_s": info.get("ready_after_s"),
            "timeout_start_s": info.get("timeout_start_s"),
            "watchdog_pings": info.get("watchdog_pings"),
            "fell_back_to_simulated_clock": "running OFFLINE on a simulated clock" in text,
            "voice_refused": refusal,
            "unit": {
                k: info.get(k)
                for k in (
                    "command",
                    "user",
                    "groups",
                    "workdir",
                    "environment",
                    "applied",
                    "not_applied",
                    "limit_errors",
                )
            },
        }
        played = re.search(r"^played on (.*)$", text, re.M)
        out["played"] = played.group(1) if played else None
        self.check(
            "daemon as the unit: exits 0 (emulated cortex-a72)",
            p.returncode == 0 and info.get("exit_code") == 0,
            f"{p.seconds:.0f} s",
        )
        self.check(
            "daemon as the unit: READY=1 on NOTIFY_SOCKET",
            info.get("ready_after_s") is not None,
            f"after {info.get('ready_after_s')} s (the unit's TimeoutStartSec: {info.get('timeout_start_s')} s)",
        )
        self.check(
            "daemon as the unit: no codec, so it falls back to the simulated clock by itself",
            out["fell_back_to_simulated_clock"],
        )
        self.check(
            "daemon as the unit: a voice refused only for emulated time (the real-time budget)",
            not refusal or "too slow for this board" in refusal,
            refusal or "the voice loaded",
        )
        return out

    def _daemon_run(self, mode, p, info, rec: Path, h_rec: Path, hp, host_s: float, dur: float) -> dict:
        import soundfile

        out = {
            "exit_code": p.returncode,
            "seconds": p.seconds,
            "ready_after_s": info.get("ready_after_s"),
            "watchdog_pings": info.get("watchdog_pings"),
            "host_exit_code": hp.returncode,
            "host_seconds": round(host_s, 1),
            "seconds_of_audio": dur,
        }
        journal = self.out / f"daemon-{mode}.log"
        text = journal.read_text() if journal.exists() else ""
        played = re.search(r"^played on (.*)$", text, re.M)
        out["played"] = played.group(1) if played else None
        out["voice_refused"] = _first_line(text, r"failed validation|starting without a voice") or None
        self.check(
            f"daemon {mode}: the service's command exits 0 (emulated cortex-a72, budget lifted)",
            p.returncode == 0 and info.get("exit_code") == 0,
            f"{p.seconds:.0f} s",
        )
        self.check(
            f"daemon {mode}: READY=1 on NOTIFY_SOCKET",
            info.get("ready_after_s") is not None,
            f"after {info.get('ready_after_s')} s",
        )
        self.check(f"daemon {mode}: the voice loads", not out["voice_refused"], out["voice_refused"] or "")
        self.check(
            f"daemon {mode}: the same command runs on x86_64",
            hp.returncode == 0,
            hp.stderr[-200:] if hp.returncode else "",
        )
        if not rec.exists() or not h_rec.exists():
            self.check(f"daemon {mode}: recordings written", False, f"emulated {rec.exists()}, x86_64 {h_rec.exists()}")
            return out
        a, rate = soundfile.read(str(rec), dtype="float32")
        b, _ = soundfile.read(str(h_rec), dtype="float32")
        shutil.copy(rec, self.out / f"emulated-daemon-{mode}.wav")
        for who, x in (("emulated", a), ("x86_64", b)):
            out[who] = {
                "samples": int(x.shape[0]),
                "finite": bool(np.all(np.isfinite(x))),
                "peak": round(float(np.max(np.abs(x))), 5) if x.size else 0.0,
                "rms": round(float(np.sqrt(np.mean(x.astype(np.float64) ** 2))), 6) if x.size else 0.0,
            }
        self.check(
            f"daemon {mode}: recording finite, {dur:g} s long",
            out["emulated"]["finite"] and out["emulated"]["samples"] == int(round(dur * rate)),
            f"{out['emulated']['samples']} samples",
        )
        if mode == "synth":
            cmp = compare_recordings.compare(b, a, rate)
            out["compare_to_x86_64"] = {k: v for k, v in cmp.items()}
            self.check("daemon synth: not silent", out["emulated"]["peak"] > SILENCE, f"peak {out['emulated']['peak']}")
            worst = (cmp["max_abs_f0_cents_diff"], cmp["max_abs_level_db_diff"], cmp["max_spectrum_db_diff"])
            self.check(
                f"daemon synth: every note within {DAEMON_F0_CENTS} cents, {DAEMON_LEVEL_DB} dB and a spectrum "
                f"{DAEMON_SPECTRUM_DB} dB of x86_64's",
                None not in worst
                and worst[0] <= DAEMON_F0_CENTS
                and worst[1] <= DAEMON_LEVEL_DB
                and worst[2] <= DAEMON_SPECTRUM_DB,
                f"max {worst[0]} cents, {worst[1]} dB, spectrum {worst[2]} dB over {cmp['notes_compared']} notes",
            )
        else:
            cmp = compare_recordings.compare_windows(b, a, rate)
            out["input"] = INPUT + " (alsa-utils; speech, 48 kHz), looped: input L (transfer), L and R (fx)"
            out["compare_to_x86_64"] = cmp
            self.check(
                f"daemon {mode}: not silent", out["emulated"]["peak"] > SILENCE, f"peak {out['emulated']['peak']}"
            )
            ok = cmp.get("windows_compared", 0) > 0 and (
                cmp["level_db_diff_p90"] <= DAEMON_LEVEL_DB and cmp["bands_db_diff_p90"] <= DAEMON_BANDS_DB
            )
            self.check(
                f"daemon {mode}: 90 % of 100 ms windows within {DAEMON_LEVEL_DB} dB and third-octave bands "
                f"{DAEMON_BANDS_DB} dB of x86_64's",
                ok,
                f"p90 {cmp.get('level_db_diff_p90')} dB, bands {cmp.get('bands_db_diff_p90')} dB over "
                f"{cmp.get('windows_compared')} windows ({cmp.get('windows_at_cv_changes')} where a CV note lands "
                "left out)",
            )
        return out

    def _host_config(self) -> tuple[Path, Path]:
        """configs/pi.toml with the models dir pointing at a copy of export/ (the store writes there)."""
        models = self.out / "host-models"
        shutil.rmtree(models, ignore_errors=True)
        models.mkdir()
        for f in sorted((REPO / "export").glob("*.onnx")):
            shutil.copy(f, models / f.name)
        text = (REPO / "configs/pi.toml").read_text()
        text = re.sub(r'^dir = ".*"', f'dir = "{models}"', text, flags=re.M)
        cfg = self.out / "host-config.toml"
        cfg.write_text(text)
        return cfg, models

    # -- the engine, sample by sample ------------------------------------------------------------------
    def engine(self) -> None:
        work = self.host(WORK)
        work.mkdir(parents=True, exist_ok=True)
        os.chown(work, *self._root_uid_gid("pimodule"))
        host_input = self.out / "input.wav"
        shutil.copy(self.host(INPUT), host_input)
        runs = {}
        model = "/var/lib/pimodule/models/violin.onnx"
        for mode in MODES:
            args = ["--model", model, "--mode", mode, "--seconds", str(self.args.seconds)]
            if mode != "synth":
                args += ["--input", INPUT]
            p = self.in_root(
                [
                    *AS_USER,
                    "/usr/bin/env",
                    *USER_ENV,
                    VENV_PY,
                    "/src/firmware/emu/engine_record.py",
                    *args,
                    "--out",
                    f"{WORK}/engine-{mode}.npy",
                ],
                log=f"engine-{mode}.log",
                timeout=3600,
            )
            info = _last_json(p.stdout)
            h_args = [
                a if a not in (model, INPUT) else (str(REPO / "export/violin.onnx") if a == model else str(host_input))
                for a in args
            ]
            hp = subprocess.run(
                [
                    str(REPO / ".venv/bin/python"),
                    str(EMU / "engine_record.py"),
                    *h_args,
                    "--out",
                    str(self.out / f"host-engine-{mode}.npy"),
                ],
                capture_output=True,
                text=True,
                timeout=900,
            )
            row = {"emulated": info, "emulated_seconds": p.seconds, "x86_64": _last_json(hp.stdout)}
            got = self.host(f"{WORK}/engine-{mode}.npy")
            if p.returncode != 0 or hp.returncode != 0 or not got.exists():
                self.check(f"engine {mode}: runs on both", False, (p.stderr or hp.stderr)[-300:])
                runs[mode] = row
                continue
            a = np.load(got)
            b = np.load(self.out / f"host-engine-{mode}.npy")
            cmp = engine_record.compare(b, a)
            row["compare_to_x86_64"] = cmp
            runs[mode] = row
            self.check(
                f"engine {mode}: finite and not silent (emulated cortex-a72)",
                cmp["finite"] and info.get("peak", 0) > SILENCE,
                f"peak {info.get('peak', 0):.3f}",
            )
            self.check(
                f"engine {mode}: equal to x86_64's within {ENGINE_MAX_ABS:g}",
                cmp["same_length"] and cmp["max_abs_diff"] <= ENGINE_MAX_ABS,
                f"max |difference| {cmp['max_abs_diff']:.2e}, SNR {cmp['snr_db'] if cmp['snr_db'] is None else round(cmp['snr_db'], 1)} dB",
            )
        self.report["engine"] = {
            "model": "violin",
            "input": INPUT + " (alsa-utils; speech, 48 kHz; L, and R in fx mode)",
            "fx_estimate": engine_record.FX_ESTIMATE,
            "tolerance_max_abs": ENGINE_MAX_ABS,
            "runs": runs,
        }

    def _root_uid_gid(self, user: str) -> tuple[int, int]:
        for line in self.host("/etc/passwd").read_text().splitlines():
            f = line.split(":")
            if f[0] == user:
                return int(f[2]), int(f[3])
        raise RuntimeError(f"no user {user} in the root (provision first)")

    # -- SIGILL matrix ----------------------------------------------------------------------------------
    def sigill(self) -> None:
        models = sorted(p.name for p in (REPO / "export").glob("*.onnx"))
        matrix = {"imports": {}, "models": {}, "onnxruntime": {}}
        for cpu in CPUS:
            matrix["imports"][cpu] = self._imports(cpu)
            matrix["models"][cpu] = {}
            for m in models:
                matrix["models"][cpu][m] = self._model(cpu, f"/var/lib/pimodule/models/{m}")
        matrix["onnxruntime"] = self._ort_versions()
        self.report["sigill"] = matrix

    def _imports(self, cpu: str) -> dict:
        results, skip = {}, []
        for _ in range(60):
            p = self.in_root(
                [
                    *AS_USER,
                    "/usr/bin/env",
                    *USER_ENV,
                    VENV_PY,
                    "/src/firmware/emu/sigill_items.py",
                    "imports",
                    "--skip",
                    ",".join(skip),
                ],
                cpu=cpu,
                log=f"sigill-imports-{cpu}.log",
                timeout=3600,
            )
            current = None
            for line in p.stdout.splitlines():
                parts = line.split(" ", 2)
                if parts[0] == "BEGIN":
                    current = parts[1]
                    results[current] = {"result": "started", "dist": " ".join(parts[2:])}
                elif parts[0] in ("OK", "ERROR") and len(parts) > 1:
                    results[parts[1]]["result"] = "pass" if parts[0] == "OK" else "python-error"
                    results[parts[1]]["detail"] = parts[2] if len(parts) > 2 else ""
                    skip.append(parts[1])
                    current = None
            if p.returncode in (0, 1) and current is None:
                break
            if current is None:
                results["(process)"] = {"result": _signal_name(p.returncode), "detail": p.stderr[-200:]}
                break
            results[current]["result"] = _signal_name(p.returncode)
            skip.append(current)
        bad = {k: v["result"] for k, v in results.items() if v["result"] != "pass"}
        sig = {k: v for k, v in bad.items() if v in ("sigill", "signal", "timeout")}
        self.check(
            f"SIGILL matrix {cpu}: every device dependency imports without a signal",
            not sig,
            f"{len(results)} modules"
            + (f"; {sig}" if sig else "")
            + (f"; Python errors: {bad}" if bad and not sig else ""),
        )
        return results

    def _model(self, cpu: str, path: str) -> dict:
        p = self.in_root(
            [*AS_USER, "/usr/bin/env", *USER_ENV, VENV_PY, "/src/firmware/emu/sigill_items.py", "model", path],
            cpu=cpu,
            log=f"sigill-{Path(path).stem}-{cpu}.log",
            timeout=3600,
        )
        steps, current = {}, None
        for line in p.stdout.splitlines():
            parts = line.split(" ", 2)
            if parts[0] == "BEGIN":
                current = parts[1]
            elif parts[0] in ("OK", "ERROR") and len(parts) > 1:
                steps[parts[1]] = {
                    "result": "pass" if parts[0] == "OK" else "python-error",
                    "detail": parts[2] if len(parts) > 2 else "",
                }
                current = None
        if current is not None:
            steps[current] = {"result": _signal_name(p.returncode), "detail": p.stderr[-200:]}
        ok = p.returncode == 0 and all(s["result"] == "pass" for s in steps.values())
        self.check(
            f"SIGILL matrix {cpu}: {Path(path).name} runs ({', '.join(steps)})",
            ok,
            f"{p.seconds:.0f} s" + ("" if ok else f"; exit {p.returncode}: {steps} {p.stderr[-200:]}"),
        )
        return {"exit_code": p.returncode, "seconds": p.seconds, "steps": steps}

    def _ort_versions(self) -> dict:
        """onnxruntime releases beside the pin, each in its own --target dir shadowing the venv's."""
        out = {}
        code = (
            "import numpy as np, onnxruntime as ort; "
            "s = ort.InferenceSession('/var/lib/pimodule/models/violin-small.onnx', providers=['CPUExecutionProvider']); "
            "types = {'tensor(float)': np.float32, 'tensor(double)': np.float64, 'tensor(int64)': np.int64}; "
            "feeds = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], types[i.type]) "
            "for i in s.get_inputs()}; s.run(None, feeds); print('ok', ort.__version__)"
        )
        pinned = self.host(VENV_PY).parent.parent / "lib/python3.11/site-packages"
        pin = next((p.name[: -len(".dist-info")].split("-")[1] for p in pinned.glob("onnxruntime-*.dist-info")), "?")
        for version in (pin, *ORT_VERSIONS):
            target = f"/opt/pi-check/ort-{version}"
            row = {}
            if version != pin and not self.host(target + "/onnxruntime").exists():
                p = self.in_root(
                    [VENV_PY, "-m", "pip", "install", "-q", "--no-deps", "--target", target, f"onnxruntime=={version}"],
                    log=f"ort-{version}-install.log",
                    timeout=1800,
                )
                if p.returncode != 0:
                    row["install"] = p.stderr[-300:]
                    out[version] = row
                    continue
            env = [f"PYTHONPATH={target}"] if version != pin else []
            for cpu in CPUS:
                p = self.in_root(
                    [VENV_PY, "-c", code],
                    cpu=cpu,
                    env=[*env, "OPENBLAS_NUM_THREADS=1"],
                    log=f"ort-{version}-{cpu}.log",
                    timeout=1800,
                )
                row[cpu] = {
                    "result": "pass" if p.returncode == 0 and "ok" in p.stdout else _signal_name(p.returncode),
                    "exit_code": p.returncode,
                    "detail": (p.stdout + p.stderr).strip()[-160:],
                }
            out[version] = row
            self.log(f"onnxruntime {version}: " + ", ".join(f"{c} {row[c]['result']}" for c in CPUS if c in row))
        self.check(
            f"onnxruntime {pin} (the pin) passes on both CPU models",
            all(out.get(pin, {}).get(c, {}).get("result") == "pass" for c in CPUS),
        )
        out["pinned"] = pin
        return out

    # -- device tests ------------------------------------------------------------------------------------
    def tests(self) -> None:
        target = "/opt/pi-check/pytest"
        if not self.host(target + "/pytest").exists():
            p = self.in_root(
                [VENV_PY, "-m", "pip", "install", "-q", "--target", target, "pytest>=8", "pytest-timeout>=2.2"],
                log="pytest-install.log",
                timeout=1800,
            )
            if not self.check("pytest installed beside the venv (not into it)", p.returncode == 0, p.stderr[-200:]):
                return
        files = list(self.args.tests or TESTS)
        res = {}
        for cpu in CPUS:
            junit = f"{WORK}/junit-{cpu}.xml"
            p = self.in_root(
                [
                    *AS_USER,
                    "/usr/bin/env",
                    *USER_ENV,
                    f"PYTHONPATH=/src:{target}:/src/firmware/emu",
                    VENV_PY,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "-p",
                    "pi_pytest",
                    "-rs",
                    "--timeout",
                    "1800",
                    "--junitxml",
                    junit,
                    *files,
                ],
                cpu=cpu,
                workdir="/src",
                log=f"tests-{cpu}.log",
                timeout=5400,
            )
            counts = _junit_counts(self.host(junit))
            counts.update(seconds=p.seconds, exit_code=p.returncode)
            tail = [ln for ln in p.stdout.splitlines() if ln.strip()][-1:] or [""]
            counts["summary"] = tail[0]
            res[cpu] = counts
            self.check(
                f"device tests pass under {cpu}",
                p.returncode == 0 and counts.get("tests", 0) > 0,
                f"{tail[0]} in {p.seconds:.0f} s",
            )
        self.report["tests"] = {"files": files, "runs": res}

    # -- all --------------------------------------------------------------------------------------------------
    def run(self) -> int:
        self.report["environment"] = self._environment()
        self.step("provision", self.provision)
        self.step("torch", self.torch)
        self.step("daemon", self.daemon)
        self.step("engine", self.engine)
        self.step("sigill", self.sigill)
        self.step("tests", self.tests)
        self.report["passed"] = not self.failures
        self.report["failures"] = self.failures
        self.report["seconds"] = round(time.monotonic() - self.t_start, 1)
        self.report["steps"]["total"] = self.report["seconds"]
        path = Path(self.args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.report, indent=1) + "\n")
        if self.args.stamp:
            subprocess.run(
                [
                    str(REPO / ".venv/bin/python"),
                    "-m",
                    "pimodule.laptop.results_page",
                    "--stamp",
                    str(path),
                    "--kind",
                    "pi_check",
                    "--title",
                    "The module on an emulated Raspberry Pi (make pi-check)",
                    "--command",
                    "make pi-check",
                ],
                check=False,
            )
        n_ok = sum(c["ok"] for c in self.report["checks"])
        self.log(
            f"{n_ok} of {len(self.report['checks'])} checks passed in {self.report['seconds']:.0f} s; report: {path}"
        )
        for f in self.failures:
            self.log(f"FAILED: {f}")
        return 0 if not self.failures else 1

    def _environment(self) -> dict:
        qemu = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True).stdout.split("\n")[
            0
        ]
        osr = self.host("/etc/os-release")
        pretty = re.search(r'^PRETTY_NAME="(.*)"', osr.read_text(), re.M).group(1) if osr.exists() else "?"
        return {
            "qemu": qemu,
            "root": str(self.root),
            "root_os": pretty,
            "cpus": list(CPUS),
            "host_cores": os.cpu_count(),
            "host_load_1min": round(os.getloadavg()[0], 1),
        }


def _signal_name(rc: int) -> str:
    if rc == 132:
        return "sigill"
    if rc in (137, 124):
        return "timeout"
    if rc > 128:
        return "signal"
    return "fail"


def _last_json(text: str) -> dict:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return {}


def _first_line(text: str, pattern: str) -> str:
    m = re.search(f"^.*(?:{pattern}).*$", text, re.M)
    return m.group(0)[-240:] if m else ""


def _junit_counts(path: Path) -> dict:
    if not path.exists():
        return {}
    import xml.etree.ElementTree as ET

    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    keys = ("tests", "failures", "errors", "skipped")
    out = {k: int(suite.get(k, 0)) for k in keys}
    out["passed"] = out["tests"] - out["failures"] - out["errors"] - out["skipped"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pi_check.py", description=__doc__.splitlines()[0])
    cache = os.environ.get("PIMODULE_CACHE", os.path.expanduser("~/.cache/pimodule"))
    p.add_argument("--root", default=os.environ.get("PI_ROOT", os.path.join(cache, "pi-root")))
    p.add_argument("--out", default=str(REPO / "out" / "pi-check"), help="logs and recordings")
    p.add_argument("--json", default=str(REPO / "docs" / "results" / "pi_check.json"))
    p.add_argument("--no-stamp", dest="stamp", action="store_false", help="do not stamp the JSON for docs/results.md")
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {','.join(STEPS)}")
    p.add_argument("--seconds", type=float, default=3.6, help="audio per daemon and engine run (the melody: 3.3 s)")
    p.add_argument("--tests", nargs="*", help="device test files (default: the set in this file)")
    p.add_argument("--root-seconds", type=float, help="what building (or checking) the root took (pi-check.sh)")
    args = p.parse_args(argv)
    args.steps = [s for s in args.steps.split(",") if s]
    unknown = set(args.steps) - set(STEPS)
    if unknown:
        p.error(f"unknown steps {sorted(unknown)}")
    if os.geteuid() != 0:
        p.error("run as root (chroot, mounts)")
    return Check(args).run()


if __name__ == "__main__":
    sys.exit(main())
