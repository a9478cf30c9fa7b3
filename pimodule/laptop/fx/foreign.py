"""What every third-party effect family shares (:mod:`pimodule.laptop.fx.thirdparty` and the family
modules it dispatches to): the error for an implementation that is not installed, and the draws of
a parameter uniformly or log-uniformly between two bounds."""

from __future__ import annotations

import numpy as np


class MissingImplementation(RuntimeError):
    """A third-party implementation is not installed (the message names the package)."""


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
