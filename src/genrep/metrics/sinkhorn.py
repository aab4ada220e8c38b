"""Debiased Sinkhorn divergence between two feature clouds (the thesis' "Sinkhorn" metric, ch.4:
computed between LeNet features (84-d) of real and generated images; lower is better).

For uniform weights on real = {a_i} (N×D) and fake = {b_j} (M×D), cost c(a, b) = ½‖a − b‖²
(geomloss' p=2 convention: `cost_routines[2] = squared_distances / 2`; thesis Eq. 4.4) and
ε = blur^p = blur²,

    OT_ε(α, β) = min_π ⟨π, C⟩ + ε·KL(π ‖ α⊗β)        (solved in the log domain)
    S_ε(α, β) = OT_ε(α, β) − ½·OT_ε(α, α) − ½·OT_ε(β, β)   (debias=True, Eq. 4.4)

S_ε ≥ 0, S_ε(α, α) = 0, and S_ε → ½·W₂²(α, β) as blur → 0 (the squared 2-Wasserstein distance
halved, because of the ½ in the cost). geomloss anneals ε from the data diameter down to blur²
by factors scaling² (one Sinkhorn iteration per ε): scaling=0.95 means ~log(diameter/blur)/0.05
iterations, about 140 for LeNet features. That annealing stops slightly short of the fixed-ε
optimum: at scaling 0.95 the value is about 0.05 % below a scaling-0.999 solve on 1,000 × 84 clouds
(0.005 % at 0.99, at 5× the time; `benchmarks/bench_sinkhorn_metric_bias.py`), far below the
seed-to-seed spread of any table, so 0.95 stays the default.

Cost and limits (`backend="tensorized"`: full N×M, M×N, N×N, M×M cost matrices, float32)
    memory O((N + M)²): 4·(N+M)²·4 bytes for the matrices plus temporaries of the same order;
    time: 1,000 vs 1,000 84-d points take seconds, 5,000 vs 5,000 about a minute and a half on
    2 CPU cores (benchmarks/RESULTS.md). Recommended: RECOMMENDED_SAMPLES = 2,000 points per set
    (subsample both sets the same way every time you compare models). Above MAX_POINTS = 10,000
    points in either set an InputError asks you to subsample (or to use geomloss'
    `backend="online"` with pykeops, which genrep does not depend on).

Computation is in float32 on clouds centred by the mean of their union (the cost is translation
invariant; centring reduces the cancellation in ‖a‖² + ‖b‖² − 2⟨a, b⟩).
"""

from __future__ import annotations

import torch
from geomloss import SamplesLoss
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from genrep.errors import InputError
from genrep.metrics.checks import as_features, same_dim

RECOMMENDED_SAMPLES = 2_000
MAX_POINTS = 10_000


class SinkhornLoss(torch.nn.Module):
    """geomloss' `SamplesLoss("sinkhorn", ...)` (tensorized) that leaves the autograd mode as it found
    it: geomloss' Sinkhorn loop ends with `set_grad_enabled(True)`, which silently re-enables gradients
    inside a caller's `torch.no_grad()`. Under no_grad the result is detached."""

    def __init__(self, **options):
        super().__init__()
        self.loss = SamplesLoss("sinkhorn", backend="tensorized", **options)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        grad_enabled = torch.is_grad_enabled()
        try:
            value = self.loss(a, b)
        finally:
            torch.set_grad_enabled(grad_enabled)
        return value if grad_enabled else value.detach()


def sinkhorn_divergence(real, fake, *, blur: float = 0.05, scaling: float = 0.95, p: int = 2,
                        debias: bool = True) -> float:
    """S_ε(real, fake) (module docstring) between real (N×D) and fake (M×D) features (numpy or
    torch, any real dtype; N, M ≥ 2; N, M ≤ MAX_POINTS). blur, scaling, p, debias are geomloss'
    `SamplesLoss("sinkhorn", ...)` arguments (defaults: the thesis' reference code; p=2 → cost
    ½‖a−b‖², p=1 → ‖a−b‖). Returns a float ≥ 0 (for debias=True) in squared feature units."""
    real = as_features(real, name="real features", dtype=torch.float32)
    fake = as_features(fake, name="fake features", dtype=torch.float32)
    same_dim(real, fake)
    for name, x in (("real", real), ("fake", fake)):
        if len(x) > MAX_POINTS:
            raise InputError(
                f"{name} features have {len(x)} rows; the tensorized Sinkhorn needs O((N+M)²) memory and "
                f"accepts at most {MAX_POINTS:,} per set: subsample both sets (e.g. {RECOMMENDED_SAMPLES:,} "
                "rows each, torch.randperm(n)[:k])")
    if p not in (1, 2):
        raise InputError(f"p must be 1 or 2, got {p}")
    if not (blur > 0 and 0 < scaling < 1):
        raise InputError(f"need blur > 0 and 0 < scaling < 1, got blur={blur}, scaling={scaling}")
    centre = torch.cat([real, fake]).mean(0)
    loss = SinkhornLoss(p=p, blur=blur, scaling=scaling, debias=debias)
    with torch.no_grad():
        return float(loss(real - centre, fake - centre))


class SinkhornDivergence(Metric):
    """`sinkhorn_divergence` accumulated over batches: update(real=..., fake=...) with N×D
    features (either may be omitted; both sets grow independently), compute() → scalar float64
    tensor. States are float32 feature lists concatenated across processes."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, *, blur: float = 0.05, scaling: float = 0.95, p: int = 2, debias: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.options = dict(blur=blur, scaling=scaling, p=p, debias=debias)
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    def update(self, *, real=None, fake=None) -> None:
        if real is None and fake is None:
            raise InputError("update() needs real=, fake= or both")
        for name, x, store in (("real", real, self.real_features), ("fake", fake, self.fake_features)):
            if x is None:
                continue
            x = as_features(x, name=f"{name} features", min_rows=1, dtype=torch.float32)
            seen = (self.real_features or self.fake_features or [x])[0]
            if x.shape[1] != seen.shape[1]:
                raise InputError(f"{name} features have dimension {x.shape[1]}, earlier updates {seen.shape[1]}")
            store.append(x)

    def compute(self) -> torch.Tensor:
        if not self.real_features or not self.fake_features:
            raise InputError("SinkhornDivergence.compute() needs at least one update with real= and one with fake=")
        real, fake = dim_zero_cat(self.real_features), dim_zero_cat(self.fake_features)
        return torch.tensor(sinkhorn_divergence(real, fake, **self.options), dtype=torch.float64)
