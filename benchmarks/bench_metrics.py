"""Distribution metrics speed on LeNet-sized features (issue 3).

Real and generated sets are 10,000 × 84 float64 features from a 30-mode Gaussian mixture (the
generated one uses 20 of the modes, slightly shifted). Times FID, PRD (20 clusters, k-means
n_init=10, 10 runs, 1001 angles) and improved P&R (k=3, float32 blocks) — the median of --repeats
calls each — and compares our FID with torchmetrics' FrechetInceptionDistance fed the same
features through a pass-through `feature` module (value, relative difference, time). With
--kmeans-check it also reruns PRD with scikit-learn's stock KMeans(n_init=10) and
MiniBatchKMeans(n_init=10) (the reference PRD code's choice, genrep's default since issue 14) in place
of genrep's clustering; benchmarks/bench_prd_vs_compare_gan.py is the side-by-side with the protocol.

    python benchmarks/bench_metrics.py [--n 10000] [--repeats 3] [--kmeans-check]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from sklearn.cluster import KMeans, MiniBatchKMeans
from threadpoolctl import threadpool_limits
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from genrep.metrics import prd_curves as prd_module
from genrep.metrics.frechet import fid
from genrep.metrics.improved_pr import improved_precision_recall
from genrep.metrics.prd_curves import prd

DIM, MODES = 84, 30


def features(n: int, modes: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """n rows of an equal mixture of the first `modes` of 30 fixed unit Gaussians in R^84."""
    centres = np.random.default_rng(0).normal(size=(MODES, DIM)) * 3.0
    rng = np.random.default_rng(seed)
    return centres[rng.integers(0, modes, n)] + rng.normal(size=(n, DIM)) + shift


class Passthrough(nn.Module):
    """torchmetrics' custom `feature` module for pre-computed N×84 features."""

    num_features = DIM

    def forward(self, x):
        return x


def timed(fn, repeats: int):
    """(last value, median seconds) of `repeats` calls of fn()."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return value, statistics.median(times)


def torchmetrics_fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    metric = FrechetInceptionDistance(feature=Passthrough())
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def stock_labels(cls):
    """A `cluster_labels` replacement running scikit-learn's `cls(n_clusters=k, n_init=10)`."""
    def labels(x, k, generator, n_init=prd_module.N_INIT, **_):  # `clustering=` is replaced, not used
        seed = int(torch.randint(2**31 - 1, (), generator=generator))
        with threadpool_limits(limits=1, user_api="openmp"):
            return cls(n_clusters=k, n_init=n_init, random_state=seed).fit(x.float().numpy()).labels_
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kmeans-check", action="store_true")
    args = parser.parse_args()
    real, fake = features(args.n, MODES, seed=1), features(args.n, 20, seed=2, shift=0.1)
    print(f"{args.n:,} × {DIM} real and fake features; torch {torch.__version__}, {torch.get_num_threads()} threads")

    rows = [
        ("FID", lambda: fid(real, fake)),
        ("PRD (10 runs × k-means n_init=10)", lambda: prd(real=real, fake=fake)),
        ("improved P&R (k=3, float32)", lambda: improved_precision_recall(real=real, fake=fake)),
    ]
    total = 0.0
    for name, fn in rows:
        value, seconds = timed(fn, args.repeats)
        total += seconds
        shown = f"{value:.6g}" if isinstance(value, float) else "precision %.4f, recall %.4f" % value
        print(f"{name:<38} {seconds:7.3f} s   {shown}")
    print(f"{'total':<38} {total:7.3f} s")

    real_t, fake_t = torch.from_numpy(real), torch.from_numpy(fake)
    ours, ours_s = timed(lambda: fid(real_t, fake_t), args.repeats)
    theirs, theirs_s = timed(lambda: torchmetrics_fid(real_t, fake_t), args.repeats)
    print(f"FID genrep {ours:.10g} ({ours_s:.3f} s) | torchmetrics {theirs:.10g} ({theirs_s:.3f} s) | "
          f"relative difference {abs(ours - theirs) / theirs:.2e} | time ratio torchmetrics/genrep "
          f"{theirs_s / ours_s:.2f}")

    if args.kmeans_check:
        original = prd_module.cluster_labels
        for cls in (KMeans, MiniBatchKMeans):
            prd_module.cluster_labels = stock_labels(cls)
            try:
                value, seconds = timed(lambda: prd(real=real, fake=fake), 1)
            finally:
                prd_module.cluster_labels = original
            print(f"PRD with stock {cls.__name__}(n_init=10): {seconds:.3f} s   "
                  f"precision {value[0]:.4f}, recall {value[1]:.4f}")


if __name__ == "__main__":
    main()
