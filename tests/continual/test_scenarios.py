"""Scenario builders: views per task, label sets, chronological global indices, the named scenarios."""

import numpy as np
import pytest
import torch

from genrep.continual import scenarios
from genrep.continual.scenario import Scenario
from genrep.continual.scenarios import (CELEBA_HAIR_NAMES, build_scenario, calorimeter_energy_scenario,
                                        celeba_hair_classes, celeba_hair_pair, dirichlet_celeba_hair_scenario,
                                        dirichlet_omniglot_scenario, dirichlet_scenario, omniglot_pair,
                                        scenario_names, sequence_scenario, split_celeba_hair_scenario,
                                        split_omniglot_scenario, split_scenario)
from genrep.continual.splits import dirichlet_split
from genrep.data import ImageDataset, load_dataset
from genrep.data.transforms import resize
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
                                "mnist-fashion-mnist", "split-mnist-10", "split-fashion-mnist-10",
                                "mnist-fashion-mnist-10", "fashion-mnist-mnist-10", "split-omniglot",
                                "split-omniglot-20",
                                "dirichlet-omniglot", "split-celeba-hair", "dirichlet-celeba-hair"]
    with pytest.raises(ConfigError, match="unknown scenario 'split-svhn'; valid names: split-mnist"):
        build_scenario("split-svhn")
    with pytest.raises(ConfigError, match="no option.*alpha.*valid: groups"):
        build_scenario("split-digits", alpha=1.0)
    with pytest.raises(ConfigError, match="no option.*dataset"):
        build_scenario("split-digits", dataset="mnist")
    with pytest.raises(ConfigError, match="'split-mnist-10' has no option.*n_tasks"):  # fixed by the name
        build_scenario("split-mnist-10", n_tasks=5)
    with pytest.raises(ConfigError, match="'fashion-mnist-mnist-10' has no option.*groups"):
        build_scenario("fashion-mnist-mnist-10", groups=[[0]])
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


def test_split_scenario_n_tasks_gives_contiguous_blocks():
    train, test = toy_pair(n_classes=12)
    assert [task.classes for task in split_scenario((train, test))] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9),
                                                                          (10, 11)]
    scenario = split_scenario((train, test), n_tasks=3)
    assert [task.classes for task in scenario] == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11)]
    assert scenario.description == "toy: 3 class-incremental tasks {0-3} {4-7} {8-11}"
    assert [task.name for task in scenario] == ["classes 0-3", "classes 4-7", "classes 8-11"]
    for task, first in zip(scenario, (0, 4, 8)):
        block = torch.arange(first, first + 4)
        assert ids(task.train) == torch.nonzero(torch.isin(train.labels, block)).flatten().tolist()
        assert ids(task.test) == torch.nonzero(torch.isin(test.labels, block)).flatten().tolist()
    assert [task.classes for task in split_scenario((train, test), n_tasks=12)] == [(c,) for c in range(12)]
    assert [task.classes for task in split_scenario((train, test), n_tasks=1)] == [tuple(range(12))]
    check_chronology(scenario)
    with pytest.raises(ConfigError, match=r"^n_tasks=5 does not divide the 12 classes of toy; use one of "
                                          r"1, 2, 3, 4, 6, 12, or give the class groups$"):
        split_scenario((train, test), n_tasks=5)
    with pytest.raises(ConfigError, match=r"^n_tasks=13 exceeds the 12 classes of toy; use one of 1, 2, 3, 4, 6, 12$"):
        split_scenario((train, test), n_tasks=13)
    with pytest.raises(ConfigError, match="^give the class groups or n_tasks, not both$"):
        split_scenario((train, test), [[0, 1]], n_tasks=6)
    with pytest.raises(ConfigError, match="n_tasks must be an integer >= 1"):
        split_scenario((train, test), n_tasks=0)


@pytest.mark.needs_source("mnist", "fashion_mnist")
@pytest.mark.parametrize("name, source", [("split-mnist-10", "mnist"), ("split-fashion-mnist-10", "fashion_mnist")])
def test_ten_one_class_tasks(name, source):
    scenario = build_scenario(name, limit=20)
    test = load_dataset(source, "test")
    assert scenario.name == name and scenario.num_tasks == 10 and scenario.num_classes == 10
    for c, task in enumerate(scenario):
        assert task.classes == (c,) and len(task.train) == 20 and task.name == f"classes {c}"
        assert torch.equal(task.test.labels, torch.full((int((test.labels == c).sum()),), c))
    check_chronology(scenario)
    assert [task.classes for task in build_scenario("split-mnist", limit=20)] == [(0, 1), (2, 3), (4, 5), (6, 7),
                                                                                  (8, 9)]


