"""CelebA aligned faces: 202,599 images with 40 binary attributes, split train/valid/test
(162,770 / 19,867 / 19,962) by the official `list_eval_partition.txt`.

Read from `img_align_celeba/` (or `img_align_celeba.zip`), `list_eval_partition.txt` and
`list_attr_celeba.txt` in `path=DIR`, else in the cache `$GENREP_DATA/celeba`, else downloaded
from the official Google Drive files with `download=True` (MD5 checked). Each 178×218 image is
center-cropped to `crop`×`crop` (140) and resized to `size`×`size` (64), as in the thesis.
Note the memory: the full train split at 64×64 is 162,770×3×64×64 float32 ≈ 8 GB.

Images float32 N×3×size×size in [0, 1]; no labels; conditions float32 N×40 in {0, 1} (the
attributes, names in `condition_names`).
"""

from __future__ import annotations

import numpy as np
import torch

from genrep.data.archive import Tree
from genrep.data.convert import decode_image, stack_images
from genrep.data.dataset import ImageDataset
from genrep.data.download import Resource, locate, require, source_status
from genrep.data.registry import register_source
from genrep.errors import DataError

DRIVE = "https://drive.usercontent.google.com/download?export=download&confirm=t&id="
RESOURCES = [
    Resource("img_align_celeba.zip", (DRIVE + "0B7EVK8r0v71pZjFTYXZWM3FlRnM",), "md5:00d2c5bc6d35e252742224ab0c1e8fcb"),
    Resource("list_attr_celeba.txt", (DRIVE + "0B7EVK8r0v71pblRyaVFSWGxPY0U",), "md5:75e246fa4810816ffd6ee81facbd244c"),
    Resource("list_eval_partition.txt", (DRIVE + "0B7EVK8r0v71pY0NSMzRuSXJEVkk",),
             "md5:d32c9cbf5e040fd4025c592c306e6668"),
]
SPLITS = {"train": "0", "valid": "1", "test": "2"}


def read_table(path, *, skip: int) -> list[list[str]]:
    try:
        lines = path.read_text().splitlines()[skip:]
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err})") from err
    return [line.split() for line in lines if line.strip()]


def read_attributes(path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Attribute names and {file name: 40 values in {0, 1}} from list_attr_celeba.txt (a count
    line, a line of names, then `file v1 ... v40` with v in {-1, 1})."""
    header = read_table(path, skip=1)
    if not header:
        raise DataError(f"{path}: empty attribute list")
    names, rows = header[0], header[1:]
    table = {}
    for row in rows:
        if len(row) != len(names) + 1 or not set(row[1:]) <= {"-1", "1"}:
            raise DataError(f"{path}: expected `file` and {len(names)} values -1/1 per line, got {' '.join(row)[:80]}")
        table[row[0]] = (np.array(row[1:], dtype=np.float32) + 1) / 2
    return names, table


def center_crop_resize(image, crop: int, size: int, *, label: str):
    from PIL import Image

    width, height = image.size
    if crop > min(width, height):
        raise DataError(f"{label}: image is {width}×{height}, smaller than crop={crop}")
    left, top = (width - crop) // 2, (height - crop) // 2
    return image.crop((left, top, left + crop, top + crop)).resize((size, size), Image.BILINEAR)


def load(split: str, *, path=None, download: bool = False, crop: int = 140, size: int = 64) -> ImageDataset:
    if not 1 <= size <= crop:
        raise DataError(f"celeba: need 1 <= size <= crop, got size={size}, crop={crop}")
    root = locate("celeba", RESOURCES, path=path, download=download)
    partition = read_table(require(root, "list_eval_partition.txt", name="celeba"), skip=0)
    names, attributes = read_attributes(require(root, "list_attr_celeba.txt", name="celeba"))
    files = [row[0] for row in partition if len(row) == 2 and row[1] == SPLITS[split]]
    if not files:
        raise DataError(f"celeba: no images of split {split!r} in {root / 'list_eval_partition.txt'}")
    missing = [f for f in files if f not in attributes]
    if missing:
        raise DataError(f"celeba: {len(missing)} images of {split!r} (e.g. {missing[0]}) have no attributes in"
                        f" {root / 'list_attr_celeba.txt'}")
    tree = Tree(root, "img_align_celeba", "img_align_celeba.zip", name="celeba")
    images = [center_crop_resize(decode_image(data, "RGB", label=f"{tree.path}:{n}"), crop, size, label=n)
              for n, data in tree.read(files)]
    conditions = torch.from_numpy(np.stack([attributes[f] for f in files]))
    return ImageDataset(stack_images(images, label=str(tree.path)), conditions=conditions, name="celeba",
                        split=split, condition_names=names)


register_source("celeba", load=load, status=lambda: source_status("celeba", RESOURCES),
                description="CelebA aligned faces cropped 140 → 64×64 with 40 attributes (download or path=)",
                splits=tuple(SPLITS))
