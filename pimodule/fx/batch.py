"""Training/evaluation examples: dry excerpts processed on the fly by random chains."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pimodule.fx.chain import Chain, apply_chain, sample_chain
from pimodule.fx.sources import DryCorpus


@dataclass
class Batch:
    wet: torch.Tensor  # (batch, samples): what the estimator analyses (reference in style mode)
    other: torch.Tensor | None  # dry (dry mode) or the input to restyle (reference mode)
    source: torch.Tensor  # what the estimated chain is applied to
    target: torch.Tensor  # what that should sound like
    chain: Chain  # the ground truth


def from_dry(dry: np.ndarray | torch.Tensor, chain: Chain, sample_rate: int,
             conditioning: str) -> Batch:
    """``dry`` ``(batch, n_parts, samples)``; reference mode needs two parts (a, b)."""
    dry = torch.as_tensor(dry, dtype=torch.float32)
    with torch.no_grad():
        if conditioning == "reference":
            a, b = dry[:, 0], dry[:, 1]
            # rendered separately: the compressor links channels, the parts must stay independent
            ref = apply_chain(a[:, None], sample_rate, chain)[:, 0]
            tgt = apply_chain(b[:, None], sample_rate, chain)[:, 0]
            return Batch(ref, b, b, tgt, chain)
        x = dry[:, 0]
        y = apply_chain(x[:, None], sample_rate, chain)[:, 0]
    return Batch(y, x if conditioning == "dry" else None, x, y, chain)


def random_batch(corpus: DryCorpus, rng: np.random.Generator, generator: torch.Generator,
                 conditioning: str, batch: int, n_samples: int, p_active: float) -> Batch:
    parts = 2 if conditioning == "reference" else 1
    dry = corpus.excerpts(rng, batch, n_samples, parts)
    chain = sample_chain(batch, generator, p_active)
    return from_dry(dry, chain, corpus.sample_rate, conditioning)
