"""Seeded random streams shared by the continual learners (so that resuming after task k replays
exactly the draws of an uninterrupted run) and shuffled mini-batches."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from genrep.errors import InputError


def stream_seed(seed: int, stream: int) -> int:
    """Seed of random stream `stream` (a learner's offset plus the task index) of a run seeded `seed`."""
    return (seed * 1_000_003 + stream) % 2**63


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Global CPU (and CUDA) RNG seeded to `seed` inside, the caller's state restored after."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    """Shuffled index batches over n rows; a trailing batch of one sample joins the previous one
    (batch norm cannot train on a single sample)."""
    chunks = list(torch.randperm(n, generator=generator).split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


def full_batches(n: int, batch_size: int, iterations: int, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    """`iterations` index batches of exactly `batch_size` rows out of n >= batch_size: a new permutation
    whenever the previous one has no full batch left, its trailing partial batch dropped (PyTorch's
    `DataLoader(shuffle=True, drop_last=True)` remade when exhausted, as van de Ven & Tolias train)."""
    if n < batch_size:
        raise InputError(f"full_batches needs n >= batch_size, got n={n}, batch_size={batch_size}")
    per_pass, done = n // batch_size, 0
    while done < iterations:
        order = torch.randperm(n, generator=generator)
        for b in range(min(per_pass, iterations - done)):
            yield order[b * batch_size:(b + 1) * batch_size]
        done += min(per_pass, iterations - done)
