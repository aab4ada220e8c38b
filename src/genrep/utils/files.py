"""Output files and folders named by a user: parent folders are created, and every `OSError` while
writing (read-only file system, disk full, no permission, a parent that is a file, ...) becomes an
`OutputError` "cannot write PATH: reason", which the CLI prints as one line.

    out = output_file(args.out)          # creates the parent folders, refuses an existing folder
    with writing(out):                   # OSError -> OutputError naming `out`
        np.savez_compressed(out, images=images)

    folder = output_dir(args.out)        # creates it, refuses an existing file
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from genrep.errors import OutputError


def _blocking_file(path: Path) -> Path | None:
    """The nearest existing ancestor of `path` (or `path` itself) that is not a folder, if any."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None


def os_reason(err: OSError, path: str | os.PathLike) -> str:
    """A short reason for `err` while writing `path`: "No space left on device", "Read-only file
    system", "/a/b is a file, not a folder" (when a parent of `path` is a file), ..."""
    path = Path(path)
    if err.errno in (errno.ENOTDIR, errno.EEXIST) or isinstance(err, (NotADirectoryError, FileExistsError)):
        blocker = _blocking_file(path.parent) or (_blocking_file(path) if err.errno == errno.EEXIST else None)
        if blocker is not None:
            return f"{blocker} is a file, not a folder"
    text = err.strerror or str(err) or type(err).__name__
    filename = getattr(err, "filename", None)
    if filename is not None and Path(os.fsdecode(filename)) != path:
        text += f" ({os.fsdecode(filename)})"
    return text


def cannot_write(path: str | os.PathLike, err: OSError) -> OutputError:
    return OutputError(f"cannot write {path}: {os_reason(err, path)}")


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[Path]:
    """Context manager: an OSError inside becomes OutputError("cannot write PATH: reason")."""
    try:
        yield Path(path)
    except OutputError:
        raise
    except OSError as err:
        raise cannot_write(path, err) from None


def output_file(path: str | os.PathLike) -> Path:
    """`path` as a Path, its parent folders created; OutputError if they cannot be created or if
    `path` is an existing folder."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; name a file")
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


def output_dir(path: str | os.PathLike) -> Path:
    """The folder `path`, created with its parents; OutputError if it is an existing file (or a
    parent is one) or it cannot be created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot write {path}: it is a file, not a folder; name a folder (it is created)")
    with writing(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call `write(temp_path)` on a temp file in `path`'s folder, fsync it, then `os.replace` it to
    `path`: readers see the old file or the complete new one, never a partial one (the temp file is
    removed on failure). Parent folders are created; an OSError raises OutputError naming `path`."""
    path = output_file(path)
    with writing(path):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            write(tmp)
            with open(tmp, "rb+") as f:
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    return path


def write_npz(path: str | os.PathLike, **arrays) -> Path:
    """`numpy.savez_compressed(path, **arrays)` through `atomic_write`."""
    import numpy as np

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: numpy would append ".npz" to a name
            np.savez_compressed(f, **arrays)

    return atomic_write(path, write)
