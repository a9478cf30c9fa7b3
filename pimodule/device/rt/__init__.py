"""The real-time engine: the audio in a process of its own, the callback compiled.

- ``layout``: the one shared-memory block both processes map (three typed heaps and the table of
  where everything lives), single-writer slots and lock-free rings;
- ``lowlevel``: what compiled code needs from the machine (memory fences, raw pointers, the clock);
- ``dsp``: resampling, guard, fades and control frames as allocation-free compiled kernels;
- ``block``: one callback's work (synth, transfer, fx), compiled;
- ``stream``: the callback as a C function PortAudio calls directly (it never takes the GIL),
  and the same callback on a simulated clock;
- ``audio_main``: the audio process; ``engine``: the control process's handle on it.
"""
