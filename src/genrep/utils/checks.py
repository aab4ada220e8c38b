"""Early input checks with messages that name the expected shape and range."""

from __future__ import annotations

import torch

from genrep.errors import InputError


def check_images(
    x: torch.Tensor,
    *,
    shape: tuple[int, int, int] | None = None,
    value_range: tuple[float, float] | None = None,
    name: str = "images",
    tol: float = 1e-4,
) -> None:
    """Check a batch of images N×C×H×W: float dtype, finite, optional C×H×W and value range."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise InputError(f"{name} must have shape N×C×H×W, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a float tensor, got dtype {x.dtype}")
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        expected = "N×" + "×".join(map(str, shape))
        raise InputError(f"{name} must have shape {expected}, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise InputError(f"{name} contain NaN or infinite values")
    if value_range is not None and x.numel():
        lo, hi = value_range
        xmin, xmax = float(x.min()), float(x.max())
        if xmin < lo - tol or xmax > hi + tol:
            raise InputError(
                f"{name} must lie in [{lo:g}, {hi:g}], got values in [{xmin:.3g}, {xmax:.3g}]"
                " (convert with genrep.data.transforms.to_range)"
            )
