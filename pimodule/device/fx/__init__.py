"""Real-time twins of the effects: numpy/scipy only (no torch anywhere in this package).

Each twin processes ``(channels, n)`` blocks in place with explicit state and takes the same
physical parameters as its torch original (:mod:`pimodule.laptop.fx.effects`).
"""
