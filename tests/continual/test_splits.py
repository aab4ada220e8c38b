"""Task splits: class-incremental, Dirichlet (METHODS.md §5), energy bins, per-task holdout."""

import numpy as np
import pytest
import torch

from genrep.continual.splits import (DirichletSplit, allocate_by_proportions, bin_by_edges, class_incremental_split,
                                     dirichlet_split, energy_edges, energy_split, holdout)
from genrep.errors import ConfigError, DataError


def balanced_labels(n_classes=10, per_class=1000, seed=0):
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(n_classes), per_class))


def counts(labels, indices, n_classes):
    """(C, K) number of rows of class c in task t."""
    return np.stack([np.bincount(labels[index.numpy()], minlength=n_classes) for index in indices], 1)


def sequential_rule(n_per_class, proportions):
    """The allocation rule written out: task t takes min(⌊n_c·p[c,t]⌋, what is left of class c)."""
    expected = np.zeros(proportions.shape, dtype=np.int64)
    for c, n in enumerate(n_per_class):
        left = n
        for t in range(proportions.shape[1]):
            expected[c, t] = min(int(np.floor(n * proportions[c, t])), left)
            left -= expected[c, t]
    return expected


def assert_partition(indices, n):
    """Int64, sorted, in range, and no row in two tasks."""
    for index in indices:
        assert index.dtype == torch.int64 and torch.equal(index, index.sort().values)
        assert len(index) == 0 or (index.min() >= 0 and index.max() < n)
    flat = torch.cat(list(indices))
    assert len(flat) == len(torch.unique(flat))


# ---- class-incremental ----------------------------------------------------------------------------------------

def test_class_incremental_known_example():
    labels = torch.tensor([2, 0, 1, 2, 1, 0, 3])
    parts = class_incremental_split(labels, [[0, 1], [2]])
    assert [p.tolist() for p in parts] == [[1, 2, 4, 5], [0, 3]]  # class 3 is in no group
    assert all(p.dtype == torch.int64 for p in parts)
    assert [p.tolist() for p in class_incremental_split([1, 1, 0], [(1,), (0,)])] == [[0, 1], [2]]


def test_class_incremental_default_mnist_groups_cover_everything():
    labels = balanced_labels(per_class=30)
    parts = class_incremental_split(labels, [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)])
    assert_partition(parts, len(labels))
    assert sum(len(p) for p in parts) == len(labels)
    for t, part in enumerate(parts):
        assert set(labels[part.numpy()].tolist()) == {2 * t, 2 * t + 1}


def test_class_incremental_rejects_bad_groups():
    labels = [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="non-empty"):
        class_incremental_split(labels, [])
    with pytest.raises(ConfigError, match="non-empty"):
        class_incremental_split(labels, [[0], []])
    with pytest.raises(ConfigError, match=r"disjoint.*\[1\]"):
        class_incremental_split(labels, [[0, 1], [1, 2]])
    with pytest.raises(ConfigError, match="integer"):
        class_incremental_split(labels, [["a"]])
    with pytest.raises(DataError, match=r"classes \[7\] have no samples"):
        class_incremental_split(labels, [[0], [7]])
    with pytest.raises(DataError, match="1-D array of integers"):
        class_incremental_split(torch.tensor([0.0, 1.0]), [[0]])


# ---- Dirichlet ---------------------------------------------------------------------------------------------------

def test_allocation_known_example():
    labels = np.array([0] * 10 + [1] * 4)
    proportions = np.array([[0.3, 0.5, 0.5],     # 3, 5, then only 2 are left (Σ > 1)
                            [0.5, 0.0, 0.25]])   # 2, 0, 1; one row of class 1 is used by no task
    parts = allocate_by_proportions(labels, [0, 1], proportions, seed=0)
    assert_partition(parts, len(labels))
    assert counts(labels, parts, 2).tolist() == [[3, 5, 2], [2, 0, 1]]
    assert [p.tolist() for p in parts] == [p.tolist() for p in allocate_by_proportions(labels, [0, 1], proportions,
                                                                                       seed=0)]
    with pytest.raises(DataError, match=r"\(C, K\)"):
        allocate_by_proportions(labels, [0, 1, 2], proportions, seed=0)
    with pytest.raises(DataError, match=">= 0"):
        allocate_by_proportions(labels, [0, 1], -proportions, seed=0)


