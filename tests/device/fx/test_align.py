"""Lining a processed recording up with its dry source: the lag of real recordings through
third-party effects found to the sample either way, unrelated signals not lined up, the cut exact."""

from __future__ import annotations

import numpy as np
import pytest

from pimodule.device.fx.align import MIN_SALIENCE, find_lag, line_up
from pimodule.laptop.fx import realbench

SR = realbench.SAMPLE_RATE


@pytest.fixture(scope="module")
def examples():
    recs = [r for r in realbench.RECORDINGS if r.name in ("alsa_voice", "apollo11")]
    try:
        return realbench.build(seed=3, draws=2, families=("pedalboard", "sox"), recordings=recs)
    except realbench.BenchmarkError as err:
        pytest.skip(str(err))


def _late(dry: np.ndarray, wet: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """The pair as recorded with ``wet`` ``lag`` samples late (negative: early, its start cut)."""
    if lag >= 0:
        return dry, np.concatenate([np.zeros(lag), wet[: len(wet) - lag]])
    return dry[: len(dry) + lag], wet[-lag:]


@pytest.mark.parametrize("lag", [0, 37, 480, 4000, -250])
def test_the_lag_of_real_recordings_through_third_party_effects_is_found(examples, lag):
    for ex in examples:
        base = find_lag(ex.dry, ex.wet, SR).samples  # the chain's own latency (pedalboard: 0 or 1)
        assert abs(base) <= 1, (ex.family, ex.recording, base)
        found = find_lag(*_late(ex.dry, ex.wet, lag), SR)
        assert found.found and found.salience >= MIN_SALIENCE
        assert abs(found.samples - lag - base) <= 1, (ex.family, ex.recording, sorted(ex.change_db), found)


def test_an_excerpt_is_found_in_a_longer_take(examples):
    speech = next(ex for ex in examples if ex.recording == "alsa_voice")
    radio = next(ex for ex in examples if ex.recording == "apollo11")
    take = np.concatenate([radio.dry, speech.dry, radio.dry[::-1]])  # the dry take, the wet one's part inside
    lag = find_lag(take, speech.wet, SR)
    assert lag.found and abs(lag.samples + len(radio.dry)) <= 1
    dry, wet = line_up(take, speech.wet, lag.samples)
    assert len(dry) == len(wet) >= len(speech.wet) - 1
    assert np.abs(dry - speech.dry[: len(dry)]).max() == 0 or np.abs(dry[1:] - speech.dry[: len(dry) - 1]).max() == 0
    assert find_lag(take, speech.wet, SR, max_lag_s=0.5).found is False  # beyond the reach asked for


def test_unrelated_or_silent_signals_are_not_lined_up(examples):
    rng = np.random.default_rng(0)
    speech = next(ex for ex in examples if ex.recording == "alsa_voice")
    radio = next(ex for ex in examples if ex.recording == "apollo11")
    for a, b in ((speech.dry, radio.wet), (speech.dry, rng.standard_normal(len(speech.dry)))):
        lag = find_lag(a, b, SR)
        assert not lag.found and lag.samples == 0 and lag.salience < MIN_SALIENCE
    assert find_lag(np.zeros(SR), speech.wet, SR).found is False
    assert find_lag(speech.dry[:8], speech.wet[:8], SR).samples == 0  # too short to say


@pytest.mark.parametrize("lag", [0, 5, -5])
def test_line_up_cuts_both_to_the_part_they_share(lag):
    x = np.random.default_rng(1).standard_normal(1000)
    dry, wet = _late(x, 0.5 * x, lag)
    a, b = line_up(dry, wet, lag)
    assert len(a) == len(b) == 1000 - (lag if lag >= 0 else -2 * lag)  # early: both files were cut
    np.testing.assert_array_equal(b, 0.5 * a)
    a, b = line_up(dry, wet, 0)
    assert len(a) == len(b) == min(len(dry), len(wet))
