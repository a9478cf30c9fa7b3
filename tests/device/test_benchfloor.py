"""The machine's wake-up floor beside the bench: cyclictest's histogram read right, and a real
cyclictest run on the audio core."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pimodule.device import benchfloor

HISTOGRAM = """# /dev/cpu_dma_latency set to 0us
000000 000000
000010 000050
000020 000040
000030 000008
003000 000001
# Total: 000000099
# Min Latencies: 00010
# Avg Latencies: 00017
# Max Latencies: 04000
# Histogram Overflows: 00001
# Histogram Overflow at cycle number:
# Thread 0: 01234
"""


def test_histogram_is_read_with_its_overflow():
    lat, cnt, overflow, max_us = benchfloor.parse_histogram(HISTOGRAM)
    assert lat.tolist() == [10, 20, 30, 3000] and cnt.tolist() == [50, 40, 8, 1]
    assert overflow == 1 and max_us == 4000


def test_summary_counts_late_wakeups_and_percentiles():
    row = benchfloor.summarise(*benchfloor.parse_histogram(HISTOGRAM), period_us=2666.67)
    assert row["wakeups"] == 100
    assert row["p50_us"] == 10 and row["p99_us"] == 3000
    assert row["late"] == 2  # the 3000 µs bin and the overflow
    assert row["over_5_percent"] == 2  # above 133 µs
    assert benchfloor.summarise(np.zeros(0, int), np.zeros(0, int), 0, 0, 1000.0) == {"wakeups": 0}


@pytest.mark.skipif(not benchfloor.available(), reason="needs cyclictest (apt install rt-tests)")
def test_cyclictest_runs_on_the_audio_core():
    core = frozenset({max(os.sched_getaffinity(0))})
    row = benchfloor.measure(2666.67, 1.0, core, "idle")
    assert row is not None and row["tool"] == "cyclictest"
    assert 300 <= row["wakeups"] <= 450  # 375 periods of 2.67 ms in a second
    assert 0 <= row["p50_us"] <= row["p99_us"] <= max(row["max_us"], row["p99_us"])
    with pytest.raises(ValueError, match="idle or under the check"):
        benchfloor.measure(2666.67, 1.0, core, "osc")
