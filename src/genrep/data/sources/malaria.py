"""NIH/LHNCBC Malaria cell images (Rajaraman et al. 2018, PeerJ 6:e4568): 27,558 RGB crops of
thin-smear red blood cells, 13,779 in `Parasitized/` and 13,779 in `Uninfected/`, of varying
sizes (about 100-150 px a side). Used for the joint-diffusion counterfactuals (thesis Sec. 6.6.6:
negative = uninfected, positive = parasitised).

Read from `path=`: the extracted folder (holding `Parasitized/` and `Uninfected/`, or
`cell_images/Parasitized/` ...), the official `cell_images.zip`, or a folder holding that zip;
else from the cache `$GENREP_DATA/malaria` (`cell_images.zip` or the extracted `cell_images/`);
else downloaded from `URL` with `download=True`. NIH publishes no checksum: the download is
checked against the SHA-256 that TensorFlow Datasets records for this file (353,452,851 bytes).
Only image files directly inside the two class folders are read (the release's `Thumbs.db` and
hidden files are skipped).

Labels: 0 = uninfected, 1 = parasitized (`class_names` "uninfected", "parasitized"). Every image
is resized to `size`×`size` (bilinear; the cells are not square, so the aspect ratio is not kept).

Splits: the release has none, so "train" and "test" are a class-stratified split made here: in
each class the files are sorted by name and a `split_seed`-seeded permutation (torch.randperm)
puts round(`test_fraction` × n) of them into "test", the rest into "train". The same files give
the same split on every machine. (The option is `split_seed`, as for `calorimeter`, because
`load_dataset`'s own `seed=` is taken for `limit=`/validation holdouts and never reaches a source.)

Cache: decoding 27k PNGs takes a while, so the first load of a `size` writes all decoded, resized
images (uint8, with their file names and labels) next to the data, as `cell_images.<size>px.npz`
beside the folder or `cell_images.zip.<size>px.npz` beside the zip (written atomically), and
later loads of that size read it, whatever the split, `test_fraction` or `split_seed`. The images
themselves are then not read again: delete the .npz when they change. When that folder is not
writable a warning is given and nothing is cached; a damaged .npz is rebuilt.

Images float32 N×3×size×size in [0, 1]; labels int64; each split sorted by file name.
"""

from __future__ import annotations

import numbers
import warnings
from pathlib import Path

import numpy as np
import torch

from genrep.data.archive import Tree
from genrep.data.convert import IMAGE_EXTENSIONS, decode_image, is_image_name, uint8_to_tensor
from genrep.data.dataset import ImageDataset
from genrep.data.download import Resource, cache_dir, locate, source_status
from genrep.data.registry import register_source
from genrep.errors import DataError, GenrepWarning, OutputError, SourceMissingError
from genrep.utils.files import write_npz
from genrep.utils.safe_load import load_arrays

NAME = "malaria"
URL = "https://data.lhncbc.nlm.nih.gov/public/Malaria/cell_images.zip"
TOP, ARCHIVE = "cell_images", "cell_images.zip"
# NIH publishes no checksum; this is the SHA-256 TensorFlow Datasets recorded (353,452,851 bytes)
RESOURCE = Resource(ARCHIVE, (URL,), "sha256:0a949556b2414159b5100192609805376654c4266d8d187be9b1922fad43c668")
FOLDERS = ("Uninfected", "Parasitized")  # label = position
CLASS_NAMES = ["uninfected", "parasitized"]
SPLITS = ("train", "test")
GET = f"pass download=True to fetch {URL}, or path= to that zip or the folder extracted from it"


def has_class_folders(folder: Path) -> bool:
    return any((folder / name).is_dir() for name in FOLDERS)


def extracted(folder: Path) -> bool:
    """Whether `folder` holds the extracted release (class folders, or `cell_images/`)."""
    return folder.is_dir() and (has_class_folders(folder) or (folder / TOP).is_dir())


def find_root(path, download: bool) -> Path:
    """`path`, else the cache folder (zip or extracted), else the cache after downloading."""
    cache = cache_dir(NAME)
    if path is not None:
        root = Path(path).expanduser()
        if not root.exists():
            raise DataError(f"{NAME}: path {root} does not exist; {GET}")
        return root
    if not (cache / ARCHIVE).exists() and extracted(cache):
        return cache
    if not download and not (cache / ARCHIVE).exists():
        raise SourceMissingError(f"{NAME} is not available offline: {GET} (or put either into {cache})")
    return locate(NAME, [RESOURCE], download=download)


def open_tree(root: Path) -> Tree:
    """The release below `root`: `root` itself when it holds the class folders (whatever its
    name), else `root/cell_images/`, the zip `root` or `root/cell_images.zip`."""
    if root.is_dir() and has_class_folders(root):
        root = root.resolve()
        return Tree(root, root.name, ARCHIVE, name=NAME)
    if root.is_dir() and not (root / TOP).is_dir() and not (root / ARCHIVE).is_file():
        raise DataError(f"{NAME}: {root} holds neither Parasitized/ and Uninfected/, nor {TOP}/, nor {ARCHIVE};"
                        f" {GET}")
    return Tree(root, TOP, ARCHIVE, name=NAME)


def cache_file(tree: Tree, size: int) -> Path:
    return tree.path.with_name(f"{tree.path.name}.{size}px.npz")


