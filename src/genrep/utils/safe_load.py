"""The one place genrep reads files that may hold pickles: torch files with `weights_only=True`
and numpy files with `allow_pickle=False`, never more.

A file that holds pickled Python objects beyond tensors, numbers and strings (classes,
functions: code that unpickling would import and run) is refused with an `UnsafeFileError`
saying so. The advice of torch ("re-run with weights_only=False") and numpy ("allow_pickle=True")
is never passed on: loading such a file from an untrusted source runs its code.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from genrep.errors import CheckpointError, DataError, GenrepError, UnsafeFileError, one_line

_GLOBAL = re.compile(r"GLOBAL (\S+)")
_OPERAND = re.compile(r"Unsupported operand (\d+)")
REFUSED = "and was refused for safety: unpickling it could run arbitrary code"


def _torch_refusal(err: BaseException) -> str | None:
    """The global a weights-only torch.load refused (e.g. "posix.system"), "" when unnamed, None
    when `err` is no refusal of a global."""
    text = str(err)
    if not isinstance(err, pickle.UnpicklingError) or "Weights only load failed" not in text:
        return None
    if "Unsupported global" not in text and "unsupported GLOBAL" not in text:
        return None
    match = _GLOBAL.search(text)
    return match.group(1) if match else ""


def _torch_reason(err: BaseException) -> str:
    """A short reason for a failed torch.load without torch's advice to load unsafely."""
    text = str(err)
    if "Weights only load failed" in text:
        operand = _OPERAND.search(text)
        return (f"unsupported pickle opcode {operand.group(1)}: not a torch.save file" if operand
                else "not a torch.save file of tensors")
    if "PytorchStreamReader" in text or "central directory" in text:
        return "the zip archive is incomplete"
    return one_line(err, 200)


def load_torch(path: str | os.PathLike, *, label: str, error: type[GenrepError] = CheckpointError,
               hint: str = "", mmap: bool = False) -> Any:
    """`torch.load(path, map_location="cpu", weights_only=True)` (`mmap`: tensors memory-mapped,
    read only when touched: cheap for a look at a checkpoint's counters).

    `label` names the file in messages (e.g. "checkpoint runs/x/last.ckpt"). Raises UnsafeFileError
    when the file holds Python objects beyond tensors (refused for safety), else `error`
    ("LABEL is truncated or corrupted (reason)" + `hint`) for any other failure."""
    import torch

    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4 ..." from the weights-only unpickler
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # RuntimeError, EOFError, UnpicklingError, OSError, ... by cause
        refused = _torch_refusal(err)
        if refused is not None:
            named = f" (it names {refused}, a class or function)" if refused else ""
            raise UnsafeFileError(f"{label} holds pickled Python objects beyond tensors{named} {REFUSED};"
                                  " genrep loads only tensors, numbers, strings and lists/dicts of them"
                                  " (e.g. a state dict)") from None
        if isinstance(err, FileNotFoundError):
            raise error(f"{label} does not exist") from None
        raise error(f"{label} is truncated or corrupted ({_torch_reason(err)}){hint}") from None


def _object_array(err: BaseException) -> bool:
    """numpy's "Object arrays cannot be loaded when allow_pickle=False"."""
    return isinstance(err, ValueError) and "Object arrays" in str(err)


def _pickle_file(err: BaseException) -> bool:
    """numpy's "This file contains pickled (object) data. If you trust the file you can load it
    unsafely using the `allow_pickle=` keyword argument ..." (older: "Cannot load file containing
    pickled data when allow_pickle=False"): the file is a pickle, not a .npy/.npz file."""
    return isinstance(err, ValueError) and ("pickled" in str(err) or "allow_pickle" in str(err))


def _starts_like_a_pickle(path: str | os.PathLike) -> bool:
    """A pickle of protocol 2 or later (what numpy and torch write) starts with the PROTO opcode 0x80."""
    try:
        with open(path, "rb") as fh:
            return fh.read(1) == b"\x80"
    except OSError:
        return False


def load_arrays(path: str | os.PathLike, *, label: str | None = None,
                error: type[GenrepError] = DataError) -> dict[str, np.ndarray]:
    """Every array of an .npz file (or the one array of an .npy file, keyed by the file's stem) with
    `allow_pickle=False`, read into memory. Raises UnsafeFileError naming the key of an object
    array (Python objects, stored as a pickle: refused for safety), `error` when the file is
    missing, truncated or not a numpy file."""
    label = label or str(path)
    key = None
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):
            return {Path(path).stem: data}
        with data:
            arrays = {}
            for key in data.files:
                arrays[key] = data[key]
            return arrays
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        if _object_array(err):
            where = f"array {key!r}" if key is not None else "its array"
            raise UnsafeFileError(f"{label}: {where} holds Python objects (dtype=object, stored as a pickle) "
                                  f"{REFUSED}; store numeric arrays only") from None
        if _pickle_file(err):
            if _starts_like_a_pickle(path):
                raise UnsafeFileError(f"{label} is a Python pickle, not a .npz/.npy file of arrays, {REFUSED};"
                                      " store numeric arrays with numpy.savez") from None
            # numpy says "pickled" for any file that is neither a zip (.npz) nor a .npy file
            raise error(f"{label}: not a valid .npz/.npy file (it starts with neither the .npz (zip) nor the "
                        ".npy signature; truncated, corrupted or another format?)") from None
        if isinstance(err, FileNotFoundError):
            raise error(f"{label} does not exist") from None
        raise error(f"{label}: not a readable .npz/.npy file of numeric arrays ({one_line(err, 200)})") from None
