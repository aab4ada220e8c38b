"""Scenario builders: views per task, label sets, chronological global indices, the named scenarios."""

import numpy as np
import pytest
import torch

from genrep.continual.scenario import Scenario
from genrep.continual.scenarios import (build_scenario, calorimeter_energy_scenario, dirichlet_scenario,
                                        scenario_names, sequence_scenario, split_scenario)
from genrep.continual.splits import dirichlet_split
from genrep.data import ImageDataset, load_dataset
from genrep.errors import ConfigError, DataError


def toy_pair(n_train=600, n_test=200, n_classes=10, size=6, name="toy"):
    """(train, test) whose condition column 0 is the row id, labels i mod n_classes shuffled."""
    def make(n, split, seed):
        g = torch.Generator().manual_seed(seed)
        labels = torch.arange(n)[torch.randperm(n, generator=g)] % n_classes
        row_ids = torch.arange(n, dtype=torch.float32)[:, None]
        return ImageDataset(torch.rand(n, 1, size, size, generator=g), labels, row_ids, name=name, split=split,
                            class_names=[str(c) for c in range(n_classes)])
    return make(n_train, "train", 0), make(n_test, "test", 1)


def ids(view):
    return view.conditions[:, 0].long().tolist()


def check_chronology(scenario: Scenario):
    """global_index: task 0 gets 0..n0−1, task 1 n0..n0+n1−1, ...: contiguous, unique, in order."""
    offset = 0
    for task in scenario:
        n = len(task.train)
        assert task.global_index.dtype == torch.int64
        assert torch.equal(task.global_index, torch.arange(offset, offset + n))
        offset += n
    assert torch.equal(torch.cat([t.global_index for t in scenario]), torch.arange(offset))


def test_split_digits_is_the_five_pair_class_incremental_scenario():
    scenario = build_scenario("split-digits")
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert scenario.name == "split-digits" and scenario.num_classes == 10 and scenario.image_shape == (1, 8, 8)
    assert scenario.num_tasks == 5 and "{0,1}" in scenario.description
    for t, task in enumerate(scenario):
        group = (2 * t, 2 * t + 1)
        assert task.classes == group and task.val is None
        assert set(task.train.labels.tolist()) == set(group) == set(task.test.labels.tolist())
        assert len(task.train) == int(np.isin(train.labels, group).sum())  # every training sample of the classes
        assert len(task.test) == int(np.isin(test.labels, group).sum())  # every test sample of the classes
        assert task.train.num_classes == 10 and task.train.images.shape[1:] == (1, 8, 8)
    assert sum(len(task.train) for task in scenario) == 1500
    check_chronology(scenario)


def test_split_scenario_views_holdout_and_limit():
    train, test = toy_pair()
    groups = [[3], [1, 7], [0]]
    scenario = split_scenario((train, test), groups, validation_fraction=0.25, limit=20, seed=4)
    assert scenario.name == "split-toy" and [task.classes for task in scenario] == [(3,), (1, 7), (0,)]
    seen = set()
    for task, group in zip(scenario, groups):
        pool = set(torch.nonzero(torch.isin(train.labels, torch.tensor(group))).flatten().tolist())
        n_val = int(0.25 * len(pool) + 0.5)
        assert len(task.val) == n_val and task.val.split == "val"
        assert len(task.train) == min(20, len(pool) - n_val)
        assert not set(ids(task.train)) & set(ids(task.val)) and set(ids(task.train)) | set(ids(task.val)) <= pool
        assert ids(task.train) == sorted(ids(task.train))  # data-set order
        in_group = torch.isin(test.labels, torch.tensor(group))
        assert set(ids(task.test)) == set(torch.nonzero(in_group).flatten().tolist())
        assert not seen & set(ids(task.train))
        seen |= set(ids(task.train))
    check_chronology(scenario)
    again = split_scenario((train, test), groups, validation_fraction=0.25, limit=20, seed=4)
    other = split_scenario((train, test), groups, validation_fraction=0.25, limit=20, seed=5)
    assert all(ids(a.train) == ids(b.train) and ids(a.val) == ids(b.val) for a, b in zip(scenario, again))
    assert any(ids(a.val) != ids(b.val) for a, b in zip(scenario, other))


def test_split_scenario_value_range_and_default_groups():
    train, test = toy_pair(n_classes=5)
    scenario = split_scenario((train, test), value_range=(-1, 1))
    assert [task.classes for task in scenario] == [(0, 1), (2, 3), (4,)]
    assert scenario.value_range == (-1.0, 1.0)
    assert all(t.train.images.min() >= -1 and t.train.images.max() <= 1 and t.train.value_range == (-1.0, 1.0)
               for t in scenario)
    assert scenario[0].train.images.min() < -0.9


