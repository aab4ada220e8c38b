"""Greedy assignment of binary codes to samples (thesis Alg. 2).

Samples are taken in the given order and each gets the code nearest (squared L2) to its embedding
among the codes not taken yet — exactly the sequential greedy of Alg. 2, computed block-wise: for a
block of B samples the distances to the still-available codes are one matrix product, and each sample
keeps only its top-B nearest candidates. Inside a block at most p codes are taken before the sample at
position p, so its top-(p+1) candidates always contain its greedy choice; the walk along the sorted
candidate lists is O(1) numpy work per sample. 12k samples × 12k codes × 200 bits take about a second.
"""

from __future__ import annotations

import numpy as np
import torch

from genrep.errors import InputError

_CANDIDATES = 16  # nearest codes kept per sample before falling back to a scan of its row


@torch.no_grad()
def greedy_assign(z: torch.Tensor, codes: torch.Tensor, *, order: torch.Tensor | None = None,
                  available: torch.Tensor | None = None, block: int = 256) -> torch.Tensor:
    """Alg. 2: give every row of `z` (N×n embeddings) the nearest still-available row of `codes` (M×n),
    rows of z taken in `order` (a permutation of range(N); None = row order).

    available: bool (M,) on the CPU, the codes that may still be taken (None = all); updated in place,
    so consecutive calls with the same mask (one per mini-batch) continue one greedy pass over an epoch.
    Returns int64 (N,) on the CPU: the code index of every row of z (in z's row order), all distinct.
    """
    if z.ndim != 2 or codes.ndim != 2 or z.shape[1] != codes.shape[1]:
        raise InputError(f"greedy_assign: need z N×n and codes M×n, got {tuple(z.shape)} and {tuple(codes.shape)}")
    if available is None:
        available = torch.ones(len(codes), dtype=torch.bool)
    if available.dtype != torch.bool or available.shape != (len(codes),) or available.device.type != "cpu":
        raise InputError(f"greedy_assign: available must be a CPU bool tensor ({len(codes)},), got "
                         f"{available.dtype} {tuple(available.shape)} on {available.device}")
    free = int(available.sum())
    if len(z) > free:
        raise InputError(f"greedy_assign: {len(z)} samples but only {free} codes are available")
    order = torch.arange(len(z)) if order is None else order.cpu().long()
    if len(order) != len(z) or block < 1:
        raise InputError(f"greedy_assign: order must have {len(z)} entries and block must be >= 1, got "
                         f"{len(order)} and {block}")
    result = torch.empty(len(z), dtype=torch.int64)
    still_free = available.numpy()  # shares memory with `available`
    z, codes = z.float(), codes.to(z.device, torch.float32)
    pool_index = torch.empty(0, dtype=torch.int64)
    for start in range(0, len(z), block):
        rows = order[start:start + block]
        if len(pool_index) == 0 or 4 * len(pool_index) > 5 * int(available.sum()):  # re-gather the free codes
            pool_index = available.nonzero().flatten()
            pool = codes[pool_index.to(codes.device)]
            pool_sq = pool.pow(2).sum(1)
        z_block = z[rows.to(z.device)]
        distance = z_block.pow(2).sum(1, keepdim=True) - 2 * z_block @ pool.T + pool_sq  # ‖z − c‖²
        distance[:, ~available[pool_index].to(distance.device)] = float("inf")
        nearest = distance.topk(min(_CANDIDATES, len(pool_index)), dim=1, largest=False).indices.cpu()
        nearest, pool_np = pool_index[nearest].numpy(), pool_index.numpy()
        distance = distance.cpu().numpy()
        chosen = torch.empty(len(rows), dtype=torch.int64)
        picks = chosen.numpy()
        for position in range(len(rows)):
            candidates = nearest[position, :position + 1]
            free = still_free[candidates]
            if free.any():
                pick = candidates[free.argmax()]  # the nearest candidate not taken yet
            else:  # all its nearest candidates went to earlier samples of the block: scan its whole row
                pick = pool_np[np.where(still_free[pool_np], distance[position], np.inf).argmin()]
            still_free[pick] = False
            picks[position] = pick
        result[rows] = chosen
    return result


@torch.no_grad()
def bit_agreement(z: torch.Tensor, codes: torch.Tensor) -> float:
    """Share of the bits of sign(z) (0 ↦ +1) equal to the ±1 `codes` of the same rows (both N×n): 1 when
    every embedding sits on the orthant of its code, about 0.5 for codes drawn independently of them (codes
    picked as the nearest free ones, as by `greedy_assign`, agree more even then)."""
    if z.shape != codes.shape or z.ndim != 2:
        raise InputError(f"bit_agreement needs embeddings and codes of one shape N×n, got {tuple(z.shape)} and "
                         f"{tuple(codes.shape)}")
    if not bool((codes.abs() == 1).all()):
        raise InputError("bit_agreement needs codes with values in {-1, +1} (as binary_codes gives)")
    return float((torch.where(z >= 0, 1.0, -1.0).to(codes) == codes).float().mean())
