"""`DataSpec`: what a model needs to know about its data (shape, range, labels/conditions), without the data."""

from __future__ import annotations

import dataclasses

from genrep.data.dataset import ImageDataset


@dataclasses.dataclass
class DataSpec:
    name: str
    image_shape: tuple[int, int, int]
    value_range: tuple[float, float]
    num_classes: int | None = None
    cond_dim: int | None = None

    @classmethod
    def of(cls, data: ImageDataset) -> DataSpec:
        return cls(
            name=data.name,
            image_shape=tuple(data.image_shape),
            value_range=tuple(data.value_range),
            num_classes=data.num_classes,
            cond_dim=None if data.conditions is None else int(data.conditions.shape[1]),
        )