@pytest.mark.parametrize("alpha,n_tasks", [(1.0, 5), (1.0, 10), (0.3, 4), (100.0, 3)])
def test_dirichlet_follows_the_drawn_matrix(alpha, n_tasks):
    labels = balanced_labels(per_class=500) if n_tasks != 4 else np.repeat(np.arange(6), [50, 80, 300, 7, 120, 64])
    n_classes = int(labels.max()) + 1
    split = dirichlet_split(torch.from_numpy(labels), n_tasks, alpha, seed=3, return_proportions=True)
    assert isinstance(split, DirichletSplit)
    draw, p = split.draw.numpy(), split.proportions.numpy()
    assert split.classes.tolist() == list(range(n_classes)) and draw.shape == p.shape == (n_classes, n_tasks)
    assert np.allclose(draw.sum(1), 1) and (draw >= 0).all()
    # Each task column rescaled to C/(K+2), p = q·C/((K+2)·Σ_c q[c, t]).
    assert np.allclose(p.sum(0), n_classes / (n_tasks + 2))
    assert np.allclose(p, draw * n_classes / ((n_tasks + 2) * draw.sum(0)))
    assert_partition(split.indices, len(labels))
    got = counts(labels, split.indices, n_classes)
    assert np.array_equal(got, sequential_rule(np.bincount(labels), p))
    # Class mix of each task follows the column of the draw (where no class ran out: Σ_t p[c, t] <= 1).
    untruncated = p.sum(1) <= 1
    for t in range(n_tasks):
        share = got[untruncated, t] / np.bincount(labels)[untruncated]
        assert np.allclose(share, p[untruncated, t], atol=1 / np.bincount(labels).min())
    # The list form is the same split.
    plain = dirichlet_split(labels, n_tasks, alpha, 3)
    assert [a.tolist() for a in plain] == [b.tolist() for b in split.indices]


def test_dirichlet_draw_has_concentration_alpha_over_k():
    """Rows q ~ Dir(α/K·1_K): E q_t = 1/K, Var q_t = (1/K)(1 − 1/K)/(α + 1) (Dir(α·1_K): /(Kα + 1))."""
    n_tasks, alpha = 5, 1.0
    draw = dirichlet_split(np.arange(4000), n_tasks, alpha, seed=0, return_proportions=True).draw.numpy()
    assert np.allclose(draw.mean(0), 1 / n_tasks, atol=0.02)
    expected = (1 / n_tasks) * (1 - 1 / n_tasks) / (alpha + 1)
    assert abs(draw.var() / expected - 1) < 0.1


def test_dirichlet_with_equal_split_uses_about_k_over_k_plus_2_of_the_data():
    labels = balanced_labels(per_class=1000)
    used = sum(len(i) for i in dirichlet_split(labels, 5, 100.0, seed=0))
    assert abs(used / len(labels) - 5 / 7) < 0.01
    split = dirichlet_split(labels, 5, 1.0, seed=0, equal_split=False, return_proportions=True)
    assert torch.equal(split.proportions, split.draw)
    assert_partition(split.indices, len(labels))
    assert sum(len(i) for i in split.indices) >= len(labels) - 10 * 5  # only the floors are lost


def test_dirichlet_is_seeded():
    labels = balanced_labels(per_class=200)
    a, b, c = (dirichlet_split(labels, 5, 1.0, seed=s, return_proportions=True) for s in (7, 7, 8))
    assert torch.equal(a.draw, b.draw) and all(torch.equal(x, y) for x, y in zip(a.indices, b.indices))
    assert not torch.allclose(a.draw, c.draw)
    assert any(not torch.equal(x, y) for x, y in zip(a.indices, c.indices))
    # Seeding is local: global random state neither matters nor changes.
    np.random.seed(1), torch.manual_seed(1)
    again = dirichlet_split(labels, 5, 1.0, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a.indices, again))


def top_class_share(labels, indices):
    return np.mean([np.bincount(labels[i.numpy()]).max() / len(i) for i in indices if len(i)])


def test_dirichlet_alpha_controls_how_mixed_tasks_are():
    labels = balanced_labels(per_class=1000)
    # Large α: every task holds every class in near-equal shares.
    for seed in range(3):
        for index in dirichlet_split(labels, 5, 1000.0, seed):
            assert np.abs(np.bincount(labels[index.numpy()], minlength=10) / len(index) - 0.1).max() < 0.03
    # Small α: tasks are (nearly) single-class; α = 1 in between (Fig. 9.4.1: one or two dominant classes).
    small = np.mean([top_class_share(labels, dirichlet_split(labels, 10, 0.01, s)) for s in range(5)])
    middle = np.mean([top_class_share(labels, dirichlet_split(labels, 10, 1.0, s)) for s in range(5)])
    large = np.mean([top_class_share(labels, dirichlet_split(labels, 10, 1000.0, s)) for s in range(5)])
    assert small > 0.8 and large < 0.15 and large < middle < small


