"""Where data files live and how they are fetched: the cache folder, `path=` resolution, and
checksummed, atomic downloads.

Files of source NAME are looked for in `path=` (when given), else in the cache folder
`$GENREP_DATA/NAME` (default `~/.cache/genrep/NAME`); only with `download=True` are missing
files fetched from their canonical URLs, each checked against its published MD5/SHA-256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import tempfile
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from genrep.errors import DataError, SourceMissingError

CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Resource:
    """One file of a data set: its name, the URLs it can be fetched from (tried in order) and its
    checksum as "md5:HEX" or "sha256:HEX"."""

    filename: str
    urls: tuple[str, ...]
    checksum: str


def data_root() -> Path:
    """The cache root: `$GENREP_DATA`, or `~/.cache/genrep` when that is unset."""
    return Path(os.environ.get("GENREP_DATA") or "~/.cache/genrep").expanduser()


def cache_dir(name: str) -> Path:
    return data_root() / name


def file_hash(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, checksum: str, *, label: str | None = None) -> None:
    """Raise DataError unless the file's hash matches `checksum` ("md5:HEX" / "sha256:HEX")."""
    algorithm, expected = checksum.split(":", 1)
    actual = file_hash(path, algorithm)
    if actual != expected:
        raise DataError(f"{label or path}: {algorithm} checksum mismatch (expected {expected}, got {actual});"
                        " the file is corrupted or not the official one: delete it and download again")


def fetch(resource: Resource, directory: Path) -> Path:
    """Download `resource` into `directory` (kept if already there) and return its path.

    The bytes go to a temporary file in the same folder, are checksummed, and only then renamed
    into place, so an interrupted or corrupted download never leaves a file that looks complete.
    """
    from tqdm.auto import tqdm

    dest = directory / resource.filename
    if dest.exists():
        return dest
    directory.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in resource.urls:
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{resource.filename}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=resource.filename) as bar:
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                        bar.update(len(chunk))
            verify(tmp, resource.checksum, label=f"{resource.filename} from {url}")
        except (OSError, http.client.HTTPException) as err:  # URLError and timeouts are OSErrors
            tmp.unlink(missing_ok=True)
            failures.append(f"{url}: {err}")
            continue
        except DataError:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, dest)
        return dest
    raise DataError(f"could not download {resource.filename} ({'; '.join(failures)}); put the file into"
                    f" {directory} by hand or pass path=")


def locate(name: str, resources: Sequence[Resource], *, path=None, download: bool = False,
           hint: str = "") -> Path:
    """The folder holding the files of `name`: `path` if given, else the cache folder when it has
    all `resources`, else the cache folder after downloading them (only with `download=True`).
    Otherwise raise SourceMissingError naming the options (`hint` first, e.g. an install command)."""
    if path is not None:
        root = Path(path).expanduser()
        if not root.exists():
            raise DataError(f"{name}: path {root} does not exist")
        return root
    cache = cache_dir(name)
    if all((cache / r.filename).exists() for r in resources):
        return cache
    if download:
        for r in resources:
            fetch(r, cache)
        return cache
    files = ", ".join(r.filename for r in resources)
    raise SourceMissingError(f"{name} is not available offline: {hint}pass path=DIR (a folder with {files}),"
                             f" or download=True to fetch it into {cache}")


def source_status(name: str, resources: Sequence[Resource], *, offline: str | None = None,
                  install: str | None = None) -> str:
    """The `genrep data list` line of a source: `offline` when an offline copy is installed, else
    whether the cache has the files, else how to get them (`install`: the install command)."""
    if offline:
        return offline
    cache = cache_dir(name)
    if all((cache / r.filename).exists() for r in resources):
        return f"cached in {cache}"
    return f"missing: {install} (or download=True)" if install else "download (needs network) or path="


def require(root: Path, *candidates: str, name: str) -> Path:
    """The first of `candidates` (file or folder names) that exists in `root`, else DataError."""
    for candidate in candidates:
        if (root / candidate).exists():
            return root / candidate
    raise DataError(f"{name}: {' or '.join(candidates)} not found in {root}")


def split_path(path, split: str, name: str) -> Path:
    """For local-only sources: `path` is one file/folder used for every split, or a mapping
    split -> file/folder (e.g. {"train": "a.npz", "test": "b.npz"})."""
    if path is None:
        raise DataError(f"{name} needs path= (a file/folder, or a mapping split -> file/folder)")
    if isinstance(path, Mapping):
        if split not in path:
            raise DataError(f"{name}: no path for split {split!r}; path= gives {', '.join(map(str, path))}")
        path = path[split]
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise DataError(f"{name}: path {resolved} does not exist")
    return resolved