def test_dirichlet_scenario_matches_the_split():
    train, test = toy_pair(n_train=1200, n_test=500)
    scenario = dirichlet_scenario((train, test), 4, 1.0, seed=2)
    split = dirichlet_split(train.labels, 4, 1.0, 2, return_proportions=True)
    assert scenario.name == "dirichlet-toy" and scenario.num_tasks == 4
    test_seen = set()
    for task, index in zip(scenario, split.indices):
        assert sorted(ids(task.train) + ids(task.val)) == index.tolist()  # train + val = the Dirichlet task
        assert len(task.val) == int(0.3 * len(index) + 0.5)
        assert task.classes == tuple(sorted(set(task.train.labels.tolist())))
        assert not test_seen & set(ids(task.test))
        test_seen |= set(ids(task.test))
    # Test views: the same proportions p[c, t], allocated sequentially over the test classes.
    n_test = np.bincount(test.labels.numpy(), minlength=10)
    p = split.proportions.numpy()
    for c in range(10):
        left = n_test[c]
        for t, task in enumerate(scenario):
            expected = min(int(np.floor(n_test[c] * p[c, t])), left)
            left -= expected
            assert int((task.test.labels == c).sum()) == expected
    check_chronology(scenario)
    assert ids(dirichlet_scenario((train, test), 4, 1.0, seed=3)[0].train) != ids(scenario[0].train)


def test_dirichlet_scenario_refuses_empty_tasks():
    with pytest.raises(DataError, match="left task .* empty; use a larger alpha"):
        dirichlet_scenario(toy_pair(), 10, 1e-4, seed=1)  # seed 1 draws task columns that underflow to 0


def test_calorimeter_energy_scenario():
    scenario = calorimeter_energy_scenario(5, data_options={"n": 400}, seed=0)
    assert scenario.name == "calorimeter-energy" and scenario.image_shape == (1, 44, 44)
    assert scenario.num_classes == 8  # particle types
    assert [len(task.train) for task in scenario] == [80] * 5
    assert sum(len(task.test) for task in scenario) == 400
    energy = [(task.train.conditions[:, 0], task.test.conditions[:, 0]) for task in scenario]
    for t in range(4):
        (train_low, test_low), (train_high, test_high) = energy[t], energy[t + 1]
        assert train_low.max() < train_high.min()
        edge = (train_low.max() + train_high.min()) / 2
        assert test_low.max() < edge <= test_high.min()
    assert all(task.train.conditions.shape == (80, 9) for task in scenario)
    check_chronology(scenario)
    with pytest.raises(DataError, match="'Energy'"):
        calorimeter_energy_scenario(2, dataset=toy_pair())


def test_sequence_scenario_offsets_labels():
    first, second = toy_pair(name="first"), toy_pair(n_classes=3, name="second")
    scenario = sequence_scenario([first, second])
    assert scenario.name == "first-second" and scenario.num_classes == 13
    assert [task.name for task in scenario] == ["first", "second"]
    assert scenario[0].classes == tuple(range(10)) and scenario[1].classes == (10, 11, 12)
    assert torch.equal(scenario[1].test.labels, second[1].labels + 10)
    assert scenario[1].train.class_names[10] == "second:0" and scenario[1].train.num_classes == 13
    check_chronology(scenario)
    grouped = sequence_scenario([first, second], [[0, 1], [2]])
    assert [task.classes for task in grouped] == [(0, 1), (2,), (10, 11), (12,)]
    check_chronology(grouped)
    with pytest.raises(DataError, match="images"):
        sequence_scenario([first, toy_pair(size=5)])
    with pytest.raises(ConfigError, match="at least one"):
        sequence_scenario([])


@pytest.mark.needs_source("mnist", "fashion_mnist")
def test_mnist_then_fashion_mnist():
    scenario = build_scenario("mnist-fashion-mnist", limit=50)
    assert scenario.name == "mnist-fashion-mnist" and scenario.num_classes == 20
    assert [len(task.train) for task in scenario] == [50, 50]
    assert scenario[0].classes == tuple(range(10)) and set(scenario[1].train.labels.tolist()) <= set(range(10, 20))
    assert torch.equal(scenario[1].test.labels, load_dataset("fashion_mnist", "test").labels + 10)
    check_chronology(scenario)


def test_build_scenario_names_options_and_errors(tmp_path, monkeypatch):
    assert scenario_names() == ["split-mnist", "split-fashion-mnist", "split-cifar10", "split-digits",
                                "dirichlet-mnist", "dirichlet-fashion-mnist", "calorimeter-energy",
                                "mnist-fashion-mnist"]
    with pytest.raises(ConfigError, match="unknown scenario 'split-svhn'; valid names: split-mnist"):
        build_scenario("split-svhn")
    with pytest.raises(ConfigError, match="no option.*alpha.*valid: groups"):
        build_scenario("split-digits", alpha=1.0)
    with pytest.raises(ConfigError, match="no option.*dataset"):
        build_scenario("split-digits", dataset="mnist")
    with pytest.raises(ConfigError, match="limit"):
        build_scenario("split-digits", limit=0)
    with pytest.raises(ConfigError, match="data_options"):
        split_scenario(toy_pair(), data_options={"image_size": 4})
    monkeypatch.setenv("GENREP_DATA", str(tmp_path))
    with pytest.raises(DataError, match="cifar10"):
        build_scenario("split-cifar10")
    a = build_scenario("split-digits", validation_fraction=0.2, seed=1)
    b = build_scenario("split-digits", validation_fraction=0.2, seed=1)
    assert all(torch.equal(x.train.images, y.train.images) and torch.equal(x.val.images, y.val.images)
               for x, y in zip(a, b))
