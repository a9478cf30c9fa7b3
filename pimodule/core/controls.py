"""What a musician controls, in one place: the voice's control table, the module's modes, its
output gain and its CV inputs.

Training (the controls enter the voice's graph as a vector in this order), the engine, OSC,
the pots and the Pd panels all read these tables; a model file carries its own copy of its
table (``pimodule.controls`` metadata), which is what the module plays by.
"""

from __future__ import annotations

from pimodule.core.params import ParamSpec, ParamTable

# The DDSP voice's user controls, physical units; the order is the graph's ``controls`` input.
DDSP_CONTROLS = ParamTable(
    [
        ParamSpec("pitch_shift_semitones", "st", -24.0, 24.0, 0.0, "lin", "transpose the played f0"),
        ParamSpec("loudness_offset_db", "dB", -20.0, 20.0, 0.0, "lin", "shift the loudness the decoder sees"),
        ParamSpec("harmonic_gain_db", "dB", -40.0, 12.0, 0.0, "lin", "level of the harmonic part"),
        ParamSpec("noise_gain_db", "dB", -40.0, 12.0, 0.0, "lin", "level of the filtered-noise part"),
    ]
)

MODES = ("synth", "transfer", "fx")
# The module's output gain (after the voice, before the limiter).
GAIN_SPEC = ParamSpec("gain_db", "dB", -60.0, 12.0, 0.0, "lin", "output gain")
# The Terminal Tedium's CV and pot inputs, as named in hardware/terminal_tedium.toml.
CV_NAMES = ("cv1", "cv2", "cv3", "pot1", "pot2", "pot3")
CV_VOLTS = (-10.0, 10.0)  # accepted range of a CV value set from outside (clamped)