def test_dirichlet_columns_without_mass_give_empty_tasks():
    labels = balanced_labels(per_class=100)
    for seed in range(20):
        split = dirichlet_split(labels, 10, 1e-4, seed, return_proportions=True)
        empty = split.draw.sum(0) == 0
        if empty.any():
            break
    assert empty.any(), "expected some task column to underflow to 0 at alpha=1e-4"
    assert torch.isfinite(split.proportions).all()
    assert all(len(split.indices[t]) == 0 for t in torch.nonzero(empty).flatten().tolist())
    assert_partition(split.indices, len(labels))


def test_dirichlet_rejects_bad_arguments():
    labels = [0, 1, 1, 0]
    for alpha in (0, -1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ConfigError, match="alpha"):
            dirichlet_split(labels, 2, alpha, seed=0)
    for n_tasks in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="n_tasks"):
            dirichlet_split(labels, n_tasks, 1.0, seed=0)
    with pytest.raises(DataError, match="empty"):
        dirichlet_split(np.array([], dtype=np.int64), 2, 1.0, seed=0)


# ---- energy ------------------------------------------------------------------------------------------------------

def test_energy_split_known_example_and_edges():
    energies = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0, 6.0, 0.0])
    parts = energy_split(energies, 3)
    assert [p.tolist() for p in parts] == [[1, 3, 6], [2, 4], [0, 5]]  # energies {0,1,2}, {3,4}, {5,6}
    edges = energy_edges(energies, 3)
    assert edges.tolist() == [2.5, 4.5]
    assert [p.tolist() for p in bin_by_edges(energies, edges)] == [p.tolist() for p in parts]
    assert [p.tolist() for p in bin_by_edges([2.5, 2.4, 100.0, -1.0], edges)] == [[1, 3], [0], [2]]
    assert [p.tolist() for p in energy_split(energies, 1)] == [list(range(7))]


def test_energy_split_is_equal_count_and_ordered():
    energies = np.random.default_rng(0).lognormal(2, 1.5, size=1003)
    parts = energy_split(energies, 5)
    assert [len(p) for p in parts] == [201, 201, 201, 200, 200]
    assert_partition(parts, len(energies))
    for low, high in zip(parts, parts[1:]):
        assert energies[low.numpy()].max() < energies[high.numpy()].min()


def test_energy_split_rejects_bad_input():
    with pytest.raises(DataError, match="3 samples into 4"):
        energy_split([1.0, 2.0, 3.0], 4)
    with pytest.raises(DataError, match="finite"):
        energy_split([1.0, float("nan")], 2)
    with pytest.raises(ConfigError, match="n_tasks"):
        energy_split([1.0, 2.0], 0)
    with pytest.raises(DataError, match="strictly increasing"):
        bin_by_edges([1.0], [3.0, 2.0])


# ---- holdout -----------------------------------------------------------------------------------------------------

def test_holdout_sizes_disjointness_and_seed():
    tasks = [torch.arange(0, 10), torch.arange(100, 105), torch.tensor([7, 3, 50])]
    train, val = holdout(tasks, 0.3, seed=1)
    assert [len(v) for v in val] == [3, 2, 1]  # ⌊0.3·n + ½⌋ for n = 10, 5, 3
    for task, tr, va in zip(tasks, train, val):
        assert not set(tr.tolist()) & set(va.tolist())
        assert sorted(tr.tolist() + va.tolist()) == sorted(task.tolist())
        assert torch.equal(tr, tr.sort().values) and torch.equal(va, va.sort().values)
    again_train, again_val = holdout(tasks, 0.3, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(val + train, again_val + again_train))
    other = [holdout(tasks, 0.3, seed=s)[1][0].tolist() for s in range(2, 6)]
    assert any(o != val[0].tolist() for o in other)
    train0, val0 = holdout(tasks, 0.0, seed=1)
    assert [len(v) for v in val0] == [0, 0, 0] and all(torch.equal(a, b.sort().values) for a, b in zip(train0, tasks))


def test_holdout_rejects_bad_fraction():
    for fraction in (1.0, -0.1, 2, True):
        with pytest.raises(ConfigError, match="validation fraction"):
            holdout([torch.arange(4)], fraction, seed=0)
