"""Densities and divergences used by the diffusion variational bound (thesis Eq. 2.9–2.11).

All functions work elementwise on broadcastable tensors and return nats; divide by ln 2 for bits.
"""

from __future__ import annotations

import math

import torch

from genrep.errors import InputError

#: Half-width of one of the 256 bins of an 8-bit image scaled to [-1, 1] (Eq. 2.11).
HALF_BIN = 1.0 / 255.0


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over all dimensions but the first: (N, ...) → (N,)."""
    return x.mean(dim=tuple(range(1, x.ndim))) if x.ndim > 1 else x


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) per element, in nats.

    = ½(−1 + logvar2 − logvar1 + e^(logvar1−logvar2) + (mean1 − mean2)² e^(−logvar2)).
    Arguments broadcast; at least one must be a tensor (floats are converted to its dtype/device).
    """
    ref = next((a for a in (mean1, logvar1, mean2, logvar2) if isinstance(a, torch.Tensor)), None)
    if ref is None:
        raise InputError("normal_kl needs at least one tensor argument")
    mean1, logvar1, mean2, logvar2 = (
        a if isinstance(a, torch.Tensor) else torch.as_tensor(a, dtype=ref.dtype, device=ref.device)
        for a in (mean1, logvar1, mean2, logvar2)
    )
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of Φ(x) used by Ho et al. and improved-diffusion (|error| < 2e-4).

    Kept for bit-compatibility with published bits/dim; `discretized_gaussian_log_likelihood`
    uses the exact Φ unless asked otherwise.
    """
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def _log_prob_between(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """log(Φ(hi) − Φ(lo)) for finite lo < hi, accurate in both tails (log-space, symmetric flip)."""
    flip = lo > 0  # right tail: Φ(hi) − Φ(lo) = Φ(−lo) − Φ(−hi)
    a = torch.where(flip, -hi, lo)
    b = torch.where(flip, -lo, hi)
    log_a, log_b = torch.special.log_ndtr(a), torch.special.log_ndtr(b)
    return log_b + torch.log1p(-torch.exp(log_a - log_b))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor, *, exact: bool = True
) -> torch.Tensor:
    """log p(x) of the binned Gaussian decoder of Eq. 2.10–2.11, per element, in nats.

    x: images quantised to 256 levels and scaled to [-1, 1] (any shape); means, log_scales (log σ):
    same shape. The probability of x is the N(means, σ²) mass of [x − 1/255, x + 1/255], with the
    lowest bin extended to −∞ (x = −1) and the highest to +∞ (x = 1), so the 256 bin
    probabilities sum to 1. exact=True uses Φ via `torch.special.log_ndtr` (accurate in the tails);
    exact=False reproduces improved-diffusion's tanh approximation with probabilities clamped at 1e-12.
    """
    if not (x.shape == means.shape == log_scales.shape):
        raise InputError(
            f"x, means and log_scales must have the same shape, got {tuple(x.shape)}, "
            f"{tuple(means.shape)}, {tuple(log_scales.shape)}"
        )
    centered = x - means
    inv_std = torch.exp(-log_scales)
    plus_in = inv_std * (centered + HALF_BIN)
    min_in = inv_std * (centered - HALF_BIN)
    if exact:
        log_cdf_plus = torch.special.log_ndtr(plus_in)  # lowest bin: Φ(plus)
        log_one_minus_cdf_min = torch.special.log_ndtr(-min_in)  # highest bin: 1 − Φ(min)
        log_delta = _log_prob_between(min_in, plus_in)
    else:
        cdf_plus = approx_standard_normal_cdf(plus_in)
        cdf_min = approx_standard_normal_cdf(min_in)
        log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
        log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
        log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))
