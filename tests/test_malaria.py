"""The `malaria` source (NIH cell images) on a tiny fake release written here in the official
layout (`cell_images/Parasitized/*.png`, `cell_images/Uninfected/*.png`, Thumbs.db files), as a
folder and as the zip: shapes, labels, the stratified split, the .npz cache, and the errors."""

import hashlib
import io
import random
import zipfile

import pytest
import torch
from PIL import Image

from genrep.data import dataset_names, get_source, load_dataset
from genrep.data.download import Resource
from genrep.data.sources import malaria
from genrep.errors import DataError, GenrepWarning, OutputError, SourceMissingError

RED, BLUE = (200, 40, 30), (40, 60, 190)  # parasitized cells red-ish, uninfected blue-ish
N = 5  # images per class


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    """No test sees the user's cache: $GENREP_DATA points at an empty folder."""
    monkeypatch.setenv("GENREP_DATA", str(tmp_path / "cache"))


def png(size, colour):
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def release(n=N):
    """{relative name under cell_images/: bytes}: n PNGs of different, non-square sizes per class
    and a Thumbs.db in each class folder."""
    files = {}
    for k in range(n):
        files[f"Parasitized/C{k}P_ThinF_cell_{k}.png"] = png((100 + 9 * k, 130 - 7 * k), RED)
        files[f"Uninfected/C{k}N_ThinF_cell_{k}.png"] = png((140 - 8 * k, 105 + 6 * k), BLUE)
    files["Parasitized/Thumbs.db"] = files["Uninfected/Thumbs.db"] = b"\xd0\xcf\x11\xe0 not an image"
    return files


def write_folder(root, files=None):
    for name, data in (files or release()).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_zip(file, files=None):
    items = list((files or release()).items())
    random.Random(1).shuffle(items)  # archive order is not name order
    file.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(file, "w") as archive:
        archive.writestr("cell_images/", b"")
        for name, data in items:
            archive.writestr(f"cell_images/{name}", data)
    return file


def both(data):
    return torch.cat([data["train"].images, data["test"].images]), torch.cat([data["train"].labels,
                                                                               data["test"].labels])


def load_both(**options):
    return {split: load_dataset("malaria", split, **options) for split in ("train", "test")}


def test_registered():
    assert "malaria" in dataset_names()
    assert get_source("malaria").splits == ("train", "test")