@pytest.mark.needs_source("mnist", "fashion_mnist")
@pytest.mark.parametrize("name, order", [("mnist-fashion-mnist-10", ("mnist", "fashion_mnist")),
                                         ("fashion-mnist-mnist-10", ("fashion_mnist", "mnist"))])
def test_data_set_sequences_of_class_pairs(name, order):
    """Thesis Table 9.4.2: 5 pairs of the first data set (labels 0–9), then 5 of the second (labels 10–19)."""
    scenario = build_scenario(name, limit=10)
    assert scenario.name == name and scenario.num_tasks == 10 and scenario.num_classes == 20
    assert scenario.description == f"{order[0]} -> {order[1]}: 10 tasks, labels offset into 20 classes"
    assert scenario[0].train.class_names[0] == f"{order[0]}:{load_dataset(order[0], 'test').class_names[0]}"
    for t, task in enumerate(scenario):
        source, offset = order[t // 5], 10 * (t // 5)
        pair = (2 * (t % 5), 2 * (t % 5) + 1)
        assert task.name == f"{source} classes {pair[0]},{pair[1]}"
        assert task.classes == (offset + pair[0], offset + pair[1]) and len(task.train) == 10
        test = load_dataset(source, "test")
        rows = torch.isin(test.labels, torch.tensor(pair))
        assert torch.equal(task.test.images, test.images[rows])  # the images of that data set, not only its labels
        assert torch.equal(task.test.labels, test.labels[rows] + offset)
    check_chronology(scenario)


def test_dirichlet_alpha_controls_the_class_mix():
    """Thesis Table 9.4.3: α = 100 gives near-uniform class mixes per task, α = 1 tasks dominated by few classes."""
    pair = toy_pair(n_train=3000, n_test=500)

    def shares(alpha, seed):
        rows = []
        for task in dirichlet_scenario(pair, 10, alpha, seed=seed):
            labels = torch.cat([task.train.labels, task.val.labels])
            rows.append(np.bincount(labels.numpy(), minlength=10) / len(labels))
        return np.array(rows)

    for seed in range(3):
        balanced, skewed = shares(100.0, seed), shares(1.0, seed)
        assert balanced.max() < 0.25 and balanced.min() > 0.02  # every class in every task, near 1/10
        assert skewed.max(1).mean() > 0.5 and (skewed == 0).mean() > 0.3  # one class dominates, many absent


@pytest.mark.needs_source("mnist", "fashion_mnist")
def test_dirichlet_mnist_alpha_option():
    scenario = build_scenario("dirichlet-mnist", alpha=100, limit=20)
    val_shares = [np.bincount(task.val.labels.numpy(), minlength=10) / len(task.val) for task in scenario]
    assert np.max(val_shares) < 0.25 and np.min(val_shares) > 0.02 and "alpha=100" in scenario.description


def fake_omniglot(n_classes=13, per_class=3, size=105):
    """Binary 'drawings' as the omniglot loader stores them (1 = paper, 0 = ink): row i's ink is a square
    of side 1 + i mod 30 in the corner, so rows are told apart by their ink count."""
    n = n_classes * per_class
    images = torch.ones(n, 1, size, size)
    for i in range(n):
        side = 1 + i % 30
        images[i, :, :side, :side] = 0
    labels = torch.arange(n) % n_classes
    return ImageDataset(images, labels, torch.arange(n, dtype=torch.float32)[:, None], name="omniglot",
                        class_names=[f"Alphabet/character{c:02d}" for c in range(n_classes)])


def test_omniglot_pair_resizes_inverts_and_uses_the_background_set_as_test(monkeypatch):
    data = fake_omniglot()
    calls = []

    def fake_load(name, split, **options):
        calls.append((name, split, options))
        return data

    monkeypatch.setattr(scenarios, "load_dataset", fake_load)
    train, test = omniglot_pair(data_options={"path": "DIR"}, value_range=(-1, 1))
    assert calls == [("omniglot", "train", {"path": "DIR"})]  # the evaluation alphabets are other classes
    assert train is test and train.image_shape == (1, 28, 28) and train.value_range == (-1.0, 1.0)
    assert torch.allclose(train.images, 1 - 2 * resize(data, 28).images)  # 1 − x in [0, 1], then to [-1, 1]
    assert train.images[0, 0, -1, -1] == -1 and train.images[29, 0, 0, 0] == 1  # black paper, white ink
    kept, _ = omniglot_pair((data, data), image_size=None, invert=False)
    assert torch.equal(kept.images, data.images)
    with pytest.raises(ConfigError, match="data_options"):
        omniglot_pair((data, data), data_options={"path": "DIR"})


def test_split_omniglot_contiguous_blocks_drop_the_remainder(monkeypatch):
    data = fake_omniglot(n_classes=13, per_class=3, size=8)
    monkeypatch.setattr(scenarios, "load_dataset", lambda name, split, **options: data)
    scenario = build_scenario("split-omniglot", n_tasks=4)
    assert scenario.name == "split-omniglot" and scenario.num_tasks == 4 and scenario.image_shape == (1, 28, 28)
    for t, task in enumerate(scenario):  # 13 // 4 = 3 characters per task, character 12 left out
        block = torch.arange(3 * t, 3 * t + 3)
        assert task.classes == tuple(block.tolist())
        assert ids(task.train) == torch.nonzero(torch.isin(data.labels, block)).flatten().tolist()
        assert ids(task.test) == ids(task.train) and task.test.split == "train"  # the reference validates on train
    assert [task.classes for task in split_omniglot_scenario(dataset=(data, data), image_size=None)] == [
        (0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]  # default 5 tasks
    assert build_scenario("split-omniglot", n_tasks=13)[12].classes == (12,)
    check_chronology(scenario)
    with pytest.raises(ConfigError, match="^n_tasks=14 exceeds the 13 classes of omniglot; use at most 13$"):
        build_scenario("split-omniglot", n_tasks=14)


def test_dirichlet_omniglot(monkeypatch):
    data = fake_omniglot(n_classes=30, per_class=40, size=8)
    monkeypatch.setattr(scenarios, "load_dataset", lambda name, split, **options: data)
    scenario = build_scenario("dirichlet-omniglot", n_tasks=5, seed=1)
    split = dirichlet_split(data.labels, 5, 1.0, 1)
    assert scenario.name == "dirichlet-omniglot" and scenario.num_tasks == 5 and "alpha=1.0" in scenario.description
    for task, index in zip(scenario, split):
        assert sorted(ids(task.train) + ids(task.val)) == index.tolist()
        assert task.test.split == "train" and task.train.image_shape == (1, 28, 28)
    assert dirichlet_omniglot_scenario(dataset=(data, data), seed=1).num_tasks == 20  # thesis: 20 tasks
    check_chronology(scenario)


ATTRIBUTES = ["Bald", "Wearing_Hat", "Male", "Smiling", "Gray_Hair", "Brown_Hair", "Blond_Hair", "Black_Hair"]
# (attributes set, expected class): single classes, then overlaps decided by the override order
# bald > gray > blond > hat > brown > black (the reference assigns 0, 1, 6, 7, 4, 5, 2, 3, 8, 9).
HAIR_CASES = [
    ({"Black_Hair", "Male"}, 0), ({"Black_Hair"}, 1), ({"Blond_Hair", "Male"}, 2), ({"Blond_Hair"}, 3),
    ({"Wearing_Hat", "Male"}, 4), ({"Wearing_Hat", "Smiling"}, 5), ({"Brown_Hair", "Male"}, 6), ({"Brown_Hair"}, 7),
    ({"Gray_Hair", "Male"}, 8), ({"Gray_Hair"}, 8), ({"Bald", "Male"}, 9),
    ({"Black_Hair", "Brown_Hair", "Male"}, 6), ({"Brown_Hair", "Wearing_Hat"}, 5),
    ({"Wearing_Hat", "Blond_Hair", "Male"}, 2), ({"Black_Hair", "Blond_Hair"}, 3), ({"Blond_Hair", "Gray_Hair"}, 8),
    ({"Gray_Hair", "Bald", "Black_Hair", "Male"}, 9), ({"Black_Hair", "Wearing_Hat", "Male"}, 4),
    (set(), -1), ({"Male", "Smiling"}, -1),
]


def attribute_table(cases):
    return torch.tensor([[float(name in on) for name in ATTRIBUTES] for on, _ in cases])


def test_celeba_hair_classes_follow_the_reference_override_order():
    classes = celeba_hair_classes(attribute_table(HAIR_CASES), ATTRIBUTES)
    assert classes.dtype == torch.int64 and classes.tolist() == [label for _, label in HAIR_CASES]
    assert [CELEBA_HAIR_NAMES[2 * t].split(",")[0] for t in range(4)] == ["black hair", "blond hair", "hat",
                                                                          "brown hair"]
    assert CELEBA_HAIR_NAMES[8:] == ["gray hair", "bald"]
    with pytest.raises(DataError, match="Bald are missing"):
        celeba_hair_classes(attribute_table(HAIR_CASES)[:, 1:], ATTRIBUTES[1:])
    with pytest.raises(DataError, match="0/1"):
        celeba_hair_classes(2 * attribute_table(HAIR_CASES) - 1, ATTRIBUTES)


def fake_celeba(split, repeat=30):
    attributes = attribute_table(HAIR_CASES).repeat(repeat, 1)
    n = len(attributes)
    return ImageDataset(torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(len(split))), None,
                        attributes, name="celeba", split=split, condition_names=list(ATTRIBUTES))


def test_split_celeba_hair(monkeypatch):
    loaded = {split: fake_celeba(split) for split in ("train", "test")}
    monkeypatch.setattr(scenarios, "load_dataset", lambda name, split, **options: loaded[split])
    scenario = build_scenario("split-celeba-hair", validation_fraction=0.2)
    assert scenario.name == "split-celeba-hair" and scenario.num_classes == 10 and scenario.image_shape == (3, 4, 4)
    expected = torch.tensor([label for _, label in HAIR_CASES]).repeat(30)
    for t, task in enumerate(scenario):  # black, blond, hat, brown, gray + bald
        pair = (2 * t, 2 * t + 1)
        assert task.classes == pair and task.train.class_names == CELEBA_HAIR_NAMES
        rows = torch.nonzero(torch.isin(expected, torch.tensor(pair))).flatten()
        assert torch.equal(task.test.images, loaded["test"].images[rows])
        assert torch.equal(task.test.labels, expected[rows])
        assert torch.equal(task.test.conditions, loaded["test"].conditions[rows])  # the 40 attributes stay
        assert len(task.train) + len(task.val) == len(rows)
    train, test = celeba_hair_pair(tuple(loaded.values()))
    assert train.name == "celeba_hair" and torch.equal(test.labels, expected[expected >= 0])  # unmatched dropped
    assert torch.equal(test.images, loaded["test"].images[expected >= 0])
    assert [task.classes for task in split_celeba_hair_scenario(10, dataset=tuple(loaded.values()))] == [
        (c,) for c in range(10)]
    check_chronology(scenario)
    with pytest.raises(DataError, match="no named attribute conditions; use celeba data"):
        split_celeba_hair_scenario(dataset=toy_pair())


def test_dirichlet_celeba_hair(monkeypatch):
    loaded = {split: fake_celeba(split, repeat=60) for split in ("train", "test")}
    monkeypatch.setattr(scenarios, "load_dataset", lambda name, split, **options: loaded[split])
    scenario = build_scenario("dirichlet-celeba-hair", alpha=100.0)
    assert scenario.name == "dirichlet-celeba-hair" and scenario.num_tasks == 10
    assert "alpha=100.0" in scenario.description
    labels = celeba_hair_classes(loaded["train"].conditions, ATTRIBUTES)
    split = dirichlet_split(labels[labels >= 0], 10, 100.0, 0)
    for task, index in zip(scenario, split):
        assert sorted(torch.cat([task.train.labels, task.val.labels]).tolist()) == sorted(
            labels[labels >= 0][index].tolist())
        assert len(task.val) == int(0.3 * len(index) + 0.5)
    check_chronology(scenario)
    assert dirichlet_celeba_hair_scenario(4, dataset=tuple(loaded.values())).num_tasks == 4
