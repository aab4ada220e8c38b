"""Kernel Inception Distance (KID, Bińkowski et al. 2018): the unbiased MMD² between real and
generated features under the polynomial kernel k(x, y) = (γ xᵀy + c0)^d, averaged over random
subsets:

    MMD²ᵤ = Σ_{i≠j} k(xᵢ,xⱼ)/(m(m−1)) + Σ_{i≠j} k(yᵢ,yⱼ)/(m(m−1)) − 2 Σ_{i,j} k(xᵢ,yⱼ)/m²

with m = subset size, x real and y generated rows drawn without replacement per subset.

Minimum: m = min(subset_size, N, M) must be at least MIN_SUBSET_SIZE = 50. The estimator is
unbiased for any m ≥ 2, but its spread over subsets grows like 1/m: with a handful of rows the
"KID" is noise around 0 whatever the two sets are, so it is refused instead of reported.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from genrep.errors import InputError
from genrep.metrics.states import FeatureListMetric, feature_pair

MIN_SUBSET_SIZE = 50


def _mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, *, degree: int, gamma: float, coef0: float) -> float:
    """Unbiased MMD² of m×D samples x and y under (γ xᵀy + c0)^degree (float64)."""
    m = len(x)
    k_xx = (gamma * x @ x.T + coef0) ** degree
    k_yy = (gamma * y @ y.T + coef0) ** degree
    k_xy = (gamma * x @ y.T + coef0) ** degree
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / m**2)


def kid(real, fake, *, subsets: int = 100, subset_size: int = 1000, degree: int = 3, gamma: float | None = None,
        coef0: float = 1.0, seed: int = 0) -> tuple[float, float]:
    """KID between N×D real and M×D generated features: (mean, std) of MMD²ᵤ over `subsets`
    subsets of m = min(subset_size, N, M) rows of each set (std over subsets, ddof=0).

    gamma defaults to 1/D. The mean is ≈ 0 for equal distributions (it can be slightly negative,
    the estimator is unbiased) and grows with their difference. Deterministic given `seed`.
    Raises InputError when m < MIN_SUBSET_SIZE (50): too few samples for a meaningful estimate."""
    real, fake = feature_pair(real, fake)
    if subsets < 1 or subset_size < MIN_SUBSET_SIZE or degree < 1:
        raise InputError(f"kid needs subsets ≥ 1, subset_size ≥ {MIN_SUBSET_SIZE}, degree ≥ 1; "
                         f"got {subsets}, {subset_size}, {degree}")
    m = min(subset_size, len(real), len(fake))
    if m < MIN_SUBSET_SIZE:
        raise InputError(f"kid needs at least {MIN_SUBSET_SIZE} real and {MIN_SUBSET_SIZE} generated samples "
                         f"(its subsets of min(subset_size, N, M) rows give noise, not a distance, below that);"
                         f" got {len(real)} real and {len(fake)} generated")
    gamma = 1.0 / real.shape[1] if gamma is None else gamma
    rng = np.random.default_rng(seed)
    values = np.array([
        _mmd2_unbiased(real[rng.choice(len(real), m, replace=False)], fake[rng.choice(len(fake), m, replace=False)],
                       degree=degree, gamma=gamma, coef0=coef0)
        for _ in range(subsets)
    ])
    return float(values.mean()), float(values.std())


class KID(FeatureListMetric):
    """KID as a torchmetrics metric: keeps all real and generated features (float64, concatenated
    across processes) and `compute()` returns `kid(real, fake, ...)` = (mean, std)."""

    higher_is_better = False

    def __init__(self, *, subsets: int = 100, subset_size: int = 1000, degree: int = 3, gamma: float | None = None,
                 coef0: float = 1.0, seed: int = 0, feature_extractor: nn.Module | None = None, **kwargs):
        super().__init__(feature_extractor=feature_extractor, **kwargs)
        self.options = dict(subsets=subsets, subset_size=subset_size, degree=degree, gamma=gamma, coef0=coef0,
                            seed=seed)

    def compute(self) -> tuple[float, float]:
        return kid(self.features("real"), self.features("fake"), **self.options)
