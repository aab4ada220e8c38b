"""scikit-learn's 8×8 handwritten digits (1,797 images): the embedded default, needs nothing else.

There is no official split: the first 1,500 images (in the order sklearn ships them) are
"train" and the remaining 297 are "test". Pixel values 0..16 are scaled to [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch

from genrep.data.dataset import ImageDataset
from genrep.data.registry import register_source

N_TRAIN = 1500


def load(split: str) -> ImageDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    rows = slice(0, N_TRAIN) if split == "train" else slice(N_TRAIN, None)
    return ImageDataset(images[rows], labels[rows], name="digits", split=split,
                        class_names=[str(d) for d in range(10)])


register_source("digits", load=load, status=lambda: "embedded (scikit-learn)",
                description="8×8 handwritten digits from scikit-learn, 1500 train / 297 test")
