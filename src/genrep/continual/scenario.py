"""A continual-learning scenario: an ordered sequence of tasks, each with train / validation /
test views of in-memory data sets.

Every view is an `ImageDataset` (images N×C×H×W in the scenario's `value_range`, int64 labels in
[0, num_classes) over the *whole* scenario — class-incremental, one shared head — or None for
unlabelled data). `Task.global_index` holds, for every training row, its position in the stream of
all training samples the scenario ever presents (task 0 first), which is what BinPlay's index codes
are computed from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import torch

from genrep.data.dataset import ImageDataset
from genrep.errors import DataError


@dataclasses.dataclass(frozen=True)
class Task:
    """Task `index` of a scenario. `classes`: the labels present in its training view (sorted);
    `global_index`: int64 (len(train),), chronological sample indices (see the module docstring)."""

    index: int
    name: str
    train: ImageDataset
    test: ImageDataset
    val: ImageDataset | None = None
    classes: tuple[int, ...] = ()
    global_index: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.global_index is not None and len(self.global_index) != len(self.train):
            raise DataError(f"task {self.index}: global_index has {len(self.global_index)} rows but the training view"
                            f" has {len(self.train)}")


@dataclasses.dataclass(frozen=True)
class Scenario:
    """An ordered tuple of tasks over data of one shape. `num_classes`: size of the shared label
    space (None for unlabelled data); `description`: one line for reports."""

    name: str
    tasks: tuple[Task, ...]
    image_shape: tuple[int, int, int]
    value_range: tuple[float, float] = (0.0, 1.0)
    num_classes: int | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.tasks:
            raise DataError(f"scenario {self.name!r} has no tasks")
        for position, task in enumerate(self.tasks):
            if task.index != position:
                raise DataError(f"scenario {self.name!r}: task at position {position} has index {task.index}")
            for view in (task.train, task.test, task.val):
                if view is not None and view.image_shape != tuple(self.image_shape):
                    raise DataError(f"scenario {self.name!r}: task {position} has images {view.image_shape}, "
                                    f"expected {tuple(self.image_shape)}")

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __getitem__(self, index: int) -> Task:
        return self.tasks[index]

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)
