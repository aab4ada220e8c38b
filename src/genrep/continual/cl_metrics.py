"""Continual-learning summary metrics of an accuracy matrix (pure numpy functions).

`R` is T×T: `R[i, j]` is the metric on task j after learning tasks 0..i (row = time, column =
evaluated task; entries with j > i are tasks not yet seen). `b` (T,) is the metric on every task
before any training (the "initial row"), needed only by forward transfer.

Sign convention: the functions are written for metrics where higher is better (accuracy). For a
metric where lower is better (FID), pass `higher_is_better=False`: forgetting and the transfers
are then computed on −R (and −b), so forgetting > 0 still means "got worse" (e.g. FID rose) and
transfer > 0 still means "helped" (e.g. FID fell). The averages keep the metric's own units.

With a single task (T = 1) there is nothing to forget or transfer: forgetting and both transfers
are NaN; the averages are R[0, 0].
"""

from __future__ import annotations

import numpy as np

from genrep.errors import InputError


def _matrix(R) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise InputError(f"an accuracy matrix must be square T×T with T ≥ 1, got shape {R.shape}")
    return R


def _signed(R: np.ndarray, higher_is_better: bool) -> np.ndarray:
    return R if higher_is_better else -R


def average_accuracy(R) -> float:
    """ACC = 1/T Σ_j R[T−1, j]: the mean over all tasks after learning the last one."""
    R = _matrix(R)
    return float(R[-1].mean())


def average_incremental_accuracy(R) -> float:
    """1/T Σ_i (1/(i+1) Σ_{j≤i} R[i, j]): the average accuracy over the tasks seen so far, averaged
    over time (Rebuffi et al., iCaRL, CVPR 2017)."""
    R = _matrix(R)
    return float(np.mean([R[i, : i + 1].mean() for i in range(len(R))]))


def forgetting(R, *, higher_is_better: bool = True) -> float:
    """Average forgetting (Chaudhry et al., Riemannian Walk, ECCV 2018):
    F = 1/(T−1) Σ_{j<T−1} max_{j≤l<T−1} R[l, j] − R[T−1, j].

    The maximum runs over the rows after task j was learned (l ≥ j), where Chaudhry et al. define
    a_{l,j}; entries of a task measured before it was learned are not "knowledge" to forget. NaN for
    T = 1. Lower is better; flipped sign for `higher_is_better=False` (module docstring).
    """
    R = _signed(_matrix(R), higher_is_better)
    T = len(R)
    if T == 1:
        return float("nan")
    return float(np.mean([R[j : T - 1, j].max() - R[T - 1, j] for j in range(T - 1)]))


def backward_transfer(R, *, higher_is_better: bool = True) -> float:
    """BWT = 1/(T−1) Σ_{j<T−1} R[T−1, j] − R[j, j] (Lopez-Paz & Ranzato, GEM, NeurIPS 2017): how
    learning later tasks changed the accuracy on each task since it was learned (negative:
    forgetting). NaN for T = 1; flipped sign for `higher_is_better=False`."""
    R = _signed(_matrix(R), higher_is_better)
    T = len(R)
    if T == 1:
        return float("nan")
    return float(np.mean(R[T - 1, : T - 1] - np.diag(R)[: T - 1]))


def forward_transfer(R, b, *, higher_is_better: bool = True) -> float:
    """FWT = 1/(T−1) Σ_{j≥1} R[j−1, j] − b[j] (Lopez-Paz & Ranzato, GEM, NeurIPS 2017): how much
    learning tasks 0..j−1 helps task j before it is seen, against the untrained learner `b`. NaN for
    T = 1; flipped sign for `higher_is_better=False`."""
    R = _signed(_matrix(R), higher_is_better)
    b = _signed(np.asarray(b, dtype=np.float64), higher_is_better)
    T = len(R)
    if b.shape != (T,):
        raise InputError(f"the initial row must have shape ({T},) for a {T}×{T} matrix, got {b.shape}")
    if T == 1:
        return float("nan")
    return float(np.mean([R[j - 1, j] - b[j] for j in range(1, T)]))


def summarize(R, b, higher_is_better: bool = True) -> dict[str, float]:
    """All metrics of `R` (and initial row `b`) as a dict: average, average_incremental, forgetting,
    backward_transfer, forward_transfer (sign convention in the module docstring)."""
    return {
        "average": average_accuracy(R),
        "average_incremental": average_incremental_accuracy(R),
        "forgetting": forgetting(R, higher_is_better=higher_is_better),
        "backward_transfer": backward_transfer(R, higher_is_better=higher_is_better),
        "forward_transfer": forward_transfer(R, b, higher_is_better=higher_is_better),
    }
