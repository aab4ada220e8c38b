"""Transforms on whole in-memory data sets (plain torch, no torchvision)."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from genrep.data.dataset import ImageDataset
from genrep.errors import DataError

RANGES = {"01": (0.0, 1.0), "-11": (-1.0, 1.0)}


def parse_range(value_range: tuple[float, float] | str) -> tuple[float, float]:
    if isinstance(value_range, str):
        if value_range not in RANGES:
            raise DataError(f"unknown value range {value_range!r}; valid: {', '.join(RANGES)} or a pair (lo, hi)")
        return RANGES[value_range]
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise DataError(f"value range must have lo < hi, got ({lo}, {hi})")
    return lo, hi


def rescale(x: torch.Tensor, source: tuple[float, float], target: tuple[float, float]) -> torch.Tensor:
    """Affine map of values from range `source` to range `target`."""
    (a, b), (c, d) = source, target
    if (a, b) == (c, d):
        return x
    return (x - a) * ((d - c) / (b - a)) + c


def to_range(data: ImageDataset, value_range: tuple[float, float] | str) -> ImageDataset:
    target = parse_range(value_range)
    return dataclasses.replace(data, images=rescale(data.images, data.value_range, target), value_range=target)


def check_finite(data: ImageDataset) -> None:
    if not torch.isfinite(data.images).all():
        bad = int((~torch.isfinite(data.images)).flatten(1).any(1).sum())
        raise DataError(f"{data.name}: {bad} images contain NaN or infinite values; clean the data first")
    if data.conditions is not None and not torch.isfinite(data.conditions).all():
        raise DataError(f"{data.name}: conditions contain NaN or infinite values; clean the data first")


def random_subset(data: ImageDataset, n: int, *, seed: int = 0) -> ImageDataset:
    if n < 1:
        raise DataError(f"subset size must be >= 1, got {n}")
    if n >= len(data):
        return data
    g = torch.Generator().manual_seed(seed)
    return data.subset(torch.randperm(len(data), generator=g)[:n].sort().values)


def holdout(data: ImageDataset, fraction: float, *, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """Seeded split into (train, validation) with `fraction` of the rows in validation."""
    if not 0 < fraction < 1:
        raise DataError(f"validation fraction must be in (0, 1), got {fraction}")
    n_val = max(1, int(round(len(data) * fraction)))
    g = torch.Generator().manual_seed(seed + 7919)
    perm = torch.randperm(len(data), generator=g)
    train = dataclasses.replace(data.subset(perm[n_val:].sort().values), split="train")
    val = dataclasses.replace(data.subset(perm[:n_val].sort().values), split="val")
    return train, val


def pad_to(data: ImageDataset, size: int) -> ImageDataset:
    """Pad H×W symmetrically to size×size with the low end of the value range (black)."""
    _, _, h, w = data.images.shape
    if h > size or w > size:
        raise DataError(f"cannot pad {h}×{w} images to {size}×{size}: use image_size= to resize")
    top, left = (size - h) // 2, (size - w) // 2
    pad = (left, size - w - left, top, size - h - top)
    images = F.pad(data.images, pad, value=data.value_range[0])
    return dataclasses.replace(data, images=images)


def resize(data: ImageDataset, size: int) -> ImageDataset:
    """Bilinear (antialiased when shrinking) resize to size×size, clamped to the value range."""
    if size < 1:
        raise DataError(f"image size must be >= 1, got {size}")
    if data.images.shape[-2:] == (size, size):
        return data
    images = F.interpolate(data.images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    lo, hi = data.value_range
    return dataclasses.replace(data, images=images.clamp_(lo, hi))
