"""PRD: genrep's `prd` against a faithful port of google/compare_gan's `prd_score.py` (issue 14, item 8).

The authors' PRD (`prd.py`) is a copy of compare_gan's `prd_score.py` (REFERENCE_CODE.md §0.3).
`reference_prd_curve` / `reference_max_f_beta_pair` below re-implement its steps in numpy +
scikit-learn, written for this benchmark:

1. (enforce_balance) refuse sets of different sizes; copy both to float64;
2. per run: stack [eval; ref], fit `MiniBatchKMeans(n_clusters=20, n_init=10)` (scikit-learn's other
   defaults, random_state=None, i.e. numpy's global RNG, seeded here before each call), split its
   `labels_` into the eval and the ref part, and turn each into a histogram with
   `np.histogram(bins=20, range=[0, 20], density=True)`;
3. slopes tan(θ) for 1001 angles θ evenly spaced in [1e-10, π/2 − 1e-10]; precision(λ) =
   Σ min(λ·ref, eval), recall(λ) = precision(λ) / λ; both curves averaged over the 10 runs;
4. the summary `(max F_8, max F_{1/8})`, F_β = (1 + β²) p r / (β² p + r + 1e-10), after checking that
   both curves lie in [0, 1].

Canonical call (eval = generated, ref = real): `recall, precision = reference_max_f_beta_pair(...)`.
The authors called it with eval = real, ref = generated *and* unpacked `precision, recall = ...`;
the two swaps cancel (column "authors' order" checks that on the same features). Column "paired":
the port's steps 2–4 applied to the labels of genrep's own clusterings (seed 0): the two then agree
to rounding, so the differences of the means are the clustering's seed-to-seed spread. genrep is
`prd(real=..., fake=..., seed=s)`; both get the same float64 features. Per setting and seed, genrep
and the canonical reference are timed one after the other in this process (who goes first
alternates with the seed); the table gives the mean seconds per call, the time ratio genrep /
reference, and precision / recall as mean ± std over the seeds (the authors' order as means).

    OMP_NUM_THREADS=1 python benchmarks/bench_prd_vs_compare_gan.py [--seeds 5] [--settings a,b,c,d]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import sklearn
import sklearn.cluster
import torch

from genrep.metrics import prd_curves
from genrep.metrics.prd_curves import prd

MODES = 30


# ---------------------------------------------------------------- the port of compare_gan's algorithm
def reference_histograms(eval_data: np.ndarray, ref_data: np.ndarray, num_clusters: int):
    """One clustering of the stacked sets; the two cluster histograms (densities over 0..k−1)."""
    stacked = np.vstack([eval_data, ref_data])
    labels = sklearn.cluster.MiniBatchKMeans(n_clusters=num_clusters, n_init=10).fit(stacked).labels_
    eval_hist = np.histogram(labels[:len(eval_data)], bins=num_clusters, range=[0, num_clusters], density=True)[0]
    ref_hist = np.histogram(labels[len(eval_data):], bins=num_clusters, range=[0, num_clusters], density=True)[0]
    return eval_hist, ref_hist


def reference_curve(eval_dist: np.ndarray, ref_dist: np.ndarray, num_angles: int = 1001, epsilon: float = 1e-10):
    """PRD curve of two discrete distributions on the angle grid."""
    if not 0 < epsilon < 0.1:
        raise ValueError(f"epsilon must be in (0, 0.1), got {epsilon}")
    if not 3 <= num_angles <= 1e6:
        raise ValueError(f"num_angles must be in [3, 1e6], got {num_angles}")
    slopes = np.tan(np.linspace(epsilon, np.pi / 2 - epsilon, num=num_angles))
    precision = np.minimum(ref_dist[None, :] * slopes[:, None], eval_dist[None, :]).sum(axis=1)
    return precision, precision / slopes


def reference_prd_curve(eval_data, ref_data, num_clusters: int = 20, num_angles: int = 1001, num_runs: int = 10,
                        enforce_balance: bool = True):
    """(precision curve, recall curve) of eval_data against ref_data, averaged over num_runs clusterings."""
    if enforce_balance and len(eval_data) != len(ref_data):
        raise ValueError(f"eval_data has {len(eval_data)} points and ref_data {len(ref_data)}; they must be equal")
    eval_data = np.array(eval_data, dtype=np.float64)
    ref_data = np.array(ref_data, dtype=np.float64)
    precisions, recalls = [], []
    for _ in range(num_runs):
        eval_dist, ref_dist = reference_histograms(eval_data, ref_data, num_clusters)
        precision, recall = reference_curve(eval_dist, ref_dist, num_angles)
        precisions.append(precision)
        recalls.append(recall)
    return np.mean(precisions, axis=0), np.mean(recalls, axis=0)


def reference_f_beta(precision: np.ndarray, recall: np.ndarray, beta: float, epsilon: float = 1e-10) -> np.ndarray:
    return (1 + beta**2) * (precision * recall) / (beta**2 * precision + recall + epsilon)


def reference_max_f_beta_pair(precision: np.ndarray, recall: np.ndarray, beta: float = 8):
    """(max F_β, max F_{1/β}) over the curve."""
    for name, values in (("precision", precision), ("recall", recall)):
        if not ((values >= 0).all() and (values <= 1).all()):
            raise ValueError(f"all {name} values must lie in [0, 1]")
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    return (float(np.max(reference_f_beta(precision, recall, beta))),
            float(np.max(reference_f_beta(precision, recall, 1 / beta))))


RAISED = {"canonical": 0, "authors": 0, "paired": 0}  # calls where compare_gan's range check raised (rounding)


def reference_summary(precision: np.ndarray, recall: np.ndarray, order: str):
    """`reference_max_f_beta_pair`, except where only float rounding puts a curve above 1 (a recall of
    1 + 2e-16 when the histogram densities sum to 1 + 2e-16 on the clusters the curve keeps):
    compare_gan raises ValueError there; the port counts it in RAISED and clips to 1, as genrep does."""
    try:
        return reference_max_f_beta_pair(precision, recall)
    except ValueError:
        if not 0 < max(precision.max(), recall.max()) - 1 <= 1e-12:
            raise
        RAISED[order] += 1
        return reference_max_f_beta_pair(np.minimum(precision, 1.0), np.minimum(recall, 1.0))


def reference_canonical(real: np.ndarray, fake: np.ndarray, seed: int) -> tuple[float, float]:
    """(precision, recall) with eval = generated, ref = real: recall, precision = max-F pair."""
    np.random.seed(seed)
    recall, precision = reference_summary(*reference_prd_curve(fake, real), "canonical")
    return precision, recall


def reference_authors_order(real: np.ndarray, fake: np.ndarray, seed: int) -> tuple[float, float]:
    """The authors' call: eval = real, ref = generated, and `precision, recall = max-F pair`."""
    np.random.seed(seed)
    precision, recall = reference_summary(*reference_prd_curve(real, fake), "authors")
    return precision, recall


