"""An exclusive lock on an output folder, so that two processes never write one run at once.

The lock is `flock(LOCK_EX | LOCK_NB)` on the folder itself (an open directory descriptor): nothing
is written into the folder, the kernel drops the lock when the process ends (a killed run never
leaves a stale lock), and it works across nodes on file systems with POSIX locks (NFSv4, Lustre
with flock enabled). Wiping a locked folder for --overwrite must empty it, not remove it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from genrep.errors import RunExistsError
from genrep.utils.files import output_dir

_held: dict[Path, int] = {}  # resolved folder -> descriptor, for the locks this process holds


class FolderInUseError(RunExistsError):
    """Another process holds the folder's lock."""


def lock_folder(path: str | Path, *, what: str = "run folder") -> Path:
    """Create `path` if needed and take its exclusive lock for this process (a no-op when this process
    already holds it). Raises FolderInUseError naming the folder when another process holds it."""
    path = output_dir(path)
    key = path.resolve()
    if key in _held:
        return path
    fd = os.open(key, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
            raise FolderInUseError(f"{what} {path} is in use by another genrep process (it holds the folder's lock);"
                                   " wait for that process to finish, stop it, or use another --out") from None
        raise
    _held[key] = fd
    return path


def unlock_folder(path: str | Path) -> None:
    """Release this process's lock on `path` (nothing if it holds none)."""
    fd = _held.pop(Path(path).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the last descriptor releases the flock


def empty_folder(path: str | Path, *, ignore_errors: bool = False) -> None:
    """Remove everything inside `path` but keep the folder (and so its lock); with `ignore_errors`
    what cannot be removed stays, silently (clean-up after a failure)."""
    import shutil

    for child in Path(path).iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=ignore_errors)
        else:
            try:
                child.unlink(missing_ok=True)
            except OSError:
                if not ignore_errors:
                    raise


@contextlib.contextmanager
def locked_on_rank_zero(path: str | Path, *, what: str = "run folder") -> Iterator[Path]:
    """`locked_folder` taken by global rank 0 of the default `torch.distributed` process group (or
    by the only process). When rank 0 cannot take it, every rank raises (rank 0 FolderInUseError,
    the others a FolderInUseError pointing at rank 0), so no rank waits for the others forever."""
    import torch
    import torch.distributed as dist

    grouped = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    rank = dist.get_rank() if grouped else 0
    error, acquired = None, False
    if rank == 0:
        acquired = Path(path).resolve() not in _held  # a lock held already stays held after the block
        try:
            lock_folder(path, what=what)
        except FolderInUseError as err:
            error = err
    if grouped:
        failed = torch.tensor([0.0 if error is None else 1.0])
        if dist.get_backend() == "nccl":
            failed = failed.cuda()
        dist.all_reduce(failed)
        if failed.item() > 0 and error is None:
            raise FolderInUseError(f"rank 0 could not lock {what} {path}: another process uses it")
    if error is not None:
        raise error
    try:
        yield Path(path)
    finally:
        if acquired:
            unlock_folder(path)
