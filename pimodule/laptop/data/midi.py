"""Seeded monophonic MIDI phrases for rendering training data, and the General MIDI tables.

A phrase is a melodic random walk over an instrument's playable range, with legato (overlapping
notes), rests, dynamics (note velocity and CC11 expression curves) and vibrato (pitch bend, with
the bend range set by RPN 0). Everything is drawn from a ``numpy.random.Generator`` made from the
seed, so the same seed gives the same MIDI, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GM_PROGRAMS: tuple[str, ...] = (
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano",
    "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavinet",
    "Celesta", "Glockenspiel", "Music Box", "Vibraphone",
    "Marimba", "Xylophone", "Tubular Bells", "Dulcimer",
    "Drawbar Organ", "Percussive Organ", "Rock Organ", "Church Organ",
    "Reed Organ", "Accordion", "Harmonica", "Tango Accordion",
    "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)", "Electric Guitar (jazz)",
    "Electric Guitar (clean)", "Electric Guitar (muted)", "Overdriven Guitar",
    "Distortion Guitar", "Guitar Harmonics",
    "Acoustic Bass", "Electric Bass (finger)", "Electric Bass (pick)", "Fretless Bass",
    "Slap Bass 1", "Slap Bass 2", "Synth Bass 1", "Synth Bass 2",
    "Violin", "Viola", "Cello", "Contrabass",
    "Tremolo Strings", "Pizzicato Strings", "Orchestral Harp", "Timpani",
    "String Ensemble 1", "String Ensemble 2", "Synth Strings 1", "Synth Strings 2",
    "Choir Aahs", "Voice Oohs", "Synth Voice", "Orchestra Hit",
    "Trumpet", "Trombone", "Tuba", "Muted Trumpet",
    "French Horn", "Brass Section", "Synth Brass 1", "Synth Brass 2",
    "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax",
    "Oboe", "English Horn", "Bassoon", "Clarinet",
    "Piccolo", "Flute", "Recorder", "Pan Flute",
    "Blown Bottle", "Shakuhachi", "Whistle", "Ocarina",
    "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)",
    "Lead 5 (charang)", "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)",
    "Pad 1 (new age)", "Pad 2 (warm)", "Pad 3 (polysynth)", "Pad 4 (choir)",
    "Pad 5 (bowed)", "Pad 6 (metallic)", "Pad 7 (halo)", "Pad 8 (sweep)",
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)",
    "FX 5 (brightness)", "FX 6 (goblins)", "FX 7 (echoes)", "FX 8 (sci-fi)",
    "Sitar", "Banjo", "Shamisen", "Koto",
    "Kalimba", "Bagpipe", "Fiddle", "Shanai",
    "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock",
    "Taiko Drum", "Melodic Tom", "Synth Drum", "Reverse Cymbal",
    "Guitar Fret Noise", "Breath Noise", "Seashore", "Bird Tweet",
    "Telephone Ring", "Helicopter", "Applause", "Gunshot",
)

# Playable MIDI note range (lowest, highest) of common GM programs (0-based program numbers).
PLAYABLE_RANGES: dict[int, tuple[int, int]] = {
    40: (55, 100),  # violin
    41: (48, 88),  # viola
    42: (36, 76),  # cello
    43: (28, 67),  # contrabass
    56: (54, 86),  # trumpet
    57: (40, 77),  # trombone
    58: (28, 58),  # tuba
    60: (34, 77),  # french horn
    64: (56, 88),  # soprano sax
    65: (49, 81),  # alto sax
    66: (44, 76),  # tenor sax
    68: (58, 91),  # oboe
    70: (34, 75),  # bassoon
    71: (50, 91),  # clarinet
    72: (74, 108),  # piccolo
    73: (60, 96),  # flute
    74: (72, 98),  # recorder
    52: (48, 79),  # choir aahs
    53: (48, 79),  # voice oohs
    32: (28, 67),  # acoustic bass
    33: (28, 67),  # electric bass
    0: (36, 96),  # piano
}
DEFAULT_RANGE: tuple[int, int] = (48, 84)

# Phrase shape: (low, high) ranges of the random draws, one table.
PHRASE_RANGES: dict[str, tuple[float, float]] = {
    "start_s": (0.05, 0.3),  # first note onset
    "note_s": (0.18, 1.4),  # note length
    "rest_s": (0.1, 0.6),  # rest length
    "legato_overlap_s": (0.02, 0.08),  # overlap of legato notes
    "velocity": (35, 120),
    "expression": (40, 127),  # CC11 values of the expression curves
    "vibrato_rate_hz": (4.0, 7.0),
    "vibrato_depth_cents": (0.0, 45.0),
    "vibrato_delay_s": (0.05, 0.4),
    "leap_semitones": (3, 12),
}
VIBRATO_FADE_IN_S = 0.25  # vibrato depth ramps up over this after its delay
SWELL_EXPRESSION = 15.0  # CC11 arc added mid-note (crescendo then diminuendo)
STEPS = (-2, -1, -1, 0, 1, 1, 2)  # melodic steps (semitones) when not leaping


@dataclass(frozen=True)
class PhraseConfig:
    """How a phrase is drawn (probabilities and timing); ranges live in PHRASE_RANGES."""

    seconds: float = 8.0
    release_s: float = 0.6  # silence kept at the end for the last note's release
    p_rest: float = 0.15
    p_legato: float = 0.45
    p_leap: float = 0.15  # probability of a leap (up to an octave) instead of a step
    bend_range_semitones: int = 2
    control_rate_hz: float = 100.0  # pitch bend / CC11 update rate
    ticks_per_beat: int = 480
    tempo_us_per_beat: int = 500_000  # 120 bpm: 960 ticks per second


@dataclass(frozen=True)
class Note:
    start_s: float
    end_s: float
    pitch: int
    velocity: int


def program_number(program: int | str) -> int:
    """A GM program (0-based) from a number, a numeric string or a name (case-insensitive).

    Names match the GM name exactly or its first word if that is unambiguous ("violin", "flute",
    "trumpet"; "guitar" is ambiguous).
    """
    if isinstance(program, int) or (isinstance(program, str) and program.strip().isdigit()):
        num = int(program)
        if not 0 <= num < 128:
            raise ValueError(f"GM program numbers are 0..127, got {num}")
        return num
    key = _norm(str(program))
    names = [_norm(n) for n in GM_PROGRAMS]
    if key in names:
        return names.index(key)
    hits = [i for i, n in enumerate(names) if n.split(" ")[0] == key or n.startswith(key)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        options = ", ".join(GM_PROGRAMS[i] for i in hits)
        raise ValueError(f"GM program {program!r} is ambiguous: {options}")
    raise ValueError(f"unknown GM program {program!r} (give 0..127 or a GM name like 'violin')")


def program_slug(program: int) -> str:
    """A file-system friendly name of a GM program, e.g. 40 -> 'violin'."""
    out = "".join(c if c.isalnum() else "_" for c in GM_PROGRAMS[program].lower())
    return "_".join(p for p in out.split("_") if p)


def playable_range(program: int) -> tuple[int, int]:
    return PLAYABLE_RANGES.get(program, DEFAULT_RANGE)


def _norm(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def _draw(rng: np.random.Generator, key: str) -> float:
    lo, hi = PHRASE_RANGES[key]
    return float(rng.uniform(lo, hi))


def draw_notes(rng: np.random.Generator, note_range: tuple[int, int],
               config: PhraseConfig = PhraseConfig()) -> list[Note]:
    """A monophonic melodic line (possibly overlapping for legato) within ``note_range``."""
    lo, hi = note_range
    end_limit = config.seconds - config.release_s
    # start somewhere in the range; wander over all of it
    pitch = int(rng.integers(lo, hi + 1))
    notes: list[Note] = []
    t = _draw(rng, "start_s")
    while True:
        dur = _draw(rng, "note_s")
        if t + dur > end_limit:
            dur = end_limit - t
            if dur < PHRASE_RANGES["note_s"][0]:
                break
        vel = int(round(_draw(rng, "velocity")))
        end = t + dur
        legato = rng.random() < config.p_legato
        rest = (not legato) and rng.random() < config.p_rest
        overlap = _draw(rng, "legato_overlap_s") if legato else 0.0
        notes.append(Note(t, min(end + overlap, end_limit), pitch, vel))
        t = end + (_draw(rng, "rest_s") if rest else (0.0 if legato else 0.03))
        if rng.random() < config.p_leap:
            lo_leap, hi_leap = PHRASE_RANGES["leap_semitones"]
            step = int(rng.integers(lo_leap, hi_leap + 1)) * int(rng.choice([-1, 1]))
        else:
            step = int(rng.choice(STEPS))
        pitch += step
        if pitch < lo or pitch > hi:  # reflect at the range's edges
            pitch = lo + (lo - pitch) if pitch < lo else hi - (pitch - hi)
            pitch = int(np.clip(pitch, lo, hi))
    return notes


def _curves(rng: np.random.Generator, notes: list[Note],
            config: PhraseConfig) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    """(time_s, value) events of pitch bend (vibrato, in bend units) and CC11 (expression)."""
    dt = 1.0 / config.control_rate_hz
    bends: list[tuple[float, int]] = []
    exprs: list[tuple[float, int]] = []
    for i, note in enumerate(notes):
        nxt = notes[i + 1].start_s if i + 1 < len(notes) else note.end_s
        seg_end = max(min(note.end_s, nxt), note.start_s + dt)
        rate = _draw(rng, "vibrato_rate_hz")
        depth = _draw(rng, "vibrato_depth_cents")
        delay = _draw(rng, "vibrato_delay_s")
        e0, e1 = _draw(rng, "expression"), _draw(rng, "expression")
        times = np.arange(note.start_s, seg_end, dt)
        rel = times - note.start_s
        ramp = np.clip((rel - delay) / VIBRATO_FADE_IN_S, 0.0, 1.0)
        cents = depth * ramp * np.sin(2 * np.pi * rate * rel)
        bend = np.round(cents / (100.0 * config.bend_range_semitones) * 8191).astype(int)
        frac = rel / max(seg_end - note.start_s, dt)
        swell = e0 + (e1 - e0) * frac + SWELL_EXPRESSION * np.sin(np.pi * frac)
        expr = np.clip(np.round(swell), 1, 127).astype(int)
        bends += [(float(a), int(b)) for a, b in zip(times, bend)]
        exprs += [(float(a), int(b)) for a, b in zip(times, expr)]
    return bends, exprs


def phrase_midi(seed: int, program: int, *, note_range: tuple[int, int] | None = None,
                config: PhraseConfig = PhraseConfig(), channel: int = 0):
    """A seeded phrase as (mido.MidiFile, notes). Time zero is the phrase start."""
    mid, notes = phrases_midi([seed], program, slot_s=config.seconds, note_range=note_range,
                              config=config, channel=channel)
    return mid, notes[0]


def _to_midi(phrases, program: int, config: PhraseConfig, channel: int):
    """One type-0 MidiFile holding phrases at given offsets (offset_s, notes, bends, exprs)."""
    import mido  # laptop-only dependency, imported when used

    ticks_per_s = config.ticks_per_beat * 1e6 / config.tempo_us_per_beat
    events: list[tuple[int, int, object]] = []  # (tick, order, message)

    def add(time_s: float, order: int, msg) -> None:
        events.append((int(round(time_s * ticks_per_s)), order, msg))

    cc = lambda control, value: mido.Message("control_change", channel=channel,  # noqa: E731
                                             control=control, value=value)
    for offset, notes, bends, exprs in phrases:
        setup = [cc(121, 0), cc(123, 0),  # reset controllers, all notes off
                 mido.Message("program_change", channel=channel, program=program),
                 cc(101, 0), cc(100, 0), cc(6, config.bend_range_semitones), cc(38, 0),  # RPN 0
                 cc(101, 127), cc(100, 127),  # RPN null
                 cc(7, 110), cc(11, 100),
                 mido.Message("pitchwheel", channel=channel, pitch=0)]
        for k, msg in enumerate(setup):
            add(offset, k, msg)
        for t, v in bends:
            add(offset + t, 20, mido.Message("pitchwheel", channel=channel, pitch=v))
        for t, v in exprs:
            add(offset + t, 21, cc(11, v))
        for n in notes:
            add(offset + n.start_s, 30, mido.Message("note_on", channel=channel, note=n.pitch,
                                                     velocity=n.velocity))
            add(offset + n.end_s, 10, mido.Message("note_off", channel=channel, note=n.pitch,
                                                   velocity=0))
    events.sort(key=lambda e: (e[0], e[1]))
    mid = mido.MidiFile(type=0, ticks_per_beat=config.ticks_per_beat)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=config.tempo_us_per_beat, time=0))
    last = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return mid


def phrases_midi(seeds: list[int], program: int, *, slot_s: float,
                 note_range: tuple[int, int] | None = None, config: PhraseConfig = PhraseConfig(),
                 channel: int = 0):
    """Several seeded phrases in one MidiFile, phrase k starting at ``k * slot_s`` seconds.

    Returns (MidiFile, [notes of each phrase, times relative to its own start]). Rendering one
    file instead of one per phrase loads the soundfont once.
    """
    if slot_s < config.seconds:
        raise ValueError(f"slot_s {slot_s} shorter than a phrase ({config.seconds} s)")
    parts, all_notes = [], []
    for k, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        notes = draw_notes(rng, note_range or playable_range(program), config)
        bends, exprs = _curves(rng, notes, config)
        parts.append((k * slot_s, notes, bends, exprs))
        all_notes.append(notes)
    return _to_midi(parts, program, config, channel), all_notes


def pitch_at(notes: list[Note], times_s: np.ndarray) -> np.ndarray:
    """The MIDI pitch sounding at each time (the latest note started), NaN where none sounds."""
    out = np.full(len(times_s), np.nan)
    for n in notes:  # later notes overwrite earlier ones (legato: the new note wins)
        out[(times_s >= n.start_s) & (times_s < n.end_s)] = n.pitch
    return out
