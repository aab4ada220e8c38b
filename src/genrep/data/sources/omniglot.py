"""Omniglot: 32,460 handwritten characters 105×105 (1,623 characters of 50 alphabets, 20 drawers).

"train" is the background set (30 alphabets, 964 characters, 19,280 images) and "test" the
evaluation set (20 alphabets, 659 characters, 13,180 images). Read from the official
`images_background.zip` / `images_evaluation.zip` (or the folders extracted from them) in
`path=DIR`, else in the cache `$GENREP_DATA/omniglot`, else downloaded with `download=True`
(MD5 checked). The label is the character's index across the split's alphabets (alphabets
and characters in sorted order); `class_names` are "Alphabet/characterNN".

Images float32 N×1×105×105, binary: 1 = white paper, 0 = ink (as stored in the PNGs).
"""

from __future__ import annotations

import torch

from genrep.data.archive import Tree
from genrep.data.convert import decode_image, stack_images
from genrep.data.dataset import ImageDataset
from genrep.data.download import Resource, locate, source_status
from genrep.data.registry import register_source
from genrep.errors import DataError

URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
FOLDERS = {"train": "images_background", "test": "images_evaluation"}
MD5 = {"images_background": "68d2efa1b9178cc56df9314c21c6e718", "images_evaluation": "6b91aef0f799c5bb55b94e3f2daec811"}
RESOURCES = {split: Resource(f"{top}.zip", (f"{URL}{top}.zip",), f"md5:{MD5[top]}") for split, top in FOLDERS.items()}


def load(split: str, *, path=None, download: bool = False) -> ImageDataset:
    resource, top = RESOURCES[split], FOLDERS[split]
    tree = Tree(locate("omniglot", [resource], path=path, download=download), top, resource.filename,
                name="omniglot")
    files = [n for n in tree.names() if n.lower().endswith(".png") and n.count("/") == 2]
    if not files:
        raise DataError(f"omniglot: no Alphabet/character/*.png images under {top}/ in {tree.path}")
    class_names = sorted({n.rsplit("/", 1)[0] for n in files})
    index = {name: i for i, name in enumerate(class_names)}
    images = [decode_image(data, "L", label=f"{tree.path}:{n}") for n, data in tree.read(files)]
    if any(image.size != images[0].size for image in images):
        raise DataError(f"omniglot: images in {tree.path} differ in size; expected 105×105 PNGs")
    labels = torch.tensor([index[n.rsplit("/", 1)[0]] for n in files], dtype=torch.int64)
    return ImageDataset(stack_images(images, label=str(tree.path)), labels, name="omniglot", split=split,
                        class_names=class_names)


register_source("omniglot", load=load, status=lambda: source_status("omniglot", list(RESOURCES.values())),
                description="Omniglot characters 105×105, background (train) / evaluation (test) alphabets")
