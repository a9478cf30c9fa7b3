"""What a prepared dataset holds, in a musician's words: minutes, pitch range, loudness range,
silence, and warnings (polyphony, too little silence, reverb, background noise); and the minimum
below which ``pimodule data prepare`` refuses.

Everything is measured on the features the voice trains on (YIN f0 and periodicity, A-weighted
loudness per frame), on real audio only (the zero padding of short pieces is not counted).
The detectors are cheap heuristics: they say "suspected", never "found".
"""

from __future__ import annotations

import numpy as np

AUDIBLE_DB = -60.0  # frames quieter than this are silence (the evaluation scores louder ones)
VOICED = 0.7  # periodicity above which a frame has a clear pitch (the evaluation's threshold)
PAUSE_ABOVE_FLOOR_DB = 6.0  # also silence: frames near the quietest ones (noise in the pauses) ...
PAUSE_BELOW_PLAYING_DB = 20.0  # ... that are well below the playing (p95)
MIN_VOICED_MINUTES = 3.0  # less pitched training audio than this is refused (--force goes on)
MIN_HELD_OUT_VOICED_S = 10.0  # the held-out part needs this much pitched audio to score the voice
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

# warning thresholds (tuned on rendered solo lines, chords, a reverberated and a noisy copy)
POLYPHONY_SHARE = 0.35  # share of the loud frames without a clear pitch
SILENCE_SHARE_MIN = 0.05
NOISE_FLOOR_DB = -50.0  # the pauses sit above this ...
NOISE_RANGE_DB = 40.0  # ... and less than this below the loud parts
REVERB_DECAY_S = 0.4  # median time to fall 30 dB after the sound stops
PERCENTILES = (5, 50, 95)


def note_name(hz: float) -> str:
    midi = int(round(69 + 12 * np.log2(max(float(hz), 1e-3) / 440.0)))
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def hz_to_midi(hz: np.ndarray | float) -> np.ndarray | float:
    return 69 + 12 * np.log2(np.maximum(hz, 1e-3) / 440.0)