def paired_difference(real: np.ndarray, fake: np.ndarray, seed: int) -> float:
    """max |Δ| over (precision, recall) between genrep's `prd` and the port's steps 2–4 run on the very
    clusterings genrep made (their labels recorded; genrep stacks [real; fake]): 0 up to rounding
    when everything after the clustering agrees."""
    recorded, original = [], prd_curves.MiniBatchKMeans

    def recording(**kwargs):
        model = original(**kwargs)
        fit = model.fit

        def recording_fit(x):
            fitted = fit(x)
            recorded.append(fitted.labels_.copy())
            return fitted

        model.fit = recording_fit
        return model

    prd_curves.MiniBatchKMeans = recording
    try:
        ours = prd(real=real, fake=fake, seed=seed)
    finally:
        prd_curves.MiniBatchKMeans = original
    m, k = len(fake), 20
    curves = []
    for labels in recorded:
        ref_hist = np.histogram(labels[:m], bins=k, range=[0, k], density=True)[0]
        eval_hist = np.histogram(labels[m:], bins=k, range=[0, k], density=True)[0]
        curves.append(reference_curve(eval_hist, ref_hist))
    precision_curve, recall_curve = np.mean([c[0] for c in curves], axis=0), np.mean([c[1] for c in curves], axis=0)
    recall, precision = reference_summary(precision_curve, recall_curve, "paired")
    return max(abs(ours[0] - precision), abs(ours[1] - recall))


# ---------------------------------------------------------------- the feature sets
def unimodal(n: int, dim: int, shift: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)) + shift


def multimodal(n: int, dim: int, modes: int, shift: float, seed: int) -> np.ndarray:
    """n rows of an equal mixture of the first `modes` of 30 fixed unit Gaussians in R^dim whose
    centres are N(0, 3² I) (the same centres for both sets of a setting), + `shift`."""
    centres = np.random.default_rng(1000 + dim).normal(size=(MODES, dim)) * 3.0
    rng = np.random.default_rng(seed)
    return centres[rng.integers(0, modes, n)] + rng.normal(size=(n, dim)) + shift


