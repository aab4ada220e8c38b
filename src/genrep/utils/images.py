"""Image grids as PNG (Pillow only)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genrep.errors import OutputError
from genrep.utils.files import output_file, writing


def make_grid(images: torch.Tensor, *, value_range=(0.0, 1.0), nrow: int | None = None, padding: int = 1,
              upscale: int | None = None) -> np.ndarray:
    """Tile N×C×H×W images (C = 1 or 3) into one uint8 H'×W'×3 array, mapping `value_range` to 0..255.

    Small images (≤ 16 px) are upscaled by nearest neighbour so a grid of 8×8 digits is legible.
    """
    x = images.detach().float().cpu()
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"make_grid needs N×C×H×W images with C in (1, 3), got {tuple(x.shape)}")
    lo, hi = value_range
    x = ((x - lo) / (hi - lo)).clamp(0, 1)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    n, _, h, w = x.shape
    if upscale is None:
        upscale = max(1, 32 // max(h, w))
    if upscale > 1:
        x = x.repeat_interleave(upscale, 2).repeat_interleave(upscale, 3)
        h, w = h * upscale, w * upscale
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    grid = torch.ones(3, ncol * (h + padding) + padding, nrow * (w + padding) + padding)
    for i in range(n):
        r, c = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[:, top : top + h, left : left + w] = x[i]
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def save_grid(images: torch.Tensor, path: str | Path, **kwargs) -> Path:
    """Write a PNG grid of `images` (see `make_grid`) and return its path (parent folders created;
    OutputError "cannot write PATH: reason" when the file system refuses)."""
    grid = Image.fromarray(make_grid(images, **kwargs))
    path = output_file(path)
    with writing(path):
        try:
            grid.save(path)
        except ValueError as err:  # PIL: "unknown file extension: .foo"
            raise OutputError(f"cannot write {path}: {err}; name a .png file") from None
    return path
