"""Controlled forgetting (thesis §9.3.3, Eq. 9.4; reference `train_global_decoder`): a replay target of a
previous task is replaced by the most similar current image when their global latents nearly coincide.

sim(z_j) = max_q cos(z_j, z_q) over the current task's translated latents Z^i; the target of replayed
sample j becomes x^i_{argmax} when sim(z_j) > γ. The comparison is strict, as the reference (the thesis writes
≥; for continuous similarities the two differ on a null set), and γ = 1 disables the mechanism.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genrep.errors import ConfigError


def check_threshold(gamma: float) -> float:
    """γ must lie in (0, 1]."""
    if not 0.0 < gamma <= 1.0:
        raise ConfigError(f"the forgetting threshold γ must be in (0, 1] (1 disables controlled forgetting), "
                          f"got {gamma}")
    return gamma


def cosine_matrix(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """cos(a_i, b_q) for all pairs: (P×D, Q×D) → P×Q."""
    return F.normalize(a, dim=1, eps=eps) @ F.normalize(b, dim=1, eps=eps).T


def replace_similar_targets(prev_z: torch.Tensor, prev_targets: torch.Tensor, current_z: torch.Tensor,
                            current_images: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets, replaced): `prev_targets` with row j replaced by current_images[argmax_q cos(prev_z_j,
    current_z_q)] where that maximum is > γ, and the boolean mask of replaced rows (none when γ = 1)."""
    check_threshold(gamma)
    replaced = torch.zeros(len(prev_z), dtype=torch.bool, device=prev_z.device)
    if gamma >= 1.0 or not len(prev_z) or not len(current_z):
        return prev_targets, replaced
    best, index = cosine_matrix(prev_z, current_z).max(dim=1)
    replaced = best > gamma
    if not replaced.any():
        return prev_targets, replaced
    targets = prev_targets.clone()
    targets[replaced] = current_images[index[replaced]].to(targets)
    return targets, replaced