# The fake set is shifted by the same distance ‖shift‖ ≈ 2.75 in both dimensions: 0.3 per coordinate
# in R^84, 0.06 in R^2048 (0.3 there, ‖shift‖ = 13.6, lets k-means split real from fake completely:
# precision = recall = 0 for genrep and the reference alike, which compares nothing).
SETTINGS = {
    "a": ("unimodal N(0, I), fake shifted by 0.3", 10_000, 84,
          lambda n, d: (unimodal(n, d, 0.0, 1), unimodal(n, d, 0.3, 2))),
    "b": ("30-mode mixture, fake: 20 of the modes, shifted by 0.3", 10_000, 84,
          lambda n, d: (multimodal(n, d, MODES, 0.0, 1), multimodal(n, d, 20, 0.3, 2))),
    "c": ("unimodal N(0, I), fake shifted by 0.06", 5_000, 2048,
          lambda n, d: (unimodal(n, d, 0.0, 1), unimodal(n, d, 0.06, 2))),
    "d": ("30-mode mixture, fake: 20 of the modes, shifted by 0.06", 5_000, 2048,
          lambda n, d: (multimodal(n, d, MODES, 0.0, 1), multimodal(n, d, 20, 0.06, 2))),
}


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def mean_std(values) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--settings", default="a,b,c,d")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, scikit-learn {sklearn.__version__}, numpy {np.__version__}, "
          f"{torch.get_num_threads()} torch threads; seeds 0..{args.seeds - 1}", flush=True)
    rows, worst = [], 0.0
    for key in args.settings.split(","):
        label, n, dim, make = SETTINGS[key]
        real, fake = make(n, dim)
        ours, theirs, authors = [], [], []
        ours_s, theirs_s = [], []
        for seed in range(args.seeds):
            calls = [(ours, ours_s, lambda: prd(real=real, fake=fake, seed=seed)),
                     (theirs, theirs_s, lambda: reference_canonical(real, fake, seed))]
            for values, times, call in calls[::1 if seed % 2 == 0 else -1]:  # alternate who goes first
                value, seconds = timed(call)
                values.append(value)
                times.append(seconds)
            authors.append(reference_authors_order(real, fake, seed))
            if seed == 0:
                paired = paired_difference(real, fake, seed)
            print(f"  ({key}) seed {seed}: genrep P {ours[-1][0]:.4f} R {ours[-1][1]:.4f} ({ours_s[-1]:.2f} s) | "
                  f"reference P {theirs[-1][0]:.4f} R {theirs[-1][1]:.4f} ({theirs_s[-1]:.2f} s) | "
                  f"authors' order P {authors[-1][0]:.4f} R {authors[-1][1]:.4f}", flush=True)
        deltas = [abs(statistics.mean(v[i] for v in ours) - statistics.mean(v[i] for v in theirs)) for i in (0, 1)]
        worst = max(worst, *deltas)
        t_ours, t_theirs = statistics.mean(ours_s), statistics.mean(theirs_s)
        cells = [f"({key}) {label}", f"{n:,} + {n:,} × {dim}", f"{t_ours:.2f}", f"{t_theirs:.2f}",
                 f"{t_ours / t_theirs:.2f}"]
        for i in (0, 1):
            cells += [mean_std([v[i] for v in ours]), mean_std([v[i] for v in theirs]), f"{deltas[i]:.4f}"]
        cells.append(" / ".join(f"{statistics.mean(v[i] for v in authors):.4f}" for i in (0, 1)))
        cells.append(f"{paired:.1e}")
        rows.append("| " + " | ".join(cells) + " |")
    print()
    print("| setting | real + fake × D | genrep s/call | reference s/call | time ratio genrep/ref | "
          "precision genrep | precision reference | abs Δ | recall genrep | recall reference | abs Δ | "
          "authors' order P / R | paired abs Δ (seed 0) |")
    print("|---|---|---:|---:|---:|---|---|---:|---|---|---:|---|---:|")
    print("\n".join(rows))
    print(f"\nlargest |Δ| of the means: {worst:.4f} ({'within' if worst <= 0.01 else 'OUTSIDE'} 0.01)")
    print(f"calls where compare_gan's range check would have raised ValueError (a curve at 1 + rounding): "
          f"canonical order {RAISED['canonical']}, authors' order {RAISED['authors']} (of {args.seeds} per setting "
          f"each), paired {RAISED['paired']} (of 1 per setting)")


if __name__ == "__main__":
    main()
