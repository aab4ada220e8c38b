"""Read the files under a top folder (e.g. `img_align_celeba/`) either from that folder or from
the archive it ships in (.zip or .tar.gz), without extracting anything to disk."""

from __future__ import annotations

import contextlib
import zlib
import tarfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from genrep.errors import DataError


class Tree:
    """The files below `top`, from `root/top/`, `root` itself (when it is that folder), the archive
    `root/archive`, or `root` itself when it is an archive file. Names are relative to `top`."""

    def __init__(self, root: Path, top: str, archive: str, *, name: str):
        self.name, self.top = name, top
        if root.is_dir() and root.name == top:
            self.kind, self.path = "folder", root
        elif (root / top).is_dir():
            self.kind, self.path = "folder", root / top
        elif root.is_file() or (root / archive).is_file():
            self.path = root if root.is_file() else root / archive
            self.kind = "zip" if self.path.suffix == ".zip" else "tar"
        else:
            raise DataError(f"{name}: neither {top}/ nor {archive} found in {root}")

    def names(self) -> list[str]:
        """Sorted relative names of all files."""
        if self.kind == "folder":
            return sorted(p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file())
        with self._errors(""):
            if self.kind == "zip":
                with zipfile.ZipFile(self.path) as archive:
                    members = [n for n in archive.namelist() if not n.endswith("/")]
            else:
                with tarfile.open(self.path, "r|*") as archive:
                    members = [m.name for m in archive if m.isfile()]
        prefix = self.top + "/"
        return sorted(n[len(prefix):] for n in members if n.startswith(prefix))

    def read(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """(name, bytes) of the given files: in the given order for folders and zips, in archive
        order for tar files (read in one streaming pass)."""
        wanted = list(names)
        if self.kind == "folder":
            for n in wanted:
                with self._errors(n):
                    data = (self.path / n).read_bytes()
                yield n, data
        elif self.kind == "zip":
            with self._errors(""):
                archive = zipfile.ZipFile(self.path)
            with archive:
                for n in wanted:
                    with self._errors(n):
                        data = archive.read(f"{self.top}/{n}")
                    yield n, data
        else:
            yield from self._read_tar(set(wanted))

    def _read_tar(self, remaining: set[str]) -> Iterator[tuple[str, bytes]]:
        found = []
        with self._errors(""), tarfile.open(self.path, "r|*") as archive:
            for member in archive:
                n = member.name[len(self.top) + 1:]
                if member.isfile() and member.name.startswith(self.top + "/") and n in remaining:
                    remaining.discard(n)
                    found.append((n, archive.extractfile(member).read()))
        if remaining:
            raise DataError(f"{self.name}: {', '.join(sorted(remaining))} not found under {self.top}/ in {self.path}")
        yield from found

    @contextlib.contextmanager
    def _errors(self, member: str):
        """Turn missing members and damaged archives into one-line DataErrors."""
        try:
            yield
        except (KeyError, FileNotFoundError) as err:
            raise DataError(f"{self.name}: {member or self.path} not found in {self.path}") from err
        except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, zlib.error) as err:
            where = f"{self.path}" + (f" ({member})" if member else "")
            raise DataError(f"{where}: corrupted or truncated archive ({err}); delete it and fetch it again") from err
