"""Reader for the idx files of MNIST and Fashion-MNIST (plain or gzip-compressed).

An idx file is a 4-byte magic number (0, 0, type 0x08 = uint8, number of dimensions), one
big-endian uint32 per dimension, then the values. The reader checks the magic number, the
expected dimensions and the exact length, so a truncated or foreign file fails with a DataError
naming it instead of yielding garbage.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from genrep.data.convert import uint8_to_tensor
from genrep.data.dataset import ImageDataset
from genrep.data.download import Resource, locate, require
from genrep.errors import DataError

UBYTE = 0x08
PREFIX = {"train": "train", "test": "t10k"}


def read_bytes(path: Path) -> bytes:
    """The content of `path`, decompressed when its name ends in .gz."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except FileNotFoundError as err:
        raise DataError(f"{path}: file not found") from err
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupted or truncated gzip file ({err}); delete it and fetch it again") from err


def parse_idx(content: bytes, ndim: int, *, label: str) -> np.ndarray:
    """The uint8 array of idx `content` with `ndim` dimensions; `label` names the file in errors."""
    if len(content) < 4 + 4 * ndim:
        raise DataError(f"{label}: truncated idx file ({len(content)} bytes, shorter than its header)")
    if content[:2] != b"\0\0" or content[2] != UBYTE or content[3] != ndim:
        raise DataError(f"{label}: not a uint8 idx file with {ndim} dimensions (magic number {content[:4].hex()},"
                        f" expected 000008{ndim:02x})")
    dims = tuple(int(d) for d in np.frombuffer(content, ">u4", count=ndim, offset=4))
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if len(content) != expected:
        raise DataError(f"{label}: wrong length for an idx file of shape {dims} ({len(content)} bytes,"
                        f" expected {expected}); the file is truncated or corrupted")
    return np.frombuffer(content, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def read_idx_split(root: Path, split: str, *, name: str,
                   content_sha256: dict[str, str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images N×H×W and labels (N,) of `split` ("train"/"test") from the four standard
    files (`train-images-idx3-ubyte[.gz]`, ...) in `root`. With `content_sha256` (file stem ->
    SHA-256 of the decompressed bytes) the content is verified as well."""
    arrays = []
    for kind, ndim in (("images-idx3", 3), ("labels-idx1", 1)):
        stem = f"{PREFIX[split]}-{kind}-ubyte"
        path = require(root, stem + ".gz", stem, name=name)
        content = read_bytes(path)
        if content_sha256 is not None:
            actual = hashlib.sha256(content).hexdigest()
            if actual != content_sha256[stem]:
                raise DataError(f"{path}: sha256 of the decompressed content is {actual}, expected"
                                f" {content_sha256[stem]}; the file is corrupted or not the official one")
        arrays.append(parse_idx(content, ndim, label=str(path)))
    images, labels = arrays
    if len(images) != len(labels):
        raise DataError(f"{name}: {len(images)} images but {len(labels)} labels in {root} ({split})")
    return images, labels


def load_idx_dataset(name: str, split: str, *, offline: Callable[[str], tuple | None],
                     resources: dict[str, list[Resource]], install: str, class_names: list[str],
                     path=None, download: bool = False) -> ImageDataset:
    """The data set of an idx-format source: from `offline(split)` (the installed offline copy's
    uint8 arrays, or None when it is absent) unless `path` is given, else from idx files found
    by `locate` (path=, cache, download=True). Images float32 N×1×H×W in [0, 1]."""
    arrays = offline(split) if path is None else None
    if arrays is None:
        root = locate(name, resources[split], path=path, download=download,
                      hint=f"install the offline copy with `{install}`, ")
        arrays = read_idx_split(root, split, name=name)
    images, labels = arrays
    return ImageDataset(uint8_to_tensor(images, "NHW"), torch.from_numpy(labels.astype(np.int64)),
                        name=name, split=split, class_names=class_names)
