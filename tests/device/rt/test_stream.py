"""The callback's schedule: response from each block's deadline, late blocks, wake-up apart.

Callback start times are made up (a device's schedule with stalls, moves and drift) and fed to
the same compiled functions the callback runs, so each case's late count is exact."""

import numpy as np
import pytest

from pimodule.device.rt import setup, stream
from pimodule.device.rt import shared as L

RATE, N = 48000, 128
PERIOD_NS = N * 1_000_000_000 // RATE
WORK_NS = 50_000


@pytest.fixture
def block():
    b = setup.create_block(L.Sizes(device_rate_hz=RATE, n_responses=1 << 14))
    yield b
    b.close()


def play(block, starts_ns) -> tuple[np.ndarray, np.ndarray]:
    """Each block starts at its time and works WORK_NS; returns (responses, wake-ups) in ns of the
    blocks past the warm-up."""
    ih = block.ih
    for t in starts_ns:
        t = int(t)
        due = stream.due_ns(ih, t)
        ih[L.I_N_SAMPLES] += N  # what process() counts
        stream.after_block(ih, due, t, t + WORK_NS, N)
    w = int(ih[L.I_RESP_WRITE])
    return block.buf("I_RESP")[:w].copy(), block.buf("I_WAKE")[:w].copy()


def schedule(n, *, t0=10**12, ppm=0.0, jitter_ns=20_000, seed=0):
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    return t0 + (k * PERIOD_NS * (1 + ppm * 1e-6)).astype(np.int64) + rng.integers(0, jitter_ns, n)


WARM = 2 * L.ANCHOR_WINDOW


def test_a_punctual_device_has_no_late_block_and_its_work_is_the_difference(block):
    resp, wake = play(block, schedule(WARM + 3000, ppm=50.0))
    assert block.ih[L.I_N_LATE] == 0
    assert resp.shape[0] == 3000
    assert np.all(resp - wake == WORK_NS)
    drift_ns = 2 * L.ANCHOR_WINDOW * PERIOD_NS * 50e-6  # the anchor is at most two windows old
    assert wake.max() < 20_000 + drift_ns + 1_000


def test_a_stall_on_a_schedule_that_goes_on_is_one_late_block(block):
    starts = schedule(WARM + 2000)
    k = WARM + 500
    starts[k] += 3 * PERIOD_NS  # woken 8 ms late; the device catches up on its old schedule
    starts[k + 1 : k + 4] = starts[k] + WORK_NS * np.arange(1, 4)  # a burst of catch-up callbacks
    play(block, starts)
    assert block.ih[L.I_N_LATE] == block.ih[L.I_N_LATE_WAKE] >= 1
    assert block.ih[L.I_N_LATE] <= 3  # the stall and catch-up callbacks still more than a period late


def test_a_schedule_that_moves_after_a_stall_is_late_once_not_for_two_windows(block):
    starts = schedule(WARM + 3000)
    k = WARM + 700
    starts[k:] += 5_400_000  # the device restarted 5.4 ms later (an xrun) and plays on from there
    resp, wake = play(block, starts)
    assert block.ih[L.I_N_LATE] == 1 and block.ih[L.I_N_LATE_WAKE] == 1
    assert np.percentile(resp, 99) < PERIOD_NS / 10


def test_late_work_is_late_but_not_at_wake_up(block):
    ih = block.ih
    starts = schedule(WARM + 100)
    play(block, starts[:-1])
    t = int(starts[-1])
    due = stream.due_ns(ih, t)
    ih[L.I_N_SAMPLES] += N
    stream.after_block(ih, due, t, t + 2 * PERIOD_NS, N)
    assert ih[L.I_N_LATE] == 1 and ih[L.I_N_LATE_WAKE] == 0
