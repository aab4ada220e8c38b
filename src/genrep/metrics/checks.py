"""Input checks shared by every metric: feature arrays and image batches."""

from __future__ import annotations

import numpy as np
import torch

from genrep.errors import InputError


def as_features(x, *, name: str = "features", min_rows: int = 2, dtype=torch.float64) -> torch.Tensor:
    """A 2-D N×D float tensor (float64 by default) from a numpy array or tensor, checked: 2-D, at
    least `min_rows` rows, finite values. Raises InputError naming `name` and the expected shape."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a numpy array or torch tensor of shape N×D, got {type(x).__name__}")
    if x.ndim != 2:
        raise InputError(f"{name} must have shape N×D (one feature vector per row), got {tuple(x.shape)}")
    if len(x) < min_rows:
        raise InputError(f"{name} needs at least {min_rows} rows, got {len(x)}")
    if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
        raise InputError(f"{name} must hold numbers, got dtype {x.dtype}")
    x = x.detach().to(dtype)
    if not torch.isfinite(x).all():
        raise InputError(f"{name} contain NaN or infinite values")
    return x


def same_dim(real: torch.Tensor, fake: torch.Tensor) -> None:
    if real.shape[1] != fake.shape[1]:
        raise InputError(f"real and fake features must have the same dimension, got {real.shape[1]} and {fake.shape[1]}")
