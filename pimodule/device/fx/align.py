"""How far a processed recording lags its dry source, and the two cut to line up (GCC-PHAT).

A dry file and a recording of it through effects seldom start on the same sample: re-amping through
an audio interface adds its round-trip latency (a few to tens of milliseconds), a digital pedal or
module its own, and two files exported separately may be trimmed differently. Everything that
compares them frame by frame (the dry-conditioned network's paired features, the fit's STFT
distances, the module's check) reads such an offset as reverb or smearing: on the real-recording
benchmark a wet file 10 ms late turned estimates far closer than doing nothing into ones farther.

The lag is the peak of the cross-correlation with the phase transform (GCC-PHAT, Knapp & Carter
1976; here with the magnitude only partly divided out, ``BETA``): the spectra are whitened, so an EQ,
a compressor or a waveshaper on the processed side hardly moves the peak, and the direct sound
outweighs a reverb's tail. The lag is taken only when its peak stands out from the rest of the
correlation (``MIN_SALIENCE``); otherwise the files are used as they are and the caller says so.
Torch-free: the module runs it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

#: how much of the cross-spectrum's magnitude is divided out: 1 is the plain phase transform, which
#: gives bands with nothing in them (above a recording's bandwidth) as much say as the music
BETA = 0.8
#: the peak must be this many times the correlation's largest value away from it (outside
#: ``GUARD_MS``); a clean peak is tens of times, an unrelated pair of files about 1-2 times
MIN_SALIENCE = 3.0
GUARD_MS = 2.0


@dataclass(frozen=True)
class Lag:
    samples: int  # how many samples the processed signal is late (negative: early)
    salience: float  # the peak over the largest value away from it; below MIN_SALIENCE: not taken
    found: bool  # the peak stood out (samples is 0 when not)

    def ms(self, sample_rate: int) -> float:
        return 1000.0 * self.samples / sample_rate


def find_lag(dry: np.ndarray, wet: np.ndarray, sample_rate: int, max_lag_s: float | None = None) -> Lag:
    """How many samples ``wet`` (mono) lags ``dry`` (mono): any lag that leaves at least half of the
    shorter signal in common (an excerpt is found in a longer take), or within ``max_lag_s`` either
    way."""
    x = np.asarray(dry, np.float64).reshape(-1)
    y = np.asarray(wet, np.float64).reshape(-1)
    n = min(len(x), len(y))
    if n < 16 or not (np.any(x) and np.any(y)):
        return Lag(0, 0.0, False)
    n_fft = scipy.fft.next_fast_len(len(x) + len(y), real=True)
    cross = scipy.fft.rfft(y, n_fft) * np.conj(scipy.fft.rfft(x, n_fft))
    mag = np.abs(cross)
    cross = cross / (mag**BETA + 1e-12 * (mag.max() ** BETA + 1e-300))
    cc = scipy.fft.irfft(cross, n_fft)
    late, early = len(y) - n // 2, len(x) - n // 2  # the lags that keep half of the shorter one
    if max_lag_s is not None:
        reach = int(max_lag_s * sample_rate)
        late, early = min(late, reach), min(early, reach)
    lags = np.arange(-early, late + 1)
    values = np.abs(cc[lags % n_fft])
    best = int(np.argmax(values))
    guard = max(1, int(GUARD_MS * 1e-3 * sample_rate))
    away = np.abs(lags - lags[best]) > guard
    rest = float(values[away].max()) if away.any() else 0.0
    salience = float(values[best] / (rest + 1e-300))
    found = salience >= MIN_SALIENCE
    return Lag(int(lags[best]) if found else 0, salience, found)


def line_up(dry: np.ndarray, wet: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """``dry`` and ``wet`` cut to the part they share once ``wet`` is moved ``lag`` samples earlier
    (a positive lag: ``wet`` is late), both of the same length."""
    if lag >= 0:
        x, y = dry, wet[lag:]
    else:
        x, y = dry[-lag:], wet
    n = min(len(x), len(y))
    return x[:n], y[:n]