def _masks(seg: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ld, per = seg["loudness_db"], seg["periodicity"]
    audible = ld > AUDIBLE_DB
    return audible, audible & (per > VOICED), ld


def split_stats(segments: list[dict], frame_rate: float) -> dict:
    """Minutes, voiced minutes, f0 and loudness percentiles, silence share of feature segments
    (dicts of ``f0_hz``, ``periodicity``, ``loudness_db`` over real audio)."""
    if not segments:
        return {"minutes": 0.0, "voiced_minutes": 0.0, "voiced_seconds": 0.0}
    f0 = np.concatenate([s["f0_hz"] for s in segments])
    per = np.concatenate([s["periodicity"] for s in segments])
    ld = np.concatenate([s["loudness_db"] for s in segments])
    audible = ld > AUDIBLE_DB
    voiced = audible & (per > VOICED)
    n = len(ld)
    # silence: pauses, at the recording's floor (noise included) and well below the playing
    loud_p95 = float(np.percentile(ld[audible], 95)) if audible.any() else AUDIBLE_DB
    floor = float(np.percentile(ld, 2))
    silent = (ld <= AUDIBLE_DB) | ((ld < floor + PAUSE_ABOVE_FLOOR_DB) & (ld < loud_p95 - PAUSE_BELOW_PLAYING_DB))
    out = {
        "minutes": round(n / frame_rate / 60, 2),
        "voiced_minutes": round(int(voiced.sum()) / frame_rate / 60, 2),
        "voiced_seconds": round(int(voiced.sum()) / frame_rate, 1),
        "voiced_share": round(float(voiced.mean()), 3) if n else 0.0,
        "silence_share": round(float(silent.mean()), 3) if n else 0.0,
    }
    if voiced.any():
        hz = np.percentile(f0[voiced], PERCENTILES)
        out["f0_hz"] = {f"p{p}": round(float(v), 1) for p, v in zip(PERCENTILES, hz)}
        out["f0_notes"] = {f"p{p}": note_name(v) for p, v in zip(PERCENTILES, hz)}
    if audible.any():
        db = np.percentile(ld[audible], PERCENTILES)
        out["loudness_db"] = {f"p{p}": round(float(v), 1) for p, v in zip(PERCENTILES, db)}
        out["quietest_db"] = round(float(np.percentile(ld, 2)), 1)
        loud = audible & (ld > np.percentile(ld[audible], 50))
        out["loud_without_pitch_share"] = round(float(np.mean(per[loud] < 0.5)), 3) if loud.any() else 0.0
    return out


def decay_seconds(segments: list[dict], frame_rate: float) -> float | None:
    """Median time the loudness takes to fall 30 dB once a loud sound stops (a fall to the pauses'
    level counts pro rata); None when fewer than 3 endings are followed by a pause. Dry notes
    fall that far in a tenth of a second or so; reverb stretches it."""
    times = []
    limit = int(1.5 * frame_rate)
    for seg in segments:
        ld = np.convolve(seg["loudness_db"], np.ones(3) / 3, "same")
        audible = ld > AUDIBLE_DB
        if audible.sum() < frame_rate:
            continue
        high = float(np.percentile(ld[audible], 75)) - 6
        floor = float(np.percentile(ld, 2))
        above = ld >= high
        for i in np.flatnonzero(above[:-1] & ~above[1:]):
            target = max(ld[i] - 30, floor + 6)
            if ld[i] - target < 15:
                continue
            tail = ld[i + 1 : i + 1 + limit]
            back, hit = np.flatnonzero(tail >= high), np.flatnonzero(tail <= target)
            if len(hit) and (not len(back) or hit[0] < back[0]):
                times.append((hit[0] + 1) / frame_rate * 30 / (ld[i] - target))
    return float(np.median(times)) if len(times) >= 3 else None


def warnings_for(stats: dict, decay_s: float | None) -> list[str]:
    """Warnings in a musician's words."""
    out = []
    if stats.get("minutes", 0) == 0:
        return out
    share = stats.get("loud_without_pitch_share", 0.0)
    if share > POLYPHONY_SHARE:
        out.append(
            f"polyphony suspected: {share:.0%} of the loud passages have no single clear pitch (chords, "
            f"several instruments, or heavy noise). The voice learns one note at a time: record one line."
        )
    if stats.get("silence_share", 0.0) < SILENCE_SHARE_MIN:
        out.append(
            f"too little silence: {stats.get('silence_share', 0):.0%} of the recording is quiet (aim for 10-20 %). "
            f"A voice that never heard silence hisses when it should be quiet: leave pauses between phrases."
        )
    quiet, loud = stats.get("quietest_db"), stats.get("loudness_db", {}).get("p95")
    paused = stats.get("silence_share", 0.0) >= SILENCE_SHARE_MIN
    if paused and quiet is not None and loud is not None and quiet > NOISE_FLOOR_DB and loud - quiet < NOISE_RANGE_DB:
        out.append(
            f"background noise suspected: the pauses are at {quiet:.0f} dB, only {loud - quiet:.0f} dB "
            f"below the playing. Record somewhere quieter, or closer to the instrument."
        )
    if decay_s is not None and decay_s > REVERB_DECAY_S:
        out.append(
            f"reverb (or long ringing notes) suspected: the sound takes {decay_s:.1f} s to fall 30 dB after it "
            f"stops. Record dry: close to the instrument, in a damped room, without effects."
        )
    return out


def summarize(train: list[dict], held_out: list[dict], frame_rate: float) -> dict:
    """The summary stored in dataset.json (``summary``) and printed by ``pimodule data prepare``."""
    stats = {"train": split_stats(train, frame_rate), "held_out": split_stats(held_out, frame_rate)}
    every = split_stats(train + held_out, frame_rate)
    decay = decay_seconds(train + held_out, frame_rate)
    return {
        **stats,
        "all": every,
        "decay_30db_s": None if decay is None else round(decay, 2),
        "warnings": warnings_for(every, decay),
    }


def shortfall(summary: dict, min_voiced_minutes: float, min_held_out_voiced_s: float) -> str | None:
    """Why the data is too little to train a voice on, with the numbers to reach; None if enough."""
    problems = []
    have = summary["train"].get("voiced_minutes", 0.0)
    if have < min_voiced_minutes:
        problems.append(
            f"only {duration(have)} of pitched (voiced) audio to train on; a voice needs at least "
            f"{min_voiced_minutes:.0f} min: record about {max(min_voiced_minutes - have, 0.1) * 1.4:.0f} more "
            f"minutes of playing (with pauses)"
        )
    held = summary["held_out"].get("voiced_seconds", 0.0)
    if held < min_held_out_voiced_s:
        problems.append(
            f"the held-out part has {held:.0f} s of pitched audio, at least {min_held_out_voiced_s:.0f} s are "
            f"needed to score the voice (record more, or raise --held-out)"
        )
    return "; ".join(problems) or None


def duration(minutes: float) -> str:
    """0.4 -> '24 s', 5.13 -> '5.1 min'."""
    return f"{minutes * 60:.0f} s" if minutes < 1 else f"{minutes:.1f} min"


def _range(stats: dict, key: str, unit: str) -> str:
    r = stats.get(key)
    return f"{r['p5']:.0f} to {r['p95']:.0f} {unit} (median {r['p50']:.0f})" if r else "none"


def format_summary(info: dict) -> list[str]:
    """Lines for the terminal."""
    s = info["summary"]
    a = s["all"]
    lines = [
        f"kept {duration(s['train']['minutes'])} to train on, {duration(s['held_out']['minutes'])} held out "
        f"({info['splits']['train']['n_examples']} + {info['splits']['held_out']['n_examples']} examples "
        f"of {info['example_seconds']:g} s)",
        f"pitched: {a.get('voiced_share', 0):.0%} of the time ({duration(s['train']['voiced_minutes'])} to train "
        f"on); silence: {a.get('silence_share', 0):.0%}",
    ]
    if "f0_hz" in a:
        n = a["f0_notes"]
        lines.append(
            f"pitch range: {n['p5']} to {n['p95']} = {_range(a, 'f0_hz', 'Hz')} (5-95 % of the pitched frames)"
        )
    if "loudness_db" in a:
        lines.append(f"loudness range: {_range(a, 'loudness_db', 'dB')} (A-weighted, 5-95 %)")
    lines += [f"warning: {w}" for w in s["warnings"]]
    return lines
