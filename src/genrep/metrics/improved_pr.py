"""Improved precision and recall (Kynkäänniemi et al. 2019) with k-nearest-neighbour manifolds.

Each sample's ball has radius r_k(x) = distance to its k-th nearest neighbour in its own set
(excluding itself). With Φr, Φf the real and generated features,

    precision = (1/M) Σ_{f∈Φf} 1[∃ r ∈ Φr: ‖f − r‖ ≤ r_k(r)]   (generated inside the real manifold)
    recall    = (1/N) Σ_{r∈Φr} 1[∃ f ∈ Φf: ‖r − f‖ ≤ r_k(f)]   (real inside the generated manifold)

both in [0, 1]. In high dimensions k-NN balls cover much less than the distribution: two samples
of the same 84-d standard Gaussian (2,000 each, k = 3) score precision 0.58 and recall 0.56, not 1,
so compare models with each other (and with a real-vs-real row), not with 1. Squared distances ‖a‖² + ‖b‖² − 2aᵀb are computed in row blocks (B×N at a time,
so 10k×10k never sits in memory) in `dtype` (float32 by default, as the reference GPU code; the
features are centred on their joint mean first, which keeps the float32 rounding small).
"""

from __future__ import annotations

import torch
from torch import nn

from genrep.errors import InputError
from genrep.metrics.states import FeatureListMetric, feature_pair


def _sq_dists(a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (len(a) × len(b)), clamped at 0; b_sq = ‖b‖² per row."""
    return torch.addmm(b_sq[None], a, b.T, alpha=-2.0).add_((a * a).sum(1, keepdim=True)).clamp_min_(0)


def knn_radii_sq(x: torch.Tensor, k: int, batch_size: int) -> torch.Tensor:
    """Squared distance of every row of x (N×D) to its k-th nearest other row (N,)."""
    x_sq = (x * x).sum(1)
    return torch.cat([
        _sq_dists(x[i:i + batch_size], x, x_sq).topk(k + 1, dim=1, largest=False).values[:, k]
        for i in range(0, len(x), batch_size)
    ])


def improved_precision_recall(*, real, fake, k: int = 3, batch_size: int = 2048,
                              dtype: torch.dtype = torch.float32) -> tuple[float, float]:
    """(precision, recall) in [0, 1] of `fake` (M×D) against `real` (N×D) features with k-NN balls
    (k ≥ 1, N and M > k); distances in `dtype`, `batch_size` rows at a time (memory ≈ batch_size·N)."""
    real, fake = feature_pair(real, fake)
    if k < 1 or min(len(real), len(fake)) <= k:
        raise InputError(f"improved precision/recall needs k ≥ 1 and more than k samples per set; "
                         f"got k={k}, {len(real)} real, {len(fake)} fake")
    centre = torch.cat([real, fake]).mean(0)
    real, fake = (real - centre).to(dtype), (fake - centre).to(dtype)
    radii_real = knn_radii_sq(real, k, batch_size)
    radii_fake = knn_radii_sq(fake, k, batch_size)
    real_sq = (real * real).sum(1)
    fake_in_real = 0
    real_in_fake = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    for i in range(0, len(fake), batch_size):
        d = _sq_dists(fake[i:i + batch_size], real, real_sq)  # B × N
        fake_in_real += int((d <= radii_real[None]).any(1).sum())
        real_in_fake |= (d <= radii_fake[i:i + batch_size, None]).any(0)
    return fake_in_real / len(fake), float(real_in_fake.double().mean())


class ImprovedPrecisionRecall(FeatureListMetric):
    """Improved P&R as a torchmetrics metric: keeps all features (float64, concatenated across
    processes); `compute()` returns `improved_precision_recall(...)` = (precision, recall)."""

    higher_is_better = True

    def __init__(self, *, k: int = 3, batch_size: int = 2048, dtype: torch.dtype = torch.float32,
                 feature_extractor: nn.Module | None = None, **kwargs):
        super().__init__(feature_extractor=feature_extractor, **kwargs)
        self.options = dict(k=k, batch_size=batch_size, dtype=dtype)

    def compute(self) -> tuple[float, float]:
        return improved_precision_recall(real=self.features("real"), fake=self.features("fake"), **self.options)
