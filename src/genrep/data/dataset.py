"""In-memory image data set and a fast seeded batch iterator.

Images are float32 tensors N×C×H×W in `value_range` ((0, 1) unless a transform changed it);
labels are int64 (N,) or None; conditions are float32 (N, D) or None (e.g. the 9 particle
attributes of the calorimeter data).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import torch

from genrep.errors import DataError


@dataclasses.dataclass
class ImageDataset(torch.utils.data.Dataset):
    images: torch.Tensor
    labels: torch.Tensor | None = None
    conditions: torch.Tensor | None = None
    name: str = "data"
    split: str = "train"
    value_range: tuple[float, float] = (0.0, 1.0)
    class_names: list[str] | None = None
    condition_names: list[str] | None = None

    def __post_init__(self) -> None:
        x = self.images
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise DataError(f"{self.name}: images must be a float tensor N×C×H×W, got {shape}")
        n = len(x)
        for field in ("labels", "conditions"):
            value = getattr(self, field)
            if value is not None and len(value) != n:
                raise DataError(f"{self.name}: {field} has {len(value)} rows but there are {n} images")
        if self.labels is not None and self.labels.dtype != torch.int64:
            self.labels = self.labels.long()
        if self.conditions is not None:
            if self.conditions.ndim != 2:
                raise DataError(f"{self.name}: conditions must be N×D, got {tuple(self.conditions.shape)}")
            self.conditions = self.conditions.float()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        return self.batch(index)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self) -> int | None:
        if self.labels is None:
            return None
        if self.class_names is not None:
            return len(self.class_names)
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def batch(self, index) -> dict[str, torch.Tensor]:
        """The rows at `index` as a batch dict: x (images), and y (labels) / c (conditions) if present."""
        out = {"x": self.images[index]}
        if self.labels is not None:
            out["y"] = self.labels[index]
        if self.conditions is not None:
            out["c"] = self.conditions[index]
        return out

    def subset(self, index: torch.Tensor | slice) -> ImageDataset:
        """A new data set with the given rows (tensors are indexed, metadata kept)."""
        take = (lambda t: None if t is None else t[index])
        return dataclasses.replace(
            self, images=self.images[index], labels=take(self.labels), conditions=take(self.conditions)
        )

    def describe(self) -> str:
        lo, hi = self.value_range
        parts = [f"{self.name}[{self.split}]: {len(self)} images {'×'.join(map(str, self.image_shape))}",
                 f"range [{lo:g}, {hi:g}]"]
        if self.labels is not None:
            parts.append(f"{self.num_classes} classes")
        if self.conditions is not None:
            parts.append(f"{self.conditions.shape[1]} conditions")
        return ", ".join(parts)


class BatchIterator:
    """Seeded shuffling over an in-memory data set, without per-sample Python overhead.

    The order of epoch e is `torch.randperm(N, generator=seed + e)`, so it depends only on
    (seed, epoch): a run resumed at step s continues with exactly the batches it would have
    seen. With `num_replicas > 1` each rank takes every `num_replicas`-th batch row (DDP).
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, *, shuffle: bool = True,
                 drop_last: bool = True, seed: int = 0, rank: int = 0, num_replicas: int = 1):
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        per_rank = len(dataset) // num_replicas
        if per_rank < (batch_size if drop_last else 1):
            raise DataError(
                f"{dataset.name} has {len(dataset)} images, fewer than one batch of {batch_size}"
                f" per process ({num_replicas} processes): lower train.batch_size"
            )
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.drop_last, self.seed, self.rank, self.num_replicas = drop_last, seed, rank, num_replicas

    def __len__(self) -> int:
        per_rank = len(self.dataset) // self.num_replicas
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        usable = (n // self.num_replicas) * self.num_replicas
        return order[:usable][self.rank :: self.num_replicas]

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of `epoch`, starting at batch number `start_batch` (for resuming)."""
        order = self.order(epoch)
        for b in range(start_batch, len(self)):
            yield self.dataset.batch(order[b * self.batch_size : (b + 1) * self.batch_size])
