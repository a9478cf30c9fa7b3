"""Compare two recordings of the daemon playing the simulated CV melody (make pi-check).

``python firmware/emu/compare_recordings.py REF.wav OTHER.wav [--json OUT]``

The daemon's simulated CV reaches the engine through two threads that poll in wall time (the
melody source at 500 Hz, the CV reader at 1 kHz with its 25 Hz low-pass and a 3 mV dead-band),
so two runs of the same command, even on one machine, do not give the same samples: the pitch a
note settles at differs by up to the dead-band (3.6 cents) and its onset by a few milliseconds,
and the waveforms part within the first note. What must agree is what a listener hears: per note
of the melody (pimodule.device.control.DEMO_MELODY, timed in samples), in the note's settled
middle, its pitch (YIN median, cents), its level (RMS, dB) and its spectrum (mean absolute
difference of the log magnitude spectra, dB, where the reference is within 60 dB of its peak).
Prints a JSON report; the pass/fail thresholds are applied by the caller (pi_check.py).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

SETTLE_S = 0.08  # skip the onset (CV smoothing, gate envelope, the engine's frame)
TAIL_S = 0.02  # and the end of each note
BANDS_RANGE_DB = 30.0  # the bands compared: within this of the window's loudest (what is heard over it)


def _mono(x: np.ndarray) -> np.ndarray:
    return x if x.ndim == 1 else x[:, 0]


def notes(seconds: float):
    """(index, start_s, end_s, gate) of every note the melody plays within ``seconds``."""
    from pimodule.device.control import DEMO_MELODY

    out, t, i = [], 0.0, 0
    while t < seconds:
        note = DEMO_MELODY[i % len(DEMO_MELODY)]
        out.append((i, t, min(t + note.seconds, seconds), note.gate, note.volts))
        t += note.seconds
        i += 1
    return out


def _spectrum_db(x: np.ndarray) -> np.ndarray:
    w = np.hanning(x.shape[0])
    s = np.abs(np.fft.rfft(x * w, n=1 << int(np.ceil(np.log2(x.shape[0])))))
    return 20 * np.log10(s + 1e-9)


def _bands_db(x: np.ndarray, rate: int) -> np.ndarray:
    """Third-octave band levels (dB) from 50 Hz: the spectral envelope, what the ear compares.
    Two renderings of the same playing whose fine detail has drifted apart (a noise component,
    a partial's phase after a control landed a poll later) differ by dBs bin by bin, not here."""
    p = np.abs(np.fft.rfft(x * np.hanning(x.shape[0]))) ** 2
    f = np.fft.rfftfreq(x.shape[0], 1.0 / rate)
    edges = 50.0 * 2.0 ** (np.arange(31) / 3.0)
    edges = edges[edges < rate / 2]
    return 10 * np.log10(np.array([p[(f >= lo) & (f < hi)].sum() for lo, hi in zip(edges[:-1], edges[1:])]) + 1e-18)


def _f0(x: np.ndarray, rate: int) -> float:
    from pimodule.core.features import yin_f0

    f0, per = yin_f0(x.astype(np.float64), rate, hop_size=480, fmin_hz=50.0, fmax_hz=2000.0)
    good = per > 0.5
    return float(np.median(f0[good])) if good.any() else float("nan")


def compare(ref: np.ndarray, other: np.ndarray, rate: int) -> dict:
    ref, other = _mono(ref).astype(np.float64), _mono(other).astype(np.float64)
    n = min(ref.shape[0], other.shape[0])
    rows = []
    for i, t0, t1, gate, volts in notes(n / rate):
        a0, a1 = int((t0 + SETTLE_S) * rate), int((t1 - TAIL_S) * rate)
        if a1 - a0 < int(0.1 * rate):
            continue
        a, b = ref[a0:a1], other[a0:a1]
        la = 20 * np.log10(np.sqrt(np.mean(a**2)) + 1e-12)
        lb = 20 * np.log10(np.sqrt(np.mean(b**2)) + 1e-12)
        row = {
            "note": i,
            "start_s": round(t0, 3),
            "gate": gate,
            "cv1_v": round(volts, 4),
            "level_db_ref": round(float(la), 2),
            "level_db_diff": round(float(lb - la), 3),
        }
        if gate and la > -60:
            fa, fb = _f0(a, rate), _f0(b, rate)
            row["f0_hz_ref"] = round(fa, 2)
            row["f0_cents_diff"] = round(float(1200 * np.log2(fb / fa)), 2) if fa > 0 and fb > 0 else None
            sa, sb = _spectrum_db(a), _spectrum_db(b)
            keep = sa > sa.max() - 60
            row["spectrum_db_diff"] = round(float(np.mean(np.abs(sb[keep] - sa[keep]))), 3)
        rows.append(row)
    gated = [r for r in rows if "f0_cents_diff" in r]

    def worst(key):
        vals = [abs(r[key]) for r in (gated if key != "level_db_diff" else rows) if r.get(key) is not None]
        return max(vals) if vals else None

    return {
        "samples_ref": int(ref.shape[0]),
        "samples_other": int(other.shape[0]),
        "notes_compared": len(rows),
        "max_abs_f0_cents_diff": worst("f0_cents_diff"),
        "max_abs_level_db_diff": worst("level_db_diff"),
        "max_spectrum_db_diff": worst("spectrum_db_diff"),
        "sample_max_abs_diff": float(np.max(np.abs(ref[:n] - other[:n]))) if n else None,
        "first_sample_differing_1e-4": int(np.argmax(np.abs(ref[:n] - other[:n]) > 1e-4))
        if n and np.any(np.abs(ref[:n] - other[:n]) > 1e-4)
        else None,
        "notes": rows,
    }


def compare_windows(
    ref: np.ndarray, other: np.ndarray, rate: int, window_s: float = 0.1, cv_changes: bool = True
) -> dict:
    """Two recordings of the daemon playing a recording (transfer and fx mode), window by window
    where the reference is within 50 dB of its loudest window: level and third-octave band
    differences (:func:`_bands_db`, the bands within :data:`BANDS_RANGE_DB` of the loudest: mean
    absolute dB; median and 90th percentile over the windows).

    Bands, not FFT bins: the simulated CV reaches the audio process through the control threads, a
    poll or more later under emulation than here, and once one control lands a block apart the two
    recordings drift apart in detail (noise, phases) while the module plays the same: bin by bin
    that read as 1-2 dB everywhere after it (and failed pi-check now and then), in bands 0.1-0.4
    dB, where a note an octave off is 14 dB and a partial 14 dB louder 3.5 dB. With ``cv_changes`` the windows the simulated CV
    melody's next note can land in (from its start to :data:`SETTLE_S` after) are left out too,
    as :func:`compare` leaves out each note's onset. The engine step compares the audio path itself
    sample by sample."""
    ref, other = _mono(ref).astype(np.float64), _mono(other).astype(np.float64)
    n, w = min(ref.shape[0], other.shape[0]), int(window_s * rate)
    starts = [int(round(t0 * rate)) for _, t0, *_ in notes(n / rate)] if cv_changes else []
    settle = int(round(SETTLE_S * rate))
    levels, diffs, bands, skipped = [], [], [], 0
    for a0 in range(0, n - w + 1, w):
        if any(a0 < c + settle and c < a0 + w for c in starts):
            skipped += 1
            continue
        a, b = ref[a0 : a0 + w], other[a0 : a0 + w]
        levels.append(20 * np.log10(np.sqrt(np.mean(a**2)) + 1e-12))
        diffs.append(20 * np.log10(np.sqrt(np.mean(b**2)) + 1e-12) - levels[-1])
        sa, sb = _bands_db(a, rate), _bands_db(b, rate)
        keep = sa > sa.max() - BANDS_RANGE_DB
        bands.append(float(np.mean(np.abs(sb[keep] - sa[keep]))))
    levels, diffs, bands = np.array(levels), np.abs(np.array(diffs)), np.array(bands)
    loud = levels > (levels.max() - 50 if levels.size else 0)
    if not loud.any():
        return {"windows_compared": 0, "windows_at_cv_changes": skipped}
    return {
        "windows_compared": int(loud.sum()),
        "windows_at_cv_changes": skipped,
        "level_db_diff_median": round(float(np.median(diffs[loud])), 3),
        "level_db_diff_p90": round(float(np.percentile(diffs[loud], 90)), 3),
        "bands_db_diff_median": round(float(np.median(bands[loud])), 3),
        "bands_db_diff_p90": round(float(np.percentile(bands[loud], 90)), 3),
        "sample_max_abs_diff": float(np.max(np.abs(ref[:n] - other[:n]))) if n else None,
        "first_sample_differing_1e-4": int(np.argmax(np.abs(ref[:n] - other[:n]) > 1e-4))
        if n and np.any(np.abs(ref[:n] - other[:n]) > 1e-4)
        else None,
    }


def main(argv: list[str] | None = None) -> int:
    import soundfile

    p = argparse.ArgumentParser(prog="compare_recordings.py", description=__doc__.splitlines()[0])
    p.add_argument("ref")
    p.add_argument("other")
    p.add_argument("--json", help="write the report here too")
    args = p.parse_args(argv)
    a, ra = soundfile.read(args.ref, dtype="float32")
    b, rb = soundfile.read(args.other, dtype="float32")
    if ra != rb:
        raise SystemExit(f"sample rates differ: {ra} and {rb}")
    report = compare(a, b, ra)
    text = json.dumps(report)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
