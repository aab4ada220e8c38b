"""Index splits of a data set into continual-learning tasks.

Every split is a pure function of its inputs (labels or energies, options, a seed) and returns one
int64 index tensor per task, sorted ascending, into the rows it was given. Randomness comes only
from `np.random.default_rng(seed)` (a seed is an int, or a sequence of ints used as numpy
`SeedSequence` entropy), never from global random state.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch

from genrep.errors import ConfigError, DataError

Seed = int | Sequence[int]


def _labels_array(labels) -> np.ndarray:
    array = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"labels must be a 1-D array of integers, got dtype {array.dtype} and shape {array.shape}")
    return array


def _index_tensor(index: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.sort(np.asarray(index, dtype=np.int64)))


def _check_n_tasks(n_tasks) -> int:
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, (int, np.integer)) or n_tasks < 1:
        raise ConfigError(f"n_tasks must be an integer >= 1, got {n_tasks!r}")
    return int(n_tasks)


def class_incremental_split(labels, groups: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """Task t = {i : labels[i] ∈ groups[t]}, e.g. groups ((0, 1), (2, 3), ..., (8, 9)) for split-MNIST.

    labels: int (N,). groups: non-empty, pairwise disjoint class lists, each class present in
    `labels`. Returns int64 sorted row indices per group.
    """
    groups = [list(group) for group in groups]
    if not groups or not all(groups):
        raise ConfigError("class groups must be a non-empty list of non-empty class lists, e.g. [[0, 1], [2, 3]]")
    flat = [c for group in groups for c in group]
    if any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in flat):
        raise ConfigError(f"class groups must hold integer class labels, got {groups}")
    labels = _labels_array(labels)
    repeated = sorted({int(c) for c in flat if flat.count(c) > 1})
    if repeated:
        raise ConfigError(f"class groups must be disjoint; classes {repeated} appear in more than one group")
    present = set(np.unique(labels).tolist())
    missing = sorted(int(c) for c in set(flat) - present)
    if missing:
        raise DataError(f"classes {missing} have no samples (present: {sorted(present)}); fix the class groups")
    return [_index_tensor(np.flatnonzero(np.isin(labels, group))) for group in groups]


@dataclasses.dataclass(frozen=True)
class DirichletSplit:
    """`dirichlet_split(..., return_proportions=True)`. classes: int64 (C,), the label of each matrix
    row; draw: float64 (C, K), rows q_c ~ Dir(α/K·1_K); proportions: float64 (C, K), p[c, t] = the
    fraction of class c's samples allocated to task t; indices: per task, int64 sorted rows."""

    indices: list[torch.Tensor]
    classes: torch.Tensor
    draw: torch.Tensor
    proportions: torch.Tensor


def _allocate(labels: np.ndarray, classes: np.ndarray, proportions: np.ndarray,
              rng: np.random.Generator) -> list[torch.Tensor]:
    n_tasks = proportions.shape[1]
    parts: list[list[np.ndarray]] = [[] for _ in range(n_tasks)]
    for c, label in enumerate(classes):
        rows = rng.permutation(np.flatnonzero(labels == label))
        takes = np.floor(len(rows) * proportions[c]).astype(np.int64)
        ends = np.minimum(np.cumsum(takes), len(rows))
        starts = np.concatenate([[0], ends[:-1]])
        for t in range(n_tasks):
            parts[t].append(rows[starts[t]:ends[t]])
    return [_index_tensor(np.concatenate(part)) for part in parts]


def allocate_by_proportions(labels, classes, proportions, *, seed: Seed) -> list[torch.Tensor]:
    """Sequential allocation of each class over tasks (the rule of `dirichlet_split`).

    For every class c = classes[r] (in order), shuffle its n_c rows (seeded), then task t = 0, 1, ...
    takes the next ⌊n_c·p[r, t]⌋ of them, fewer once they run out (Σ_t p[r, t] may exceed 1); rows
    left over go to no task. labels: int (N,); classes: int (C,); proportions: (C, K) >= 0.
    """
    labels = _labels_array(labels)
    classes = _labels_array(classes)
    proportions = np.asarray(proportions.cpu() if isinstance(proportions, torch.Tensor) else proportions,
                             dtype=np.float64)
    if proportions.ndim != 2 or len(proportions) != len(classes):
        raise DataError(f"proportions must be (C, K) with C = {len(classes)} classes, got {proportions.shape}")
    if not np.isfinite(proportions).all() or (proportions < 0).any():
        raise DataError("proportions must be finite and >= 0")
    return _allocate(labels, classes, proportions, np.random.default_rng(seed))


