"""SVHN (Street View House Numbers), cropped digits 32×32: 73,257 train / 26,032 test.

Read from the official `train_32x32.mat` / `test_32x32.mat` (MATLAB v5, via scipy.io.loadmat)
in `path=DIR`, else in the cache `$GENREP_DATA/svhn`, else downloaded with `download=True`
(MD5 checked). The digit 0 is stored as label 10 and mapped back to 0.

Images float32 N×3×32×32 in [0, 1]; labels int64 0..9.
"""

from __future__ import annotations

import numpy as np
import torch

from genrep.data.convert import uint8_to_tensor
from genrep.data.dataset import ImageDataset
from genrep.data.download import Resource, locate, require, source_status
from genrep.data.registry import register_source
from genrep.errors import DataError

URL = "http://ufldl.stanford.edu/housenumbers/"
RESOURCES = {
    "train": Resource("train_32x32.mat", (URL + "train_32x32.mat",), "md5:e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test": Resource("test_32x32.mat", (URL + "test_32x32.mat",), "md5:eb5a983be6a315427106f1b164d9cef3"),
}


def load(split: str, *, path=None, download: bool = False) -> ImageDataset:
    import scipy.io

    resource = RESOURCES[split]
    file = require(locate("svhn", [resource], path=path, download=download), resource.filename, name="svhn")
    try:
        mat = scipy.io.loadmat(file, variable_names=["X", "y"])
        x, y = mat["X"], mat["y"].reshape(-1)
    except (OSError, ValueError, KeyError, NotImplementedError, scipy.io.matlab.MatReadError) as err:
        raise DataError(f"{file}: not a readable SVHN .mat file with X and y ({err}); delete it and fetch it"
                        " again") from err
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y) or x.dtype != np.uint8:
        raise DataError(f"{file}: X must be uint8 32×32×3×N with N labels y, got {x.dtype} {x.shape}, {y.shape}")
    labels = torch.from_numpy(y.astype(np.int64) % 10)
    return ImageDataset(uint8_to_tensor(x.transpose(3, 2, 0, 1)), labels, name="svhn", split=split,
                        class_names=[str(d) for d in range(10)])


register_source("svhn", load=load, status=lambda: source_status("svhn", list(RESOURCES.values())),
                description="SVHN house-number digits 32×32 colour, 73257 train / 26032 test (download or path=)")