def list_images(tree: Tree) -> list[str]:
    """The image files (relative names `Class/file.png`) of both class folders, sorted."""
    where = tree.path if tree.kind == "folder" else f"{tree.path} (under {tree.top}/)"
    names = tree.names()
    images = []
    for folder in FOLDERS:
        inside = [n for n in names if n.startswith(folder + "/") and n.count("/") == 1]
        if not inside and not (tree.kind == "folder" and (tree.path / folder).is_dir()):
            raise DataError(f"{NAME}: class folder {folder}/ is missing in {where}; expected Parasitized/ and"
                            f" Uninfected/ as in {URL}")
        found = sorted(n for n in inside if is_image_name(n))
        if not found:
            raise DataError(f"{NAME}: class folder {folder}/ in {where} has no images"
                            f" ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        images += found
    return images


def label_of(name: str) -> int:
    return FOLDERS.index(name.split("/", 1)[0])


def decode_all(tree: Tree, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 N×size×size×3 pixels, int64 labels, file names) of every image of the release."""
    from tqdm.auto import tqdm

    files = list_images(tree)
    pixels = np.empty((len(files), size, size, 3), dtype=np.uint8)
    names = []
    where = (lambda n: str(tree.path / n)) if tree.kind == "folder" else (lambda n: f"{tree.path}:{tree.top}/{n}")
    items = tqdm(tree.read(files), total=len(files), desc=f"{NAME}: decoding", unit="img",
                 disable=len(files) < 2000)
    for i, (name, data) in enumerate(items):
        pixels[i] = np.asarray(decode_image(data, "RGB", label=where(name), size=size))
        names.append(name)
    labels = np.array([label_of(n) for n in names], dtype=np.int64)
    return pixels, labels, np.array(names)


def read_cache(file: Path, size: int):
    """(pixels, labels, names) from the .npz cache, or None (with a warning) when it is damaged."""
    try:
        arrays = load_arrays(file, label=f"{NAME} cache {file}")
        pixels, labels, names = arrays["images"], arrays["labels"], arrays["names"]
    except (DataError, KeyError) as err:
        warnings.warn(f"{NAME}: cache {file} is unreadable ({err}); rebuilding it", GenrepWarning, stacklevel=3)
        return None
    n = len(pixels)
    if (pixels.dtype != np.uint8 or pixels.shape[1:] != (size, size, 3) or n == 0 or labels.shape != (n,)
            or names.shape != (n,) or names.dtype.kind != "U" or not np.isin(labels, (0, 1)).all()):
        warnings.warn(f"{NAME}: cache {file} does not hold {size}×{size} images with labels and names; rebuilding"
                      " it", GenrepWarning, stacklevel=3)
        return None
    return pixels, labels.astype(np.int64), names


def cached_arrays(tree: Tree, size: int):
    """The decoded release at `size`, from the .npz cache or decoded now (and then cached)."""
    file = cache_file(tree, size)
    if file.is_file():
        cached = read_cache(file, size)
        if cached is not None:
            return cached
    pixels, labels, names = decode_all(tree, size)
    try:
        write_npz(file, images=pixels, labels=labels, names=names)
    except OutputError as err:
        warnings.warn(f"{NAME}: decoded images not cached ({err})", GenrepWarning, stacklevel=3)
    return pixels, labels, names


def stratified_split(names, labels, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Row indices of "train" and "test": per class (in label order), the rows sorted by name and
    a seeded permutation sends round(test_fraction × n) of them to "test". Each split is returned
    in name order; the result depends only on the (name, label) pairs, not on their order."""
    g = torch.Generator().manual_seed(seed)
    is_test = np.zeros(len(names), dtype=bool)
    for label in range(len(FOLDERS)):
        rows = sorted(np.flatnonzero(np.asarray(labels) == label), key=lambda i: names[i])
        n_test = round(test_fraction * len(rows))
        for k in torch.randperm(len(rows), generator=g)[:n_test].tolist():
            is_test[rows[k]] = True
    by_name = sorted(range(len(names)), key=lambda i: names[i])
    return {"train": np.array([i for i in by_name if not is_test[i]], dtype=np.int64),
            "test": np.array([i for i in by_name if is_test[i]], dtype=np.int64)}


def check_options(size, test_fraction, seed) -> None:
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise DataError(f"{NAME}: size must be a positive integer (the side images are resized to), got {size!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) or not 0 < test_fraction < 1:
        raise DataError(f"{NAME}: test_fraction must be a number in (0, 1), got {test_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise DataError(f"{NAME}: split_seed must be an integer, got {seed!r}")


def load(split: str, *, path=None, download: bool = False, size: int = 32, test_fraction: float = 0.2,
         split_seed: int = 0) -> ImageDataset:
    if split not in SPLITS:
        raise DataError(f"{NAME} has no split {split!r}; valid: {', '.join(SPLITS)}")
    check_options(size, test_fraction, split_seed)
    tree = open_tree(find_root(path, download))
    pixels, labels, names = cached_arrays(tree, int(size))
    rows = stratified_split(names, labels, float(test_fraction), int(split_seed))[split]
    if len(rows) == 0:
        counts = np.bincount(labels, minlength=len(FOLDERS)).tolist()
        raise DataError(f"{NAME}: test_fraction={test_fraction} leaves the {split!r} split empty"
                        f" ({counts[0]} uninfected, {counts[1]} parasitized images)")
    return ImageDataset(uint8_to_tensor(pixels[rows], "NHWC"), torch.from_numpy(labels[rows]), name=NAME,
                        split=split, class_names=list(CLASS_NAMES))


def status() -> str:
    cache = cache_dir(NAME)
    if not (cache / ARCHIVE).exists() and extracted(cache):
        return f"cached in {cache}"
    return source_status(NAME, [RESOURCE])


register_source(NAME, load=load, status=status,
                description="NIH malaria cell images, uninfected (0) / parasitized (1), resized to size² RGB;"
                            " seeded stratified train/test split (download or path=)",
                splits=SPLITS)
