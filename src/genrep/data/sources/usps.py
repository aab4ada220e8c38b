"""USPS handwritten digits 16×16: 7,291 train / 2,007 test.

Read from the bzip2 libsvm files `usps.bz2` (train) / `usps.t.bz2` (test) of the LIBSVM data
page (the files torchvision uses) in `path=DIR`, else in the cache `$GENREP_DATA/usps`, else
downloaded with `download=True` (MD5 checked). Each line is `label index:value ...` with labels
1..10 (mapped to 0..9) and 256 values in [-1, 1] (mapped to [0, 1]; absent indices are 0).

Images float32 N×1×16×16 in [0, 1]; labels int64 0..9.
"""

from __future__ import annotations

import bz2

import numpy as np
import torch

from genrep.data.dataset import ImageDataset
from genrep.data.download import Resource, locate, require, source_status
from genrep.data.registry import register_source
from genrep.errors import DataError

URL = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/"
RESOURCES = {
    "train": Resource("usps.bz2", (URL + "usps.bz2",), "md5:ec16c51db3855ca6c91edd34d0e9b197"),
    "test": Resource("usps.t.bz2", (URL + "usps.t.bz2",), "md5:8ea070ee2aca1ac39742fdd1ef5ed118"),
}
PIXELS = 16 * 16


def parse_libsvm(text: str, *, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Pixels N×256 in [-1, 1] and labels 1..10 of a libsvm-format text."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    pixels = np.zeros((len(lines), PIXELS), dtype=np.float32)
    labels = np.zeros(len(lines), dtype=np.int64)
    for row, tokens in enumerate(lines):
        try:
            labels[row] = int(float(tokens[0]))
            for token in tokens[1:]:
                index, value = token.split(":")
                if not 1 <= int(index) <= PIXELS:
                    raise ValueError(f"index {index}")
                pixels[row, int(index) - 1] = float(value)
        except (ValueError, IndexError) as err:
            raise DataError(f"{label}: line {row + 1} is not `label index:value ...` with indices 1..256"
                            f" ({err})") from err
    return pixels, labels


def load(split: str, *, path=None, download: bool = False) -> ImageDataset:
    resource = RESOURCES[split]
    file = require(locate("usps", [resource], path=path, download=download), resource.filename, name="usps")
    try:
        text = bz2.decompress(file.read_bytes()).decode("ascii")
    except (OSError, EOFError, ValueError) as err:
        raise DataError(f"{file}: corrupted or truncated bzip2 file ({err}); delete it and fetch it again") from err
    pixels, labels = parse_libsvm(text, label=str(file))
    if len(labels) == 0 or labels.min() < 1 or labels.max() > 10:
        raise DataError(f"{file}: expected labels 1..10 on at least one line")
    images = torch.from_numpy((pixels.clip(-1, 1) + 1) / 2).reshape(-1, 1, 16, 16)
    return ImageDataset(images, torch.from_numpy(labels - 1), name="usps", split=split,
                        class_names=[str(d) for d in range(10)])


register_source("usps", load=load, status=lambda: source_status("usps", list(RESOURCES.values())),
                description="USPS handwritten digits 16×16, 7291 train / 2007 test (download or path=)")
