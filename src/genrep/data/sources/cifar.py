"""CIFAR-10 and CIFAR-100: 60,000 colour images 32×32 (50,000 train / 10,000 test).

Read from the official python version: `cifar-10-python.tar.gz` / `cifar-100-python.tar.gz`
(or the folder `cifar-10-batches-py/` / `cifar-100-python/` extracted from it) in `path=DIR`,
else in the cache `$GENREP_DATA/cifar10` (`cifar100`), else downloaded with `download=True`
(MD5 checked). The batches are pickles, loaded only through the restricted unpickler.

Images float32 N×3×32×32 in [0, 1]; labels int64 (CIFAR-100: the 100 fine classes).
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import torch

from genrep.data import safe_pickle
from genrep.data.archive import Tree
from genrep.data.convert import uint8_to_tensor
from genrep.data.dataset import ImageDataset
from genrep.data.download import Resource, locate, source_status
from genrep.data.registry import register_source
from genrep.errors import DataError

URL = "https://www.cs.toronto.edu/~kriz/"


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    resource: Resource
    top: str  # folder inside the archive
    batches: dict[str, tuple[str, ...]]
    meta: str
    labels_key: str
    names_key: str


VARIANTS = {
    "cifar10": Variant(
        "cifar10", Resource("cifar-10-python.tar.gz", (URL + "cifar-10-python.tar.gz",),
                            "md5:c58f30108f718f92721af3b95e74349a"),
        "cifar-10-batches-py", {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        "batches.meta", "labels", "label_names"),
    "cifar100": Variant(
        "cifar100", Resource("cifar-100-python.tar.gz", (URL + "cifar-100-python.tar.gz",),
                             "md5:eb9058c3a382ffc7106e4002c42a8d85"),
        "cifar-100-python", {"train": ("train",), "test": ("test",)}, "meta", "fine_labels", "fine_label_names"),
}


def read_cifar(variant: Variant, split: str, *, path=None, download: bool = False) -> ImageDataset:
    root = locate(variant.name, [variant.resource], path=path, download=download)
    tree = Tree(root, variant.top, variant.resource.filename, name=variant.name)
    wanted = variant.batches[split] + (variant.meta,)
    files = {n: safe_pickle.load(io.BytesIO(data), label=f"{tree.path}:{n}") for n, data in tree.read(wanted)}
    try:
        images = np.concatenate([np.asarray(files[b]["data"], dtype=np.uint8) for b in variant.batches[split]])
        labels = np.concatenate([np.asarray(files[b][variant.labels_key], dtype=np.int64)
                                 for b in variant.batches[split]])
        class_names = [str(n) for n in files[variant.meta][variant.names_key]]
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{tree.path}: not an official CIFAR python batch ({err!r} missing or malformed)") from err
    if images.ndim != 2 or images.shape[1] != 3 * 32 * 32 or len(images) != len(labels):
        raise DataError(f"{tree.path}: expected N×3072 pixels and N labels, got {images.shape} and {labels.shape}")
    return ImageDataset(uint8_to_tensor(images.reshape(-1, 3, 32, 32)), torch.from_numpy(labels),
                        name=variant.name, split=split, class_names=class_names)


for _variant in VARIANTS.values():
    register_source(
        _variant.name,
        load=lambda split, _v=_variant, **options: read_cifar(_v, split, **options),
        status=lambda _v=_variant: source_status(_v.name, [_v.resource]),
        description=f"CIFAR-{_variant.name[5:]} colour images 32×32, 50000 train / 10000 test (download or path=)",
    )
