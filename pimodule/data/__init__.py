"""Training data: rendered soundfont phrases or the user's own recordings, with cached features.

- :mod:`pimodule.data.midi` — seeded monophonic MIDI phrases and the General MIDI tables.
- :mod:`pimodule.data.render` — fluidsynth renders of those phrases (``pimodule data render``).
- :mod:`pimodule.data.prepare` — recordings → fixed-length examples + f0/loudness
  (``pimodule data prepare``).
- :mod:`pimodule.data.dataset` — the on-disk format (``train.npz``, ``held_out.npz``,
  ``dataset.json``) and its loader.
"""
