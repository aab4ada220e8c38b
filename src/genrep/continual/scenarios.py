"""Builders of the continual-learning scenarios of the thesis (ch.8 BinPlay, ch.9 Multiband VAE).

Every builder returns a `Scenario` whose tasks hold train / val / test views (`ImageDataset`s in
`value_range`), built from the splits of `genrep.continual.splits`:
- labels stay in the data set's label space (one shared head; a sequence of data sets offsets them);
- a task's views keep the source rows in data-set order; validation (`validation_fraction`, None
  when 0) is a seeded holdout of the task's training pool, then `limit` caps the training view to a
  seeded random subset of that many rows (validation and test views are not capped);
- `Task.global_index` is chronological: task t's training rows get o_t, o_t+1, ..., o_t+n_t−1 in the
  order of its training view, with o_t = n_0 + ... + n_{t−1};
- `dataset` is a data set name (loaded with `load_dataset(name, "train"/"test", value_range=...,
  **data_options)`) or a (train, test) pair of `ImageDataset`s.
`build_scenario(name, **options)` builds the named scenarios of `scenario_names()`.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from genrep.continual.scenario import Scenario, Task
from genrep.continual.splits import (allocate_by_proportions, bin_by_edges, class_incremental_split,
                                     dirichlet_split, energy_edges, energy_split, holdout)
from genrep.data import load_dataset
from genrep.data.dataset import ImageDataset
from genrep.data.transforms import to_range
from genrep.errors import ConfigError, DataError

DataPair = tuple[ImageDataset, ImageDataset]
# Independent random streams of one scenario seed: np.random.default_rng((seed, STREAM)).
HOLDOUT, LIMIT, TEST_SPLIT = 1, 2, 3


def _load(dataset: str | DataPair, value_range, data_options: Mapping | None) -> DataPair:
    if isinstance(dataset, str):
        return tuple(load_dataset(dataset, split, value_range=value_range, **dict(data_options or {}))
                     for split in ("train", "test"))
    if data_options:
        raise ConfigError("data_options apply when the data set is given by name; load the (train, test) pair "
                          "with them yourself")
    train, test = dataset
    return to_range(train, value_range), to_range(test, value_range)


def _slug(data: ImageDataset) -> str:
    return data.name.replace("_", "-")


def _group_name(group: Sequence[int]) -> str:
    return "classes " + ",".join(str(int(c)) for c in group)


def _default_groups(num_classes: int | None) -> list[tuple[int, ...]]:
    if not num_classes:
        raise DataError("a class-incremental split needs labelled data")
    return [tuple(range(first, min(first + 2, num_classes))) for first in range(0, num_classes, 2)]


def _cap(indices: list[torch.Tensor], limit: int, seed: int) -> list[torch.Tensor]:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit must be a positive integer (training samples per task), got {limit!r}")
    rng = np.random.default_rng((seed, LIMIT))
    capped = []
    for index in indices:
        if len(index) > limit:
            index = index[torch.from_numpy(np.sort(rng.choice(len(index), limit, replace=False)))]
        capped.append(index)
    return capped


def _assemble(name: str, description: str, parts: Sequence[tuple[str, ImageDataset, ImageDataset]], *,
              validation_fraction: float, limit: int | None, seed: int) -> Scenario:
    """parts: per task (task name, training pool, test view) → tasks with the conventions of the
    module docstring."""
    pools = [pool for _, pool, _ in parts]
    train_index, val_index = holdout([torch.arange(len(pool)) for pool in pools], validation_fraction,
                                     seed=(seed, HOLDOUT))
    if limit is not None:
        train_index = _cap(train_index, limit, seed)
    tasks, offset = [], 0
    for t, ((task_name, pool, test), train_rows, val_rows) in enumerate(zip(parts, train_index, val_index)):
        train = pool.subset(train_rows)
        if not len(train):
            raise DataError(f"{name}: task {t} ({task_name}) has no training samples; use fewer tasks or more data")
        val = dataclasses.replace(pool.subset(val_rows), split="val") if validation_fraction > 0 else None
        classes = () if train.labels is None else tuple(torch.unique(train.labels).tolist())
        tasks.append(Task(t, task_name, train, test, val=val, classes=classes,
                          global_index=torch.arange(offset, offset + len(train))))
        offset += len(train)
    first = tasks[0].train
    return Scenario(name, tuple(tasks), first.image_shape, first.value_range, first.num_classes, description)


def split_scenario(dataset: str | DataPair, groups: Sequence[Sequence[int]] | None = None, *,
                   validation_fraction: float = 0.0, limit: int | None = None,
                   value_range: tuple[float, float] = (0.0, 1.0), seed: int = 0,
                   data_options: Mapping | None = None) -> Scenario:
    """Class-incremental split (van de Ven & Tolias 2019; thesis §8.4): task t trains on the classes
    groups[t] (default consecutive pairs (0, 1), (2, 3), ..., i.e. 5 tasks for 10 classes) and is
    tested on all test samples of those classes."""
    train, test = _load(dataset, value_range, data_options)
    groups = _default_groups(train.num_classes) if groups is None else [tuple(group) for group in groups]
    train_parts = class_incremental_split(train.labels, groups)
    test_parts = class_incremental_split(test.labels, groups)
    parts = [(_group_name(group), train.subset(tr), test.subset(te))
             for group, tr, te in zip(groups, train_parts, test_parts)]
    description = (f"{train.name}: {len(groups)} class-incremental tasks "
                   + " ".join("{" + ",".join(map(str, group)) + "}" for group in groups))
    return _assemble(f"split-{_slug(train)}", description, parts, validation_fraction=validation_fraction,
                     limit=limit, seed=seed)


def dirichlet_scenario(dataset: str | DataPair, n_tasks: int = 10, alpha: float = 1.0, *, seed: int = 0,
                       validation_fraction: float = 0.3, equal_split: bool = True, limit: int | None = None,
                       value_range: tuple[float, float] = (0.0, 1.0),
                       data_options: Mapping | None = None) -> Scenario:
    """Dirichlet(α) split of Multiband VAE (thesis §9.4; thesis tables: MNIST / FashionMNIST α = 1,
    10 tasks): the training set is split by `dirichlet_split(labels, n_tasks, alpha, seed)`, and
    `validation_fraction` (0.3 as in the reference) of each task is held out as its validation view.

    Test views: the reference has none (it scores each task on its validation or training split); here
    the test set is allocated with the same per-class proportions p[c, t] (`allocate_by_proportions`,
    own seeded shuffle), so each task's test view has the class mix of its training view.
    """
    train, test = _load(dataset, value_range, data_options)
    split = dirichlet_split(train.labels, n_tasks, alpha, seed, equal_split=equal_split, return_proportions=True)
    for t, index in enumerate(split.indices):
        if not len(index):
            raise DataError(f"Dirichlet split of {train.name} (alpha={alpha}, seed={seed}) left task {t} empty; "
                            "use a larger alpha, fewer tasks or another seed")
    test_parts = allocate_by_proportions(test.labels, split.classes, split.proportions, seed=(seed, TEST_SPLIT))
    parts = [(f"task {t}", train.subset(tr), test.subset(te))
             for t, (tr, te) in enumerate(zip(split.indices, test_parts))]
    description = f"{train.name}: {n_tasks} tasks, Dirichlet alpha={alpha} class split (seed {seed})"
    return _assemble(f"dirichlet-{_slug(train)}", description, parts, validation_fraction=validation_fraction,
                     limit=limit, seed=seed)


def calorimeter_energy_scenario(n_tasks: int = 5, *, dataset: str | DataPair = "calorimeter",
                                validation_fraction: float = 0.0, limit: int | None = None,
                                value_range: tuple[float, float] = (0.0, 1.0), seed: int = 0,
                                data_options: Mapping | None = None) -> Scenario:
    """Calorimeter responses split by particle energy (thesis §9.6: 5 tasks of increasing energy):
    training rows into equal-count energy bins (`energy_split`), test rows into the same energy
    ranges (`bin_by_edges` with the training `energy_edges`). Labels are the particle types,
    conditions the 9 particle attributes (column "Energy" defines the bins)."""
    train, test = _load(dataset, value_range, data_options)
    for data in (train, test):
        if data.conditions is None or "Energy" not in (data.condition_names or []):
            raise DataError(f"{data.name}[{data.split}] has no 'Energy' condition column; use calorimeter data")
    energies = train.conditions[:, train.condition_names.index("Energy")]
    train_parts = energy_split(energies, n_tasks)
    edges = energy_edges(energies, n_tasks)
    test_parts = bin_by_edges(test.conditions[:, test.condition_names.index("Energy")], edges)
    bounds = [float(energies.min())] + edges.tolist() + [float(energies.max())]
    parts = [(f"energy {bounds[t]:.4g}-{bounds[t + 1]:.4g} GeV", train.subset(tr), test.subset(te))
             for t, (tr, te) in enumerate(zip(train_parts, test_parts))]
    description = f"{train.name}: {n_tasks} tasks of increasing particle energy (equal-count bins)"
    return _assemble("calorimeter-energy", description, parts, validation_fraction=validation_fraction,
                     limit=limit, seed=seed)


def sequence_scenario(datasets: Sequence[str | DataPair] = ("mnist", "fashion_mnist"),
                      groups: Sequence[Sequence[int]] | None = None, *, validation_fraction: float = 0.0,
                      limit: int | None = None, value_range: tuple[float, float] = (0.0, 1.0), seed: int = 0,
                      data_options: Mapping | None = None) -> Scenario:
    """One data set after another (e.g. MNIST → FashionMNIST): one task per data set, or with `groups`
    one task per class group of each data set (thesis ch.9 uses the 5 pairs, i.e. 10 tasks). Labels
    are offset so the label spaces do not overlap: data set d's label y becomes y + Σ_{d'<d} C_d'
    (FashionMNIST after MNIST: +10); num_classes = Σ_d C_d. All data sets must share the image shape
    (pass data_options={"image_size": ...} otherwise)."""
    pairs = [_load(dataset, value_range, data_options) for dataset in datasets]
    if not pairs:
        raise ConfigError("sequence_scenario needs at least one data set, e.g. ['mnist', 'fashion_mnist']")
    if any(train.num_classes is None for train, _ in pairs):
        raise DataError("a data-set sequence needs labelled data sets")
    class_names = [f"{train.name}:{name}" for train, _ in pairs
                   for name in (train.class_names or [str(c) for c in range(train.num_classes)])]
    parts, offset = [], 0
    for train, test in pairs:
        num_classes = train.num_classes
        train, test = (dataclasses.replace(data, labels=data.labels + offset, class_names=class_names)
                       for data in (train, test))
        if groups is None:
            parts.append((train.name, train, test))
        else:
            shifted = [[int(c) + offset for c in group] for group in groups]
            for group, tr, te in zip(groups, class_incremental_split(train.labels, shifted),
                                     class_incremental_split(test.labels, shifted)):
                parts.append((f"{train.name} {_group_name(group)}", train.subset(tr), test.subset(te)))
        offset += num_classes
    description = (" -> ".join(train.name for train, _ in pairs)
                   + f": {len(parts)} tasks, labels offset into {len(class_names)} classes")
    return _assemble("-".join(_slug(train) for train, _ in pairs), description, parts,
                     validation_fraction=validation_fraction, limit=limit, seed=seed)


SCENARIOS: dict[str, tuple[Callable[..., Scenario], dict]] = {
    "split-mnist": (split_scenario, {"dataset": "mnist"}),
    "split-fashion-mnist": (split_scenario, {"dataset": "fashion_mnist"}),
    "split-cifar10": (split_scenario, {"dataset": "cifar10"}),
    "split-digits": (split_scenario, {"dataset": "digits"}),
    "dirichlet-mnist": (dirichlet_scenario, {"dataset": "mnist"}),
    "dirichlet-fashion-mnist": (dirichlet_scenario, {"dataset": "fashion_mnist"}),
    "calorimeter-energy": (calorimeter_energy_scenario, {}),
    "mnist-fashion-mnist": (sequence_scenario, {"datasets": ("mnist", "fashion_mnist")}),
}


def scenario_names() -> list[str]:
    return list(SCENARIOS)


def build_scenario(name: str, **options) -> Scenario:
    """The named scenario ("split-mnist", ...; see `scenario_names()`; "split-digits" is the fast
    offline smoke scenario). options: keyword options of its builder except the data set, e.g.
    seed=1, limit=500, validation_fraction=0.1, alpha=0.5, data_options={"path": DIR}."""
    if name not in SCENARIOS:
        raise ConfigError(f"unknown scenario {name!r}; valid names: {', '.join(SCENARIOS)}")
    builder, fixed = SCENARIOS[name]
    allowed = [p for p in inspect.signature(builder).parameters if p not in ("dataset", "datasets")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"scenario {name!r} has no option(s) {', '.join(unknown)}; valid: {', '.join(allowed)}")
    return builder(**fixed, **options)
