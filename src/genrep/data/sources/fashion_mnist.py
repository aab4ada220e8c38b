"""Fashion-MNIST: 70,000 Zalando article images 28×28 in 10 classes (60,000 train / 10,000 test).

Where the data comes from, in order:
1. `path=DIR` holding the four idx files (`train-images-idx3-ubyte[.gz]`, ...), read as they are;
2. the Debian package `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist, MIT). Debian
   recompressed the .gz files, so the SHA-256 of the *decompressed* idx bytes is verified;
3. the cache `$GENREP_DATA/fashion_mnist` (default `~/.cache/genrep/fashion_mnist`);
4. with `download=True`, the canonical Zalando files (MD5 checked).

Images float32 N×1×28×28 in [0, 1]; labels int64 0..9 (names in CLASS_NAMES).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from genrep.data.dataset import ImageDataset
from genrep.data.download import Resource, source_status
from genrep.data.idx import load_idx_dataset, read_idx_split
from genrep.data.registry import register_source

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
INSTALL = "apt-get install dataset-fashion-mnist"
URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
CONTENT_SHA256 = {  # of the decompressed idx bytes (measured on the Debian copy)
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
RESOURCES = {
    split: [Resource(f, (URL + f,), f"md5:{MD5[f]}") for f in MD5 if f.startswith(prefix)]
    for split, prefix in (("train", "train-"), ("test", "t10k-"))
}
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def debian_installed() -> bool:
    return all((DEBIAN_DIR / f).is_file() for f in MD5)


@functools.lru_cache(maxsize=2)
def read_debian(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images N×28×28 and labels of `split` from the Debian copy, content verified."""
    return read_idx_split(directory, split, name="fashion_mnist", content_sha256=CONTENT_SHA256)


def debian_arrays(split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The Debian copy's arrays of `split`, or None when the package is not installed."""
    return read_debian(DEBIAN_DIR, split) if debian_installed() else None


def load(split: str, *, path=None, download: bool = False) -> ImageDataset:
    return load_idx_dataset("fashion_mnist", split, offline=debian_arrays, resources=RESOURCES, install=INSTALL,
                            class_names=CLASS_NAMES, path=path, download=download)


def status() -> str:
    return source_status("fashion_mnist", RESOURCES["train"] + RESOURCES["test"], install=INSTALL,
                         offline="offline (Debian dataset-fashion-mnist)" if debian_installed() else None)


register_source("fashion_mnist", load=load, status=status,
                description="Fashion-MNIST Zalando articles 28×28, 10 classes, 60000 train / 10000 test")
