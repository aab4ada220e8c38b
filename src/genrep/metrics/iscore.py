"""Inception Score (IS, Salimans et al. 2016) of class predictions p(y|x) on generated samples:

    IS = exp( E_x KL(p(y|x) ‖ p(y)) ),   p(y) = E_x p(y|x),

computed on `splits` consecutive equal chunks of the N samples; returns the mean and the std
(ddof=0, as the original code) over chunks. IS lies in [1, K] for K classes: 1 when every
prediction is the same (e.g. uniform), K when predictions are confident and evenly spread.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from genrep.errors import InputError
from genrep.metrics.checks import as_features
from genrep.metrics.states import FeatureListMetric

PROB_TOLERANCE = 1e-6


def class_probabilities(logits_or_probs) -> torch.Tensor:
    """p(y|x) (N×K, float64) from class logits, or from probabilities passed as they are.

    Rows that are all in [0, 1] and each sum to 1 (within 1e-6) are taken as probabilities;
    anything else as logits, mapped with a softmax."""
    x = as_features(logits_or_probs, name="logits_or_probs", min_rows=1)
    is_probs = bool(((x >= 0) & (x <= 1)).all()) and bool(((x.sum(1) - 1).abs() <= PROB_TOLERANCE).all())
    return x / x.sum(1, keepdim=True) if is_probs else torch.softmax(x, dim=1)


def inception_score(logits_or_probs, *, splits: int = 10) -> tuple[float, float]:
    """(mean, std) of the IS over `splits` chunks of N×K class logits (or probabilities, see
    `class_probabilities`) of generated samples; needs N ≥ splits ≥ 1."""
    p = class_probabilities(logits_or_probs)
    if not 1 <= splits <= len(p):
        raise InputError(f"inception_score needs 1 ≤ splits ≤ N = {len(p)}, got splits={splits}")
    n = len(p)
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(0, keepdim=True)
        kl = (torch.special.xlogy(part, part) - torch.special.xlogy(part, marginal)).sum(1)  # 0·log 0 = 0
        scores.append(float(kl.mean().exp()))
    return float(np.mean(scores)), float(np.std(scores))


class InceptionScore(FeatureListMetric):
    """IS as a torchmetrics metric: `update(fake=...)` with N×K class logits (or probabilities), or
    with images when built with a `feature_extractor` (a classifier returning N×K logits);
    `compute()` returns `inception_score(all logits, splits=splits)` = (mean, std)."""

    higher_is_better = True
    sets = ("fake",)

    def __init__(self, *, splits: int = 10, feature_extractor: nn.Module | None = None, **kwargs):
        super().__init__(feature_extractor=feature_extractor, **kwargs)
        self.splits = splits

    def compute(self) -> tuple[float, float]:
        return inception_score(self.features("fake"), splits=self.splits)
