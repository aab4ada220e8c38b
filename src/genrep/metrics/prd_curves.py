"""Precision and recall for distributions (PRD, Sajjadi et al. 2018), as METHODS.md §0 fixes it.

The union of real and generated features is clustered into 20 clusters; P (real) and Q (generated)
are the two sets' cluster histograms. For slopes λ = tan(θ), θ on `num_angles` points of
[1e-10, π/2 − 1e-10],

    α(λ) = Σ_ω min(λ P(ω), Q(ω))   (precision),   β(λ) = α(λ) / λ   (recall),

averaged over `num_runs` clusterings. The summary is the maximum F-score along the curve,
F_b = (1 + b²) α β / (b² α + β + 1e-10), with b = 8:

    precision = max F_{1/8},   recall = max F_8,   both in [0, 1]

(the thesis tables report them ×100). Arguments are keyword-only `real=` / `fake=`: the reference
code passed them swapped (and swapped its outputs back), which this API cannot reproduce.

Clustering (`clustering=`):
- "minibatch" (default): scikit-learn's `MiniBatchKMeans(n_clusters=20, n_init=10)` fitted on the
  union and its `labels_` split into the two histograms, the clustering of google/compare_gan's
  `prd_score.py`, which the authors copied (REFERENCE_CODE.md §0.3): the protocol that produced
  the published numbers. Each run gets a `random_state` drawn from the seeded torch generator;
  the features are clustered in float64, as there. Its cost depends little on the data (at most
  100 passes of mini-batches of 1,024 points, with early stopping).
- "lloyd": full-batch k-means, the algorithm of `KMeans(n_clusters=20, n_init=10)`: greedy
  k-means++ seedings (2 + ⌊ln k⌋ local trials) vectorised over the `n_init` seedings in torch, each
  refined by scikit-learn's Lloyd `KMeans(init=centres, n_init=1)` in float32, lowest inertia wins.
  Lloyd iterates to convergence, so its cost depends on the data: 2.3 s for 10k + 10k × 84 points
  of a 30-mode mixture, 31.6 s (the audit of issue 14) for 10k + 10k × 84 shifted unimodal
  Gaussians, which have no cluster structure to converge to.
scikit-learn runs on one OpenMP thread: its and torch's OpenMP runtimes spin against each other on
shared cores (a 4,000-point PRD took 6–37 s with 2 threads on a loaded 2-core machine, 0.26 s with 1).
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import numpy as np
import sklearn
import torch
from sklearn.cluster import KMeans, MiniBatchKMeans
from threadpoolctl import threadpool_limits
from torch import nn

from genrep.errors import InputError
from genrep.metrics.states import FeatureListMetric, feature_pair

ANGLE_EPS = 1e-10
F_BETA_EPS = 1e-10
N_INIT = 10
CLUSTERINGS = ("minibatch", "lloyd")


def check_clustering(clustering: str) -> str:
    if clustering not in CLUSTERINGS:
        raise InputError(f"prd clustering must be one of {', '.join(map(repr, CLUSTERINGS))}; got {clustering!r}")
    return clustering


def kmeans_plusplus(x: torch.Tensor, k: int, n_init: int, generator: torch.Generator) -> torch.Tensor:
    """`n_init` independent greedy k-means++ seedings of the rows of x (N×D): centres n_init×k×D.

    Each new centre is the best (lowest potential Σ min-distance²) of 2 + ⌊ln k⌋ candidates drawn
    with probability ∝ the current squared distance to the nearest centre."""
    n = len(x)
    trials = 2 + int(math.log(k))
    sq_norms = (x * x).sum(1)

    def sq_dists(ids: torch.Tensor) -> torch.Tensor:  # ids (...,) -> (..., N)
        flat = ids.reshape(-1)
        d = sq_norms[flat, None] + sq_norms[None] - 2.0 * x[flat] @ x.T
        return d.clamp_min_(0).view(*ids.shape, n)

    rows = torch.arange(n_init)
    ids = torch.empty(n_init, k, dtype=torch.long)
    ids[:, 0] = torch.randint(n, (n_init,), generator=generator)
    closest = sq_dists(ids[:, 0])  # n_init × N
    for c in range(1, k):
        cumulative = closest.double().cumsum(1)
        draws = torch.rand(n_init, trials, generator=generator, dtype=torch.float64) * cumulative[:, -1:]
        candidates = torch.searchsorted(cumulative, draws).clamp_max_(n - 1)  # n_init × trials
        with_candidate = torch.minimum(sq_dists(candidates), closest[:, None])  # n_init × trials × N
        best = with_candidate.double().sum(2).argmin(1)
        closest = with_candidate[rows, best]
        ids[:, c] = candidates[rows, best]
    return x[ids]


def lloyd_labels(x: torch.Tensor, k: int, generator: torch.Generator, n_init: int = N_INIT) -> np.ndarray:
    """k-means labels (N,) of the rows of x (in float32): best inertia over `n_init` k-means++
    seedings (torch, all threads) + Lloyd (scikit-learn, one OpenMP thread)."""
    x32 = x.to(torch.float32)
    data = x32.numpy()
    best = None
    with threadpool_limits(limits=1, user_api="openmp"):
        for centres in kmeans_plusplus(x32, k, n_init, generator).numpy():
            fit = KMeans(n_clusters=k, init=centres, n_init=1).fit(data)
            if best is None or fit.inertia_ < best.inertia_:
                best = fit
    return best.labels_


def minibatch_labels(x: torch.Tensor, k: int, generator: torch.Generator, n_init: int = N_INIT) -> np.ndarray:
    """Labels (N,) of `MiniBatchKMeans(n_clusters=k, n_init=n_init)` fitted on the rows of x, seeded
    with a `random_state` drawn from `generator`. In float64, as compare_gan: float32 is no faster
    (slower at D = 84: scikit-learn's k-means++ computes float32 distances upcast to float64).
    Call it under `threadpool_limits(limits=1, user_api="openmp")`, as `prd_curve` does."""
    random_state = int(torch.randint(2**31 - 1, (), generator=generator))
    data = x.to(torch.float64).numpy()
    return MiniBatchKMeans(n_clusters=k, n_init=n_init, random_state=random_state).fit(data).labels_


def cluster_labels(x: torch.Tensor, k: int, generator: torch.Generator, n_init: int = N_INIT, *,
                   clustering: str = "minibatch") -> np.ndarray:
    """Cluster labels (N,) in [0, k) of the rows of x with `clustering` ("minibatch" | "lloyd"); for
    "minibatch" call it under `threadpool_limits(limits=1, user_api="openmp")`, as `prd_curve` does."""
    labels = {"minibatch": minibatch_labels, "lloyd": lloyd_labels}[check_clustering(clustering)]
    return labels(x, k, generator, n_init)


def prd_curve(*, real, fake, num_clusters: int = 20, num_angles: int = 1001, num_runs: int = 10,
              enforce_balance: bool = True, seed: int = 0,
              clustering: str = "minibatch") -> tuple[np.ndarray, np.ndarray]:
    """The PRD curve (α(λ), β(λ)) of generated `fake` (M×D) against `real` (N×D) features: two
    float64 arrays of `num_angles` values in [0, 1], averaged over `num_runs` clusterings of the
    union (`clustering`: "minibatch", the published protocol, or "lloyd"; see the module docstring).

    With enforce_balance, real is subsampled without replacement to M rows (needs N ≥ M).
    Deterministic given `seed`."""
    check_clustering(clustering)
    real, fake = feature_pair(real, fake)
    if num_clusters < 1 or num_angles < 2 or num_runs < 1:
        raise InputError(f"prd needs num_clusters ≥ 1, num_angles ≥ 2, num_runs ≥ 1; "
                         f"got {num_clusters}, {num_angles}, {num_runs}")
    generator = torch.Generator().manual_seed(seed)
    if enforce_balance:
        if len(real) < len(fake):
            raise InputError(f"prd with enforce_balance needs at least as many real as fake samples, "
                             f"got {len(real)} real and {len(fake)} fake")
        real = real[torch.randperm(len(real), generator=generator)[:len(fake)]]
    n_real = len(real)
    if n_real + len(fake) < num_clusters:
        raise InputError(f"prd needs at least num_clusters={num_clusters} samples in total, got {n_real + len(fake)}")
    dtype = torch.float64 if clustering == "minibatch" else torch.float32  # what each clustering works in
    data = torch.empty(n_real + len(fake), real.shape[1], dtype=dtype)  # the union [real; fake], one copy
    data[:n_real], data[n_real:] = real, fake
    slopes = np.tan(np.linspace(ANGLE_EPS, math.pi / 2 - ANGLE_EPS, num_angles))[:, None]  # num_angles × 1
    precision = np.zeros(num_angles)
    # MiniBatchKMeans: one OpenMP limit for all runs (each costs ~7 ms; Lloyd sets its own around
    # scikit-learn only, its seeding is torch); the features were checked finite by feature_pair
    limit = threadpool_limits(limits=1, user_api="openmp") if clustering == "minibatch" else nullcontext()
    with limit, sklearn.config_context(assume_finite=True):
        for _ in range(num_runs):
            labels = cluster_labels(data, num_clusters, generator, clustering=clustering)
            p_real = np.bincount(labels[:n_real], minlength=num_clusters) / n_real  # P: real histogram
            q_fake = np.bincount(labels[n_real:], minlength=num_clusters) / len(fake)  # Q: generated histogram
            precision += np.minimum(slopes * p_real, q_fake).sum(1) / num_runs
    recall = precision / slopes[:, 0]
    return np.clip(precision, 0.0, 1.0), np.clip(recall, 0.0, 1.0)


def max_f_beta(precision: np.ndarray, recall: np.ndarray, beta: float) -> float:
    """max over the curve of F_β = (1 + β²) α β / (β² α + β + 1e-10), in [0, 1]."""
    f = (1 + beta**2) * precision * recall / (beta**2 * precision + recall + F_BETA_EPS)
    return float(f.max())


def prd(*, real, fake, num_clusters: int = 20, num_angles: int = 1001, num_runs: int = 10,
        enforce_balance: bool = True, beta: float = 8, seed: int = 0,
        clustering: str = "minibatch") -> tuple[float, float]:
    """PRD (precision, recall) = (max F_{1/β}, max F_β) in [0, 1] of `fake` against `real`
    (N×D and M×D features) over `prd_curve(...)`; ×100 gives the thesis tables' numbers."""
    precision, recall = prd_curve(real=real, fake=fake, num_clusters=num_clusters, num_angles=num_angles,
                                  num_runs=num_runs, enforce_balance=enforce_balance, seed=seed,
                                  clustering=clustering)
    return max_f_beta(precision, recall, 1 / beta), max_f_beta(precision, recall, beta)


class PRD(FeatureListMetric):
    """PRD as a torchmetrics metric: keeps all features (float64, concatenated across processes);
    `compute()` returns `prd(real=..., fake=..., ...)` = (precision, recall) in [0, 1]."""

    higher_is_better = True

    def __init__(self, *, num_clusters: int = 20, num_angles: int = 1001, num_runs: int = 10,
                 enforce_balance: bool = True, beta: float = 8, seed: int = 0, clustering: str = "minibatch",
                 feature_extractor: nn.Module | None = None, **kwargs):
        super().__init__(feature_extractor=feature_extractor, **kwargs)
        self.options = dict(num_clusters=num_clusters, num_angles=num_angles, num_runs=num_runs,
                            enforce_balance=enforce_balance, beta=beta, seed=seed,
                            clustering=check_clustering(clustering))

    def compute(self) -> tuple[float, float]:
        return prd(real=self.features("real"), fake=self.features("fake"), **self.options)