def dirichlet_split(labels, n_tasks: int, alpha: float, seed: Seed, *, equal_split: bool = True,
                    return_proportions: bool = False) -> list[torch.Tensor] | DirichletSplit:
    """Dirichlet(α) task split of Multiband VAE (thesis §9.4, METHODS.md §5), as the reference code
    `data_split` in KamilDeja/multiband_vae `continual_benchmark/dataloaders/datasetGen.py` does it.

    With K = n_tasks and C = the number of distinct labels:
      1. per class c draw q_c ~ Dir(α/K·1_K) over tasks (a C×K matrix `draw`);
      2. equal_split (reference default): rescale each task column to sum C/(K+2),
         p[c, t] = q[c, t]·C / ((K+2)·Σ_c' q[c', t]), so every task gets about N/(K+2) samples and
         about K/(K+2) of the data is used; without it p = q (rows sum to 1, all data used);
      3. allocate sequentially (`allocate_by_proportions`): shuffle each class, task t takes the next
         ⌊n_c·p[c, t]⌋ of its rows, truncated when the class runs out.
    Small α gives tasks dominated by one or two classes; large α near-uniform class mixes.

    Differences from the reference: numpy's seeded `Generator` instead of torch's global RNG (same
    order of draws: the Dirichlet matrix, then one permutation per class); C counts the labels
    present (the reference uses the data set's class count: the same when every class occurs); a
    task column with no mass at all (α so small that every draw underflows to 0) gets no samples,
    where the reference divides by zero.

    Returns the per-task int64 sorted indices, or with `return_proportions` a `DirichletSplit`.
    """
    n_tasks = _check_n_tasks(n_tasks)
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not (math.isfinite(alpha) and alpha > 0):
        raise ConfigError(f"alpha must be a finite number > 0, got {alpha!r}")
    labels = _labels_array(labels)
    if not len(labels):
        raise DataError("cannot split an empty set of labels")
    classes = np.unique(labels)
    rng = np.random.default_rng(seed)
    draw = rng.dirichlet(np.full(n_tasks, alpha / n_tasks), size=len(classes))
    proportions = draw
    if equal_split:
        column = draw.sum(0)
        scale = np.divide(len(classes) / (n_tasks + 2), column, out=np.zeros(n_tasks), where=column > 0)
        proportions = draw * scale
    indices = _allocate(labels, classes, proportions, rng)
    if not return_proportions:
        return indices
    return DirichletSplit(indices, torch.from_numpy(classes.astype(np.int64)), torch.from_numpy(draw),
                          torch.from_numpy(proportions))


def _energies_array(energies) -> np.ndarray:
    array = energies.detach().cpu().numpy() if isinstance(energies, torch.Tensor) else np.asarray(energies)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
        raise DataError(f"energies must be a 1-D array of finite numbers, got dtype {array.dtype}, shape {array.shape}")
    return array.astype(np.float64)


def energy_split(energies, n_tasks: int) -> list[torch.Tensor]:
    """Equal-count energy bins, low → high: rows sorted by energy (stable), cut into n_tasks
    consecutive runs whose sizes differ by at most one (the first ones are larger)."""
    n_tasks = _check_n_tasks(n_tasks)
    energies = _energies_array(energies)
    if n_tasks > len(energies):
        raise DataError(f"cannot split {len(energies)} samples into {n_tasks} energy bins; use fewer tasks")
    order = np.argsort(energies, kind="stable")
    return [_index_tensor(part) for part in np.array_split(order, n_tasks)]


def energy_edges(energies, n_tasks: int) -> torch.Tensor:
    """Inner bin edges of `energy_split(energies, n_tasks)`: float64 (n_tasks−1,), edge t is the
    midpoint between the highest energy of bin t and the lowest of bin t+1."""
    values = _energies_array(energies)
    bins = energy_split(values, n_tasks)
    return torch.tensor([(values[low].max() + values[high].min()) / 2 for low, high in zip(bins, bins[1:])],
                        dtype=torch.float64)


def bin_by_edges(values, edges) -> list[torch.Tensor]:
    """Task t = {i : edges[t−1] <= values[i] < edges[t]} (edges[−1] = −∞, edges[K−1] = +∞), for
    K = len(edges)+1 tasks, e.g. test energies binned with the `energy_edges` of training."""
    values = _energies_array(values)
    edges = _energies_array(edges)
    if (np.diff(edges) <= 0).any():
        raise DataError(f"bin edges must be strictly increasing, got {edges.tolist()}")
    bins = np.searchsorted(edges, values, side="right")
    return [_index_tensor(np.flatnonzero(bins == t)) for t in range(len(edges) + 1)]


def holdout(indices: Sequence[torch.Tensor], fraction: float, seed: Seed) -> tuple[list[torch.Tensor],
                                                                                   list[torch.Tensor]]:
    """Per task, a seeded random ⌊fraction·n_t + ½⌋ of its n_t indices go to validation, the rest
    stay in training; returns (train, val), both lists of int64 sorted tensors. fraction 0 gives empty
    validation sets (the class-incremental default); Multiband VAE holds out 0.3 (METHODS.md §5; the
    reference draws a Bernoulli(0.3) per sample instead of an exact count)."""
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 <= fraction < 1:
        raise ConfigError(f"validation fraction must be in [0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for index in indices:
        index = torch.as_tensor(index, dtype=torch.int64).cpu().numpy()
        order = rng.permutation(len(index))
        n_val = int(fraction * len(index) + 0.5)
        val.append(_index_tensor(index[order[:n_val]]))
        train.append(_index_tensor(index[order[n_val:]]))
    return train, val
