"""The model contract shared by every generative model in genrep.

`forward(batch) -> Output`: `batch` is a dict with "x" (images N×C×H×W in the model's
`value_range`), and "y" (int64 labels) / "c" (float conditions) where the data has them.
`Output.loss` is the scalar to minimise; `Output.parts` holds named scalars that get logged.
`sample(n, cond=None)` returns n images in `value_range`.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from genrep.errors import InputError
from genrep.utils.checks import check_images


@dataclasses.dataclass
class Output:
    loss: torch.Tensor
    parts: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


class GenerativeModel(nn.Module):
    """Base class: stores the image shape and value range and checks batches against them."""

    def __init__(self, *, image_shape: tuple[int, int, int], value_range: tuple[float, float] = (0.0, 1.0)):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.value_range = tuple(float(v) for v in value_range)

    def check_batch(self, batch: dict[str, torch.Tensor], *, need_condition: bool = False) -> torch.Tensor:
        """Validate `batch["x"]` (shape, dtype, range) and the condition if one is needed."""
        if not isinstance(batch, dict) or "x" not in batch:
            raise InputError("a batch must be a dict with key 'x' (images) and optionally 'y' / 'c'")
        x = batch["x"]
        check_images(x, shape=self.image_shape, value_range=self.value_range, name="batch['x']")
        if need_condition and batch.get("y") is None and batch.get("c") is None:
            raise InputError(f"{type(self).__name__} is conditional: the batch needs labels 'y' or conditions 'c'")
        return x

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def conditional(self) -> bool:
        """True when the model has a condition embedding (`self.condition`, a ConditionEmbedding)."""
        return getattr(self, "condition", None) is not None

    def sampling_condition(self, n: int, cond: torch.Tensor | None) -> torch.Tensor | None:
        """The condition embedding (n×E) for sampling n images: from `cond` (int64 labels (n,) or
        conditions n×D; labels cycle 0..K−1 when omitted), None for an unconditional model."""
        if self.conditional:
            return self.condition(self.condition.condition_batch(n, cond, self.device))
        if cond is not None:
            raise InputError(f"this {type(self).__name__} is unconditional: call sample(n) without cond")
        return None

    def sample(self, n: int, cond: torch.Tensor | None = None) -> torch.Tensor:
        raise InputError(f"{type(self).__name__} is not a generative model: it has no samples")
