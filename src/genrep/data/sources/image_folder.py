"""Images in class folders, like torchvision's ImageFolder: `path=ROOT` with one sub-folder per
class (`ROOT/cat/1.png`, `ROOT/dog/a.jpg`, ...). Classes are the sub-folder names in sorted
order (label = position); files are read in sorted order.

Options: `mode="rgb"` (default) or `"gray"`; `size=N` resizes every image to N×N (bilinear),
otherwise all images must share one size. `path` is one root for every split, or a mapping
split -> root (e.g. {"train": "data/train", "test": "data/test"}).

Images float32 N×C×H×W in [0, 1] (C = 3 for rgb, 1 for gray); labels int64.
"""

from __future__ import annotations

import torch

from genrep.data.convert import IMAGE_EXTENSIONS, decode_image, pil_mode, stack_images
from genrep.data.dataset import ImageDataset
from genrep.data.download import split_path
from genrep.data.registry import register_source
from genrep.errors import DataError

EXTENSIONS = IMAGE_EXTENSIONS


def load(split: str, *, path=None, mode: str = "rgb", size: int | None = None) -> ImageDataset:
    root = split_path(path, split, "image_folder")
    if not root.is_dir():
        raise DataError(f"image_folder: {root} is not a folder; pass path=ROOT with one sub-folder per class")
    if size is not None and size < 1:
        raise DataError(f"image_folder: size must be >= 1, got {size}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"image_folder: {root} has no class sub-folders (expected ROOT/<class>/<image>)")
    pil = pil_mode(mode)
    images, labels, first = [], [], None
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in EXTENSIONS)
        if not files:
            raise DataError(f"image_folder: class folder {root / name} has no images ({', '.join(sorted(EXTENSIONS))})")
        for file in files:
            image = decode_image(file, pil, label=str(file), size=size)
            first = first or (file, image.size)
            if image.size != first[1]:
                raise DataError(f"image_folder: {file} is {'×'.join(map(str, image.size))} but {first[0]} is"
                                f" {'×'.join(map(str, first[1]))}; pass size=N to resize all images")
            images.append(image)
            labels.append(label)
    return ImageDataset(stack_images(images, label=str(root)), torch.tensor(labels, dtype=torch.int64),
                        name="image_folder", split=split, class_names=classes)


register_source("image_folder", load=load, status=lambda: "local files (path=ROOT/<class>/<image>)",
                description="your images in class sub-folders (ImageFolder layout), path= per split or one root")
