"""Partially labelled data (semi-supervised learning, thesis Sec. 6.6.4) and unlabelled extra domains.

Unlabelled images keep their place in the data set with label −1, which models with a classifier
head skip in their classification loss (genrep.models.joint_diffusion).
"""

from __future__ import annotations

import dataclasses

import torch

from genrep.data.dataset import ImageDataset
from genrep.errors import ConfigError, DataError

UNLABELLED = -1


def labelled_indices(labels: torch.Tensor, share: float, *, balanced: bool = True, seed: int = 0) -> torch.Tensor:
    """Sorted indices of the images that keep their label.

    balanced (default): round(share · n_c) images of every class c (at least one), drawn with a seeded
    permutation per class; balanced=False: int(N · share) images drawn at random over the whole set
    (the reference code's `AppendName`, not class-balanced)."""
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise ConfigError(f"the labelled share must lie in (0, 1], got {share!r}")
    generator = torch.Generator().manual_seed(seed + 104729)
    if share == 1:
        return torch.arange(len(labels))
    if not balanced:
        n = max(1, int(len(labels) * share))
        return torch.randperm(len(labels), generator=generator)[:n].sort().values
    keep = []
    for c in labels.unique(sorted=True):
        rows = (labels == c).nonzero().flatten()
        n = max(1, round(len(rows) * share))
        keep.append(rows[torch.randperm(len(rows), generator=generator)[:n]])
    return torch.cat(keep).sort().values


def mask_labels(data: ImageDataset, share: float, *, balanced: bool = True, seed: int = 0,
                drop_unlabelled: bool = False) -> ImageDataset:
    """`data` with all labels but a `share` of them (see `labelled_indices`) set to −1, or, with
    `drop_unlabelled`, only the labelled images (a classifier trained on the labelled part alone)."""
    if data.labels is None:
        raise DataError(f"{data.name} has no class labels to keep a share of")
    keep = labelled_indices(data.labels, share, balanced=balanced, seed=seed)
    if drop_unlabelled:
        return data.subset(keep)
    labels = torch.full_like(data.labels, UNLABELLED)
    labels[keep] = data.labels[keep]
    return dataclasses.replace(data, labels=labels)


def append_unlabelled(data: ImageDataset, extra: ImageDataset) -> ImageDataset:
    """`data` followed by the images of `extra` with label −1 (the reference code's simultaneous
    domain adaptation: labelled source + unlabelled target in one training set). Image shapes and
    value ranges must match."""
    if extra.image_shape != data.image_shape:
        raise DataError(f"the unlabelled images of {extra.name} are {'×'.join(map(str, extra.image_shape))} but "
                        f"{data.name} is {'×'.join(map(str, data.image_shape))}; set data.image_size so they match")
    if data.labels is None:
        raise DataError(f"{data.name} has no class labels")
    return dataclasses.replace(
        data, images=torch.cat([data.images, extra.images]),
        labels=torch.cat([data.labels, torch.full((len(extra),), UNLABELLED, dtype=torch.int64)]),
        conditions=None, name=f"{data.name}+{extra.name}")
