"""Conversions shared by the sources: uint8 arrays to float image tensors, and image decoding."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from genrep.errors import DataError

PIL_MODES = {"gray": "L", "rgb": "RGB"}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
PERMUTE = {"NHW": None, "NCHW": (0, 1, 2, 3), "NHWC": (0, 3, 1, 2)}


def to_nchw(x: torch.Tensor, layout: str) -> torch.Tensor:
    """A view of images in `layout` ("NHW", "NHWC" or "NCHW") as N×C×H×W."""
    return x.unsqueeze(1) if layout == "NHW" else x.permute(*PERMUTE[layout])


def uint8_to_tensor(array: np.ndarray, layout: str = "NCHW") -> torch.Tensor:
    """uint8 images in `layout` -> float32 N×C×H×W in [0, 1]."""
    x = torch.from_numpy(np.require(array, requirements=["C", "W"]))
    return to_nchw(x, layout).float().div_(255.0).contiguous()


def pil_mode(mode: str) -> str:
    if mode not in PIL_MODES:
        raise DataError(f"unknown image mode {mode!r}; valid: {', '.join(PIL_MODES)}")
    return PIL_MODES[mode]


def is_image_name(name: str) -> bool:
    """Whether a file name has an image extension (IMAGE_EXTENSIONS) and is not hidden (`.x.png`):
    skips e.g. Windows' Thumbs.db and macOS's `._x.png` files."""
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and Path(base).suffix.lower() in IMAGE_EXTENSIONS


def decode_image(data: bytes | Path, mode: str, *, label: str, size: int | None = None):
    """A PIL image in PIL mode `mode` ("L"/"RGB") from encoded bytes or a file, resized to
    `size`×`size` (bilinear, aspect ratio not kept) when `size` is given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
            image = image.convert(mode)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{label}: cannot decode image ({err}); the file is corrupted or not an image") from err
    return image if size is None else image.resize((size, size), Image.BILINEAR)


def stack_images(images: list, *, label: str, names: list | None = None) -> torch.Tensor:
    """PIL images of one size and mode -> float32 N×C×H×W in [0, 1]. Images of different sizes
    raise DataError naming two of them (by `names`, e.g. their files, else by position)."""
    if not images:
        raise DataError(f"{label}: no images found")
    first = images[0].size
    for i, image in enumerate(images):
        if image.size != first:
            name = (lambda k: str(names[k])) if names is not None else (lambda k: f"image {k}")
            raise DataError(f"{label}: images of different sizes: {name(i)} is {'×'.join(map(str, image.size))}"
                            f" but {name(0)} is {'×'.join(map(str, first))} (width×height); all images must"
                            " have one size")
    arrays = np.stack([np.asarray(image, dtype=np.uint8) for image in images])
    return uint8_to_tensor(arrays, "NHW" if arrays.ndim == 3 else "NHWC")
