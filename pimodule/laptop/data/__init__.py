"""Training data: rendered soundfont phrases or the user's own recordings, with cached features.

- :mod:`pimodule.laptop.data.midi` — seeded monophonic MIDI phrases and the General MIDI tables.
- :mod:`pimodule.laptop.data.soundfont` — fluidsynth renders of those phrases (``pimodule data render``).
- :mod:`pimodule.laptop.data.prepare` — recordings → fixed-length examples + f0/loudness
  (``pimodule data prepare``).
- :mod:`pimodule.laptop.data.dataset` — the on-disk format (``train.npz``, ``held_out.npz``,
  ``dataset.json``) and its loader.
"""
