"""Whole-data-set transforms and the transform options of load_dataset."""

import pytest
import torch

from genrep.data import ImageDataset, load_dataset
from genrep.data import transforms
from genrep.errors import DataError


def toy(n=20, size=6):
    images = torch.linspace(0, 1, n * size * size).reshape(n, 1, size, size)
    return ImageDataset(images, torch.arange(n) % 3, conditions=torch.arange(n, dtype=torch.float32)[:, None])


def test_to_range_round_trip():
    data = toy()
    there = transforms.to_range(data, "-11")
    assert there.value_range == (-1.0, 1.0)
    assert there.images.min() == -1 and there.images.max() == 1
    assert torch.allclose(2 * data.images - 1, there.images)
    back = transforms.to_range(there, (0, 1))
    assert torch.allclose(back.images, data.images, atol=1e-6) and back.value_range == (0.0, 1.0)
    with pytest.raises(DataError, match="unknown value range"):
        transforms.to_range(data, "0255")
    with pytest.raises(DataError, match="lo < hi"):
        transforms.to_range(data, (1, 0))


def test_pad_to_pads_with_black_in_any_range():
    data = transforms.to_range(toy(size=5), "-11")
    padded = transforms.pad_to(data, 8)
    assert padded.images.shape == (20, 1, 8, 8)
    assert torch.equal(padded.images[:, :, 1:6, 1:6], data.images)  # (8-5)//2 = 1 on top/left
    border = padded.images.clone()
    border[:, :, 1:6, 1:6] = -1
    assert torch.all(border == -1)
    with pytest.raises(DataError, match="cannot pad"):
        transforms.pad_to(data, 4)


def test_resize_shapes_and_range():
    data = toy(size=6)
    for size in (3, 12):
        out = transforms.resize(data, size)
        assert out.images.shape == (20, 1, size, size)
        assert out.images.min() >= 0 and out.images.max() <= 1
        assert torch.allclose(out.images.mean(), data.images.mean(), atol=0.02)
    assert transforms.resize(data, 6) is data
    with pytest.raises(DataError, match=">= 1"):
        transforms.resize(data, 0)


def test_holdout_is_disjoint_complete_and_seeded():
    data = toy(n=50)
    train, val = transforms.holdout(data, 0.2, seed=3)
    ids_train, ids_val = train.conditions[:, 0].tolist(), val.conditions[:, 0].tolist()
    assert len(ids_val) == 10 and len(ids_train) == 40
    assert not set(ids_train) & set(ids_val) and sorted(ids_train + ids_val) == list(range(50))
    assert (train.split, val.split) == ("train", "val")
    again = transforms.holdout(data, 0.2, seed=3)[1].conditions[:, 0].tolist()
    other = transforms.holdout(data, 0.2, seed=4)[1].conditions[:, 0].tolist()
    assert again == ids_val and other != ids_val
    with pytest.raises(DataError, match=r"\(0, 1\)"):
        transforms.holdout(data, 1.0)


def test_random_subset_is_seeded_and_keeps_rows_together():
    data = toy(n=30)
    a = transforms.random_subset(data, 7, seed=1)
    assert len(a) == 7
    assert torch.equal(a.conditions[:, 0].long() % 3, a.labels)  # rows stay aligned
    assert torch.equal(a.images, transforms.random_subset(data, 7, seed=1).images)
    assert not torch.equal(a.images, transforms.random_subset(data, 7, seed=2).images)
    assert transforms.random_subset(data, 100) is data
    with pytest.raises(DataError, match=">= 1"):
        transforms.random_subset(data, 0)


def test_load_dataset_val_split_and_options():
    train = load_dataset("digits", "train", validation_fraction=0.2, seed=5)
    val = load_dataset("digits", "val", validation_fraction=0.2, seed=5)
    assert len(train) + len(val) == 1500 and len(val) == 300
    assert val.split == "val"
    whole = load_dataset("digits", "train")
    rows = {tuple(x.flatten().tolist()) for x in whole.images}
    assert all(tuple(x.flatten().tolist()) in rows for x in val.images[:20])
    with pytest.raises(DataError, match="validation_fraction"):
        load_dataset("digits", "val")
    with pytest.raises(DataError, match="no split 'valid'"):
        load_dataset("digits", "valid")
    small = load_dataset("digits", "test", pad_to=10, image_size=16, limit=50, value_range="-11")
    assert small.images.shape == (50, 1, 16, 16) and small.value_range == (-1.0, 1.0)
    assert small.images.min() >= -1 and small.images.max() <= 1
