"""Seeded MIDI phrases and the GM tables (no audio rendered here)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from pimodule.laptop.data.midi import (
    GM_PROGRAMS,
    PhraseConfig,
    phrase_midi,
    phrases_midi,
    pitch_at,
    playable_range,
    program_number,
    program_slug,
)


def _bytes(mid) -> bytes:
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def test_gm_table_has_128_unique_names() -> None:
    assert len(GM_PROGRAMS) == 128
    assert len({n.lower() for n in GM_PROGRAMS}) == 128


@pytest.mark.parametrize("given, number", [
    ("violin", 40), ("Violin", 40), ("VIOLIN", 40), ("flute", 73), ("cello", 42),
    ("trumpet", 56), ("acoustic grand piano", 0), ("french-horn", 60), (40, 40), ("73", 73),
    ("Pan Flute", 75), (0, 0), (127, 127),
])
def test_program_number_by_name_or_number(given, number: int) -> None:
    assert program_number(given) == number


@pytest.mark.parametrize("bad", ["guitar", "kazoo", 128, -1, "200"])
def test_program_number_errors(bad) -> None:
    with pytest.raises(ValueError):
        program_number(bad)


def test_slugs_and_ranges() -> None:
    assert program_slug(40) == "violin"
    assert program_slug(24) == "acoustic_guitar_nylon"
    assert playable_range(40) == (55, 100)
    assert playable_range(73) == (60, 96)
    lo, hi = playable_range(99)  # no entry: the generic default
    assert lo < hi


def test_same_seed_identical_midi_different_seeds_differ() -> None:
    a, _ = phrase_midi(7, 40)
    b, _ = phrase_midi(7, 40)
    c, _ = phrase_midi(8, 40)
    assert _bytes(a) == _bytes(b)
    assert _bytes(a) != _bytes(c)


@pytest.mark.parametrize("program", [40, 73, 42])
def test_phrase_content(program: int) -> None:
    cfg = PhraseConfig(seconds=8.0)
    lo, hi = playable_range(program)
    n_legato = n_rest = 0
    pitches = []
    for seed in range(12):
        mid, notes = phrase_midi(seed, program, config=cfg)
        assert notes, "a phrase has notes"
        assert all(lo <= n.pitch <= hi for n in notes)
        assert all(0 <= n.start_s < n.end_s <= cfg.seconds - cfg.release_s + 1e-9 for n in notes)
        assert all(1 <= n.velocity <= 127 for n in notes)
        n_legato += sum(b.start_s < a.end_s for a, b in zip(notes, notes[1:]))
        n_rest += sum(b.start_s - a.end_s > 0.09 for a, b in zip(notes, notes[1:]))
        pitches += [n.pitch for n in notes]
        msgs = [m for m in mid.tracks[0] if not m.is_meta]
        ccs = [(m.control, m.value) for m in msgs if m.type == "control_change"]
        # RPN 0 (pitch-bend range) set to the configured semitones
        i = ccs.index((101, 0))
        assert ccs[i + 1] == (100, 0) and ccs[i + 2] == (6, cfg.bend_range_semitones)
        assert any(c == 11 for c, _ in ccs[i + 3:])  # expression curve
        bends = [m.pitch for m in msgs if m.type == "pitchwheel"]
        assert max(abs(b) for b in bends) > 0  # vibrato
        max_bend = 8191 * 45.0 / (100 * cfg.bend_range_semitones)
        assert max(abs(b) for b in bends) <= max_bend + 1
        assert all(m.program == program for m in msgs if m.type == "program_change")
        assert abs(mid.length - cfg.seconds) < 1.5
    assert n_legato > 5 and n_rest > 2
    assert max(pitches) - min(pitches) >= 0.6 * (hi - lo)  # a wide range is covered


def test_phrases_midi_offsets_and_pitch_at() -> None:
    cfg = PhraseConfig(seconds=3.0)
    mid, notes = phrases_midi([1, 2], 73, slot_s=4.0, config=cfg)
    assert len(notes) == 2
    assert 5.0 < mid.length <= 4.0 + cfg.seconds - cfg.release_s + 0.01  # second phrase at 4 s
    t = np.array([notes[0][0].start_s + 1e-3, 100.0])
    p = pitch_at(notes[0], t)
    assert p[0] == notes[0][0].pitch and np.isnan(p[1])
    with pytest.raises(ValueError):
        phrases_midi([1], 73, slot_s=2.0, config=cfg)
