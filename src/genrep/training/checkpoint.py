"""Atomic checkpoints and weight files, and RNG states stored as plain tensors and lists.

`save_checkpoint` / `load_checkpoint` hold the full training state (`Trainer` decides the keys);
they load with `torch.load(weights_only=True)`, so a checkpoint never unpickles arbitrary
objects: everything in it is a tensor, number, string, None, or a list/tuple/dict of those.
`save_weights` / `load_weights` hold only a model's state dict, as safetensors.
"""

from __future__ import annotations

import errno
import random
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from torch import nn

from genrep.errors import CheckpointError, one_line  # noqa: F401  (one_line: re-exported)
from genrep.utils.files import atomic_write
from genrep.utils.safe_load import load_torch


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Write `state` (a dict of tensors, numbers, strings, lists, dicts) atomically to `path` with
    `torch.save`. Returns the path."""
    path = Path(path)
    atomic_write(path, lambda tmp: _torch_save(state, tmp))
    return path


def _torch_save(state: dict, file: str) -> None:
    """torch.save, with its RuntimeError for a failed write (e.g. "[enforce fail at
    inline_container.cc] unexpected pos" when the disk is full) raised as the OSError it is."""
    try:
        torch.save(state, file)
    except RuntimeError as err:
        if "inline_container" in str(err) or "PytorchStreamWriter" in str(err):
            raise OSError(errno.EIO, f"write failed, is the disk full? ({one_line(err, 120)})") from None
        raise


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint written by `save_checkpoint` onto the CPU (weights_only: no arbitrary
    objects are unpickled). Raises CheckpointError naming the file if it is missing, truncated,
    corrupted or holds something other than a dict, UnsafeFileError (a CheckpointError) if it
    holds pickled code objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    state = load_torch(path, label=f"checkpoint {path}", hint="; delete it or resume from a copy")
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a training state dict")
    return state


def checkpoint_step(path: str | Path) -> int | None:
    """The step a checkpoint written by the Trainer has reached (its tensors memory-mapped, not
    read), None if it has no step; the errors of `load_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    state = load_torch(path, label=f"checkpoint {path}", hint="; delete it or resume from a copy", mmap=True)
    step = state.get("step") if isinstance(state, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def save_weights(path: str | Path, model: nn.Module, *, metadata: dict[str, str] | None = None) -> Path:
    """Write `model.state_dict()` atomically to `path` as safetensors (tensors copied to the CPU,
    tied tensors stored once per name), with `metadata` (str -> str) in the file's header.
    Returns the path."""
    path = Path(path)
    tensors = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in model.state_dict().items()}
    header = {"format": "pt", **(metadata or {})}
    atomic_write(path, lambda tmp: safetensors.torch.save_file(tensors, tmp, metadata=header))
    return path


def load_weights(path: str | Path, model: nn.Module) -> nn.Module:
    """Load a safetensors file written by `save_weights` into `model` (in place; also returned).

    Raises CheckpointError naming the file if it is missing or unreadable, or naming the missing
    keys, unexpected keys and shape mismatches against the model.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        tensors = safetensors.torch.load_file(path, device="cpu")
    except Exception as err:  # SafetensorError, OSError, ...
        raise CheckpointError(f"weights file {path} is truncated or corrupted ({one_line(err)})") from None
    expected = model.state_dict()
    problems = []
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    shapes = [f"{k} {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            problems.append(f"{label}: {', '.join(items[:5])}{more}")
    if problems:
        raise CheckpointError(f"weights file {path} does not match {type(model).__name__}: {'; '.join(problems)}")
    model.load_state_dict(tensors)
    return model


def rng_states() -> dict:
    """The states of torch (CPU and, if initialised, every CUDA device), numpy and python `random`,
    as tensors, ints and lists (loadable with weights_only)."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": {"kind": str(np_state[0]), "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": int(py_version), "internal": list(py_internal), "gauss_next": py_gauss},
    }


def set_rng_states(states: dict) -> None:
    """Restore the RNG states saved by `rng_states` (CUDA states only when the device count matches)."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    npy = states["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    py = states["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