def test_folder_shapes_range_and_labels(tmp_path):
    write_folder(tmp_path / "cell_images")
    data = load_both(path=tmp_path)  # a folder holding cell_images/
    assert len(data["train"]) == 8 and len(data["test"]) == 2  # round(0.2 × 5) = 1 test image per class
    for split, part in data.items():
        assert part.images.shape[1:] == (3, 32, 32) and part.images.dtype == torch.float32
        assert 0 <= part.images.min() and part.images.max() <= 1
        assert part.class_names == ["uninfected", "parasitized"] and part.split == split
        assert torch.bincount(part.labels, minlength=2).tolist() == [len(part) // 2] * 2
        red = part.images[:, 0].mean((1, 2)) > part.images[:, 2].mean((1, 2))
        assert torch.equal(red, part.labels == 1)  # the red cells in Parasitized/ are label 1
        assert torch.allclose(part.images[part.labels == 1][:, :, 5, 5], torch.tensor(RED) / 255)
    small = load_dataset("malaria", "test", path=tmp_path / "cell_images", size=12)  # the folder itself
    assert small.images.shape == (2, 3, 12, 12)
    (tmp_path / "cell_images").rename(tmp_path / "renamed")  # the class folders' parent may have any name
    assert torch.equal(load_dataset("malaria", "test", path=tmp_path / "renamed").images, data["test"].images)


def test_zip_equals_folder(tmp_path):
    files = release()
    folder = load_both(path=write_folder(tmp_path / "a" / "cell_images", files))
    archive = write_zip(tmp_path / "b" / "cell_images.zip", files)
    for path in (archive, archive.parent):  # the zip, or a folder holding it
        zipped = load_both(path=path)
        for split in ("train", "test"):
            assert torch.equal(zipped[split].images, folder[split].images)
            assert torch.equal(zipped[split].labels, folder[split].labels)


def test_split_is_stratified_deterministic_disjoint_and_complete():
    names = [f"Uninfected/u{k:02d}.png" for k in range(20)] + [f"Parasitized/p{k:02d}.png" for k in range(12)]
    labels = [0] * 20 + [1] * 12
    split = malaria.stratified_split(names, labels, 0.25, seed=3)
    test = sorted(names[i] for i in split["test"])
    train = sorted(names[i] for i in split["train"])
    assert not set(test) & set(train) and sorted(test + train) == sorted(names)
    assert sum(n.startswith("Uninfected") for n in test) == 5 and sum(n.startswith("Parasitized") for n in test) == 3
    assert [names[i] for i in split["test"]] == sorted(test)  # each split in name order
    pairs = list(zip(names, labels))
    random.Random(0).shuffle(pairs)  # the same files listed in another order: the same split
    shuffled = malaria.stratified_split([n for n, _ in pairs], [y for _, y in pairs], 0.25, seed=3)
    assert sorted(pairs[i][0] for i in shuffled["test"]) == test
    other = malaria.stratified_split(names, labels, 0.25, seed=4)
    assert sorted(names[i] for i in other["test"]) != test
    # pinned: the split of these names must not change between versions or machines
    assert test == ["Parasitized/p03.png", "Parasitized/p08.png", "Parasitized/p11.png", "Uninfected/u01.png",
                    "Uninfected/u03.png", "Uninfected/u06.png", "Uninfected/u07.png", "Uninfected/u12.png"]


def test_split_options_on_the_loaded_data(tmp_path):
    write_folder(tmp_path / "cell_images")
    images, labels = both(load_both(path=tmp_path))
    again = load_both(path=tmp_path)
    assert torch.equal(again["test"].images, load_dataset("malaria", "test", path=tmp_path).images)
    for options, per_class in (({"test_fraction": 0.4}, 2), ({"split_seed": 5}, 1)):
        part = load_both(path=tmp_path, **options)
        other_images, other_labels = both(part)
        assert torch.equal(torch.sort(other_images.flatten(1).sum(1)).values,
                           torch.sort(images.flatten(1).sum(1)).values)  # the same 10 images, split otherwise
        assert torch.bincount(part["test"].labels).tolist() == [per_class, per_class]
        assert sorted(other_labels.tolist()) == sorted(labels.tolist())
    val = load_dataset("malaria", "val", path=tmp_path, validation_fraction=0.25)
    assert len(val) == 2 and val.split == "val"


def test_decoded_images_are_cached_and_reused(tmp_path):
    root = write_folder(tmp_path / "cell_images")
    first = load_both(path=tmp_path)
    cache = tmp_path / "cell_images.32px.npz"
    assert cache.is_file() and not list(tmp_path.glob(".*.tmp"))  # written atomically, no leftovers
    for file in root.rglob("*.png"):
        file.unlink()  # the images are gone: only the cache can answer
    second = load_both(path=tmp_path, test_fraction=0.2)
    for split in ("train", "test"):
        assert torch.equal(second[split].images, first[split].images)
        assert torch.equal(second[split].labels, first[split].labels)
    with pytest.raises(DataError, match="Uninfected/ in .* has no images"):  # another size is not cached
        load_dataset("malaria", path=tmp_path, size=16)
    archive = write_zip(tmp_path / "z" / "cell_images.zip")
    load_dataset("malaria", path=archive)
    assert (tmp_path / "z" / "cell_images.zip.32px.npz").is_file()


def test_a_damaged_cache_is_rebuilt_and_an_unwritable_one_skipped(tmp_path, monkeypatch):
    write_folder(tmp_path / "cell_images")
    expected = load_dataset("malaria", path=tmp_path).images
    cache = tmp_path / "cell_images.32px.npz"
    cache.write_bytes(b"PK not an npz")
    with pytest.warns(GenrepWarning, match="rebuilding"):
        assert torch.equal(load_dataset("malaria", path=tmp_path).images, expected)
    assert malaria.read_cache(cache, 32) is not None  # rewritten
    cache.unlink()

    def refuse(file, **arrays):
        raise OutputError(f"cannot write {file}: Read-only file system")

    monkeypatch.setattr(malaria, "write_npz", refuse)
    with pytest.warns(GenrepWarning, match="not cached.*Read-only file system"):
        assert torch.equal(load_dataset("malaria", path=tmp_path).images, expected)
    assert not cache.exists()


def test_cache_folder_and_download(tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "malaria"
    with pytest.raises(SourceMissingError, match=f"download=True to fetch {malaria.URL}.*path="):
        load_dataset("malaria")
    assert get_source("malaria").status() == "download (needs network) or path="
    write_folder(cache / "cell_images")  # extracted into the cache by hand
    assert len(load_dataset("malaria", "test")) == 2
    assert get_source("malaria").status() == f"cached in {cache}"
    server = write_zip(tmp_path / "server" / "cell_images.zip")
    sha = hashlib.sha256(server.read_bytes()).hexdigest()
    monkeypatch.setattr(malaria, "RESOURCE", Resource("cell_images.zip", (server.as_uri(),), f"sha256:{sha}"))
    monkeypatch.setenv("GENREP_DATA", str(tmp_path / "cache2"))
    assert len(load_dataset("malaria", download=True)) == 8
    assert (tmp_path / "cache2" / "malaria" / "cell_images.zip").is_file()
    assert get_source("malaria").status() == f"cached in {tmp_path / 'cache2' / 'malaria'}"
    server.unlink()
    assert len(load_dataset("malaria", "test")) == 2  # from the cached zip, no download


def test_release_errors(tmp_path):
    with pytest.raises(DataError, match=f"absent does not exist; pass download=True to fetch {malaria.URL}"):
        load_dataset("malaria", path=tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds neither Parasitized/ and Uninfected/, nor cell_images/, nor cell"):
        load_dataset("malaria", path=tmp_path / "empty")
    files = release()
    only_parasitized = {n: d for n, d in files.items() if n.startswith("Parasitized/")}
    write_folder(tmp_path / "one" / "cell_images", only_parasitized)
    with pytest.raises(DataError, match="class folder Uninfected/ is missing"):
        load_dataset("malaria", path=tmp_path / "one")
    write_zip(tmp_path / "one_zip" / "cell_images.zip", only_parasitized)
    with pytest.raises(DataError, match="class folder Uninfected/ is missing in .*cell_images.zip"):
        load_dataset("malaria", path=tmp_path / "one_zip")
    write_folder(tmp_path / "thumbs" / "cell_images", {**only_parasitized, "Uninfected/Thumbs.db": b"x"})
    with pytest.raises(DataError, match="class folder Uninfected/ in .* has no images"):
        load_dataset("malaria", path=tmp_path / "thumbs")
    write_folder(tmp_path / "bad" / "cell_images", {**files, "Parasitized/bad.png": b"not a png"})
    with pytest.raises(DataError, match="cell_images/Parasitized/bad.png: cannot decode image"):
        load_dataset("malaria", path=tmp_path / "bad")
    write_zip(tmp_path / "bad_zip" / "cell_images.zip", {**files, "Parasitized/bad.png": b"not a png"})
    with pytest.raises(DataError, match=r"cell_images.zip:cell_images/Parasitized/bad.png: cannot decode image"):
        load_dataset("malaria", path=tmp_path / "bad_zip")
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "cell_images.zip").write_bytes(b"PK truncated")
    with pytest.raises(DataError, match="corrupted or truncated archive"):
        load_dataset("malaria", path=tmp_path / "cut")


@pytest.mark.parametrize("options, message", [
    ({"size": 0}, "size must be a positive integer"),
    ({"size": 2.5}, "size must be a positive integer"),
    ({"size": True}, "size must be a positive integer"),
    ({"test_fraction": 0}, r"test_fraction must be a number in \(0, 1\)"),
    ({"test_fraction": 1.0}, r"test_fraction must be a number in \(0, 1\)"),
    ({"test_fraction": float("nan")}, r"test_fraction must be a number in \(0, 1\)"),
    ({"test_fraction": "0.2"}, r"test_fraction must be a number in \(0, 1\)"),
    ({"split_seed": 1.5}, "split_seed must be an integer"),
    ({"test_fraction": 0.05}, "test_fraction=0.05 leaves the 'test' split empty"),
    ({"seeed": 1}, "does not take the option seeed=1"),
])
def test_option_errors(tmp_path, options, message):
    write_folder(tmp_path / "cell_images")
    with pytest.raises(DataError, match=message):
        load_dataset("malaria", "test", path=tmp_path, **options)
