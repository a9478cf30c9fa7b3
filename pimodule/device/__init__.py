"""The module's real-time runtime (no torch): ``pimodule run``, ``bench`` and ``calibrate``.

- ``session``: one ONNX model file under onnxruntime, the runtime owning its state.
- ``resample``: streaming polyphase resampler (model rate <-> device rate).
- ``guard``: NaN guard, gain/mute, limiter, crossfade and fades, in place.
- ``buffers``: preallocated sample ring and control-frame queue.
- ``engine``: the voice engine (synth / transfer / fx modes, model swaps) the callback drives.
- ``models``: the model store and the loader thread (load, validate, warm, offer).
- ``audio``: the sounddevice callback, its statistics, the recorder, the simulated clock.
- ``control``: the OSC controller, pots -> controls, the simulated CV source.
- ``config``: the daemon's TOML config; ``daemon``: wiring and the command; ``jackdummy``: a
  private JACK server for demos.
"""
