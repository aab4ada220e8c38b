"""BinPlay's index codes (thesis §8.3.2, Lemma 1) and task codes.

A code c(i) ∈ {−1, +1}^n is a concatenation of subvectors; the subvector of width m built on the odd
prime λ holds the m least-significant bits of i·λ^⌊m·ln2/lnλ⌋ (Eq. 8.1), most significant bit first.
Multiplication by an odd number is a bijection of Z/2^m, so one subvector alone is already unique for
every i < 2^m — and repeats with period 2^m. The thesis does not fix the widths; the reference code
uses 25 subvectors of 8 bits, which repeat after 2^8 = 256 indices (as implemented, an operator
precedence slip takes the bits of ⌊i·λ^e / 25⌋ instead: period 6,400), i.e. within one 12k-sample task.
Here the n bits are split into ⌈n/31⌉ subvectors
of (nearly) equal width m ≤ 31 (n = 200: 4×29 + 3×28 bits on λ = 3, 5, 7, 11, 13, 17, 19), so that

* codes are unique for every index below `code_capacity(n)` = 2^min(m) (2^28 = 268,435,456 for
  n = 200; 2^30 for n = 1000), and `binary_codes` refuses larger indices;
* consecutive codes differ in at least one bit per subvector: c(i+1) − c(i) adds the odd constant
  λ^e to every subvector, which always flips its lowest bit (⌈n/31⌉ = 7 bits for n = 200; measured
  over the first 10^6 indices: minimum 82, mean 107.3 of 200 bits);
* the int64 products stay exact: i < 2^m and λ^e < 2^m (Lemma 1, point 1) give i·λ^e < 2^62.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from genrep.errors import InputError

MAX_SUBVECTOR_BITS = 31
MIN_SUBVECTOR_BITS = 16
TASK_CODE_PRIME = 307
_CHUNK = 2048


def _odd_primes(count: int) -> list[int]:
    primes, candidate = [], 3
    while len(primes) < count:
        if all(candidate % p for p in range(3, math.isqrt(candidate) + 1, 2)):
            primes.append(candidate)
        candidate += 2
    return primes


@functools.lru_cache(maxsize=None, typed=True)
def code_layout(n_bits: int) -> tuple[tuple[int, int, int], ...]:
    """(width m, prime λ, multiplier λ^⌊m·ln2/lnλ⌋) of every subvector of an n_bits code, in order.
    The exponent is computed exactly as the largest e with λ^e < 2^m (Lemma 1, point 1)."""
    if isinstance(n_bits, bool) or not isinstance(n_bits, (int, np.integer)) or n_bits < MIN_SUBVECTOR_BITS:
        raise InputError(f"n_bits must be an integer >= {MIN_SUBVECTOR_BITS} (capacity 2^{MIN_SUBVECTOR_BITS} "
                         f"codes), got {n_bits!r}")
    parts = -(-int(n_bits) // MAX_SUBVECTOR_BITS)
    widths = [n_bits // parts + (k < n_bits % parts) for k in range(parts)]
    layout = []
    for m, prime in zip(widths, _odd_primes(parts)):
        multiplier = 1
        while multiplier * prime < 2 ** m:
            multiplier *= prime
        layout.append((m, prime, multiplier))
    return tuple(layout)


def code_capacity(n_bits: int = 200) -> int:
    """Number of indices 0 … capacity−1 whose codes are guaranteed distinct: 2^(narrowest subvector)."""
    return 2 ** min(m for m, _, _ in code_layout(n_bits))


def _as_indices(indices, n_bits: int) -> torch.Tensor:
    if not isinstance(indices, torch.Tensor):
        indices = torch.as_tensor(np.asarray(indices))
    if indices.dtype == torch.bool or indices.is_floating_point() or indices.is_complex():
        raise InputError(f"binary_codes: indices must have an integer dtype, got {indices.dtype}")
    if indices.ndim != 1:
        raise InputError(f"binary_codes: indices must be 1-D, got shape {tuple(indices.shape)}")
    indices = indices.to(device="cpu", dtype=torch.int64)
    capacity = code_capacity(n_bits)
    if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= capacity):
        raise InputError(f"binary_codes: indices must lie in [0, {capacity}) for n_bits={n_bits} (beyond that codes "
                         f"repeat), got [{int(indices.min())}, {int(indices.max())}]; use more bits")
    return indices


def binary_codes(indices, n_bits: int = 200) -> torch.Tensor:
    """Codes c(i) (Eq. 8.1, see the module docstring) of int indices (N,) in [0, code_capacity(n_bits)):
    float32 N×n_bits with values in {−1, +1} (on the CPU). Rows are built in cache-sized chunks."""
    layout = code_layout(n_bits)
    indices = _as_indices(indices, n_bits)
    out = torch.empty(len(indices), n_bits, dtype=torch.float32)
    shifts = {m: torch.arange(m - 1, -1, -1, dtype=torch.int32) for m, _, _ in layout}
    for start in range(0, len(indices), _CHUNK):
        chunk, rows = indices[start:start + _CHUNK], out[start:start + _CHUNK]
        column = 0
        for m, _, multiplier in layout:
            words = ((chunk * multiplier) & ((1 << m) - 1)).to(torch.int32)  # Eq. 8.1, exact in int64
            bits = rows[:, column:column + m]
            torch.mul((words[:, None] >> shifts[m]) & 1, 2, out=bits).sub_(1)
            column += m
    return out


def task_code(task, n_bits: int = 10) -> torch.Tensor:
    """Task code of the reference: the n_bits bits (MSB first) of (t·307 mod 2^n_bits), float32 in {0, 1};
    task: an int (→ (n_bits,)) or int64 tensor (N,) (→ N×n_bits)."""
    tasks = torch.as_tensor(task)
    if tasks.is_floating_point() or tasks.dtype == torch.bool or tasks.ndim > 1 or bool((tasks < 0).any()):
        raise InputError(f"task_code: task must be a non-negative int or 1-D int tensor, got {task!r}")
    if isinstance(n_bits, bool) or not isinstance(n_bits, int) or not 1 <= n_bits <= 62:
        raise InputError(f"task_code: n_bits must be an int in [1, 62], got {n_bits!r}")
    words = (tasks.to(torch.int64) * TASK_CODE_PRIME) % (1 << n_bits)
    shifts = torch.arange(n_bits - 1, -1, -1, dtype=torch.int64, device=words.device)
    return ((words[..., None] >> shifts) & 1).float()


def consecutive_hamming(count: int, n_bits: int = 200, *, start: int = 0, chunk: int = 1 << 17) -> tuple[int, float]:
    """Minimum and mean Hamming distance between c(i) and c(i+1) for i = start … start+count−2."""
    if count < 2:
        raise InputError(f"consecutive_hamming needs count >= 2, got {count}")
    minimum, total = n_bits, 0
    for first in range(start, start + count - 1, chunk):
        last = min(first + chunk, start + count - 1)
        codes = binary_codes(torch.arange(first, last + 1), n_bits)
        distances = (codes[1:] != codes[:-1]).sum(1)
        minimum, total = min(minimum, int(distances.min())), total + int(distances.sum())
    return minimum, total / (count - 1)
