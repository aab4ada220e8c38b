"""Arrays in a NumPy .npz file: `path=FILE.npz` (one file for every split) or a mapping
split -> file (e.g. {"train": "train.npz", "test": "test.npz"}).

Keys:
- `images` (required): N×H×W, N×H×W×C or N×C×H×W (C in 1, 3, 4; channels-first is assumed when
  the second axis has 1, 3 or 4 entries), uint8 0..255 / integers 0..255, or floats in [0, 1];
- `labels` (optional): N integers >= 0;
- `conditions` (optional): N×D (or N) numbers, e.g. physical parameters.

Images float32 N×C×H×W in [0, 1]; NaN/inf values are rejected by `load_dataset`.
"""

from __future__ import annotations

import numpy as np
import torch

from genrep.data.convert import to_nchw, uint8_to_tensor
from genrep.data.dataset import ImageDataset
from genrep.data.download import split_path
from genrep.data.registry import register_source
from genrep.errors import DataError
from genrep.utils.safe_load import load_arrays

CHANNELS = (1, 3, 4)


def images_tensor(x: np.ndarray, *, file) -> torch.Tensor:
    """The `images` array as float32 N×C×H×W in [0, 1]."""
    if x.ndim == 3:
        layout = "NHW"
    elif x.ndim == 4 and (x.shape[1] in CHANNELS or x.shape[3] in CHANNELS):
        layout = "NCHW" if x.shape[1] in CHANNELS else "NHWC"
    else:
        raise DataError(f"{file}: key 'images' must be N×H×W, N×H×W×C or N×C×H×W with C in {CHANNELS},"
                        f" got shape {x.shape}")
    if len(x) == 0:
        raise DataError(f"{file}: key 'images' holds no images")
    if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        if x.min() < 0 or x.max() > 255:
            raise DataError(f"{file}: key 'images' has integers outside 0..255 ({x.min()}..{x.max()})")
        return uint8_to_tensor(x.astype(np.uint8), layout)
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{file}: key 'images' must be uint8 or float, got dtype {x.dtype}")
    lo, hi = np.nanmin(x, initial=0.0), np.nanmax(x, initial=1.0)
    if lo < 0 or hi > 1:
        raise DataError(f"{file}: key 'images' has floats outside [0, 1] ({lo:g}..{hi:g}); scale it to [0, 1]")
    return to_nchw(torch.from_numpy(np.require(x, np.float32, ["C", "W"])), layout).contiguous()


def optional_rows(arrays, key: str, n: int, *, file) -> np.ndarray | None:
    if key not in arrays:
        return None
    value = arrays[key]
    if len(value) != n or value.ndim not in (1, 2) or not np.issubdtype(value.dtype, np.number):
        raise DataError(f"{file}: key '{key}' must be numbers with N={n} rows, got {value.dtype} {value.shape}")
    return value


def load(split: str, *, path=None) -> ImageDataset:
    file = split_path(path, split, "npz")
    arrays = load_arrays(file)
    if "images" not in arrays:
        raise DataError(f"{file}: no key 'images' (N×H×W, N×H×W×C or N×C×H×W); keys: {', '.join(arrays)}")
    images = images_tensor(arrays["images"], file=file)
    n = len(images)
    labels = optional_rows(arrays, "labels", n, file=file)
    if labels is not None and (labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0):
        raise DataError(f"{file}: key 'labels' must be N={n} integers >= 0, got {labels.dtype} {labels.shape}")
    conditions = optional_rows(arrays, "conditions", n, file=file)
    return ImageDataset(
        images,
        None if labels is None else torch.from_numpy(labels.astype(np.int64)),
        None if conditions is None else torch.from_numpy(conditions.astype(np.float32).reshape(n, -1)),
        name="npz", split=split,
    )


register_source("npz", load=load, status=lambda: "local files (path=FILE.npz)",
                description="your arrays in a .npz file (images, optional labels/conditions), path= per split")
