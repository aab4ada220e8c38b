"""Calorimeter metrics on ZDC responses (thesis ch.4 Table 4.3.1, ch.9 Fig. 9.4.2).

Inputs are **raw photo-electron counts** (≥ 0), shape (N, 44, 44) or (N, 1, 44, 44), numpy or
torch — not the preprocessed log(1+x) images models train on: convert generated images with
`genrep.data.calorimeter.to_counts` first. Negative values raise InputError (values in [0, 1] are
accepted but are almost certainly preprocessed images; nothing can tell them apart).

Channels (`calorimeter_channels`, i = row, j = column): ch5 = Σ fibres with (i+j) odd (common
PMT); ch1..ch4 = Σ fibres with (i+j) even in the quadrants rows×columns [0,22)×[0,22),
[0,22)×[22,44), [22,44)×[0,22), [22,44)×[22,44) (tower PMTs).

MAE (`channel_mae`, ch.4): "mean absolute error between channels from original and generated
responses with the same input" — rows are paired (same particle), and the mean runs over all
N×5 entries:  MAE = 1/(5N) Σ_n Σ_c |ch_c(real_n) − ch_c(fake_n)|. The text does not say what
the ± in Table 4.3.1 (e.g. 13.50 ± 29.82) is; presumably the standard deviation of the absolute
errors (real-vs-real, two simulations of the same particles: 6.59).

Wasserstein (`channel_wasserstein`): 1-D W₁ (scipy.stats.wasserstein_distance) between the
channel distributions of two *unpaired* sets (sizes may differ), in one of two conventions:
    "pooled-log"       (default; the ch.9 reference code behind the published figures): all 5
                       channels of all rows pooled into one sample of 5N values, in log(1+x)
                       space:  W₁({log(1+ch_c(real_n))}_{n,c}, {log(1+ch_c(fake_m))}_{m,c}).
                       Unit-free and robust to the orders of magnitude between showers, but blind
                       to which channel a value came from (swapping ch1 and ch2 costs nothing).
    "per-channel-raw"  (later practice): per channel on raw counts, averaged:
                       1/5 Σ_c W₁({ch_c(real_n)}_n, {ch_c(fake_m)}_m), in photo-electrons;
                       dominated by the brightest showers.
The thesis text does not say which; the default is the one behind the published ch.9 figures.
Report the convention with the number.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import wasserstein_distance

from genrep.data.calorimeter import channel_sums
from genrep.errors import InputError

CONVENTIONS = ("pooled-log", "per-channel-raw")


def calorimeter_channels(responses):
    """The five ZDC channels ch1..ch5 of raw counts (N, 44, 44) or (N, 1, 44, 44), numpy or
    torch: (N, 5), numpy for numpy input (float dtype of the input; float64 for integers).
    Raises InputError for other shapes, non-finite or negative values."""
    x = torch.as_tensor(responses)
    if x.dtype == torch.bool or x.is_complex():
        raise InputError(f"responses must be real photon counts, got dtype {x.dtype}")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise InputError("responses contain NaN or infinite values")
    if x.numel() and x.min() < 0:
        raise InputError(f"responses must be raw photon counts >= 0, got a minimum of {float(x.min()):.3g}; "
                         "convert generated images with genrep.data.calorimeter.to_counts(images, value_range)")
    return channel_sums(responses)


def _channels64(responses, name: str) -> np.ndarray:
    try:
        ch = calorimeter_channels(responses)
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None
    return np.asarray(torch.as_tensor(ch).double())


def channel_abs_errors(real_responses, fake_responses) -> np.ndarray:
    """|ch_c(real_n) − ch_c(fake_n)| (N, 5, float64) between paired responses (row n of both for the
    same particle), raw counts (N, 44, 44) each."""
    real = _channels64(real_responses, "real responses")
    fake = _channels64(fake_responses, "fake responses")
    if len(real) != len(fake) or len(real) == 0:
        raise InputError(f"channel_mae needs paired responses (same particle per row): got {len(real)} real "
                         f"and {len(fake)} fake rows")
    return np.abs(real - fake)


def channel_mae(real_responses, fake_responses) -> float:
    """MAE = 1/(5N) Σ_n Σ_c |ch_c(real_n) − ch_c(fake_n)| between paired responses (row n of
    both for the same particle), raw counts (N, 44, 44) each; ≥ 0, in photo-electrons. The std of
    the same absolute errors (the presumed ± of Table 4.3.1) is `channel_abs_errors(...).std()`."""
    return float(channel_abs_errors(real_responses, fake_responses).mean())


def channel_wasserstein(real_responses, fake_responses, *, convention: str = "pooled-log") -> float:
    """1-D Wasserstein distance between channel distributions of real (N, 44, 44) and fake
    (M, 44, 44) raw counts (unpaired; N, M ≥ 1). convention: "pooled-log" (default, ch.9
    reference code; log(1+x) units) or "per-channel-raw" (mean over the 5 channels, counts).
    See the module docstring for both formulas."""
    if convention not in CONVENTIONS:
        raise InputError(f"convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}")
    real = _channels64(real_responses, "real responses")
    fake = _channels64(fake_responses, "fake responses")
    if len(real) == 0 or len(fake) == 0:
        raise InputError(f"channel_wasserstein needs at least one response per set, got {len(real)} and {len(fake)}")
    if convention == "pooled-log":
        return float(wasserstein_distance(np.log1p(real).ravel(), np.log1p(fake).ravel()))
    return float(np.mean([wasserstein_distance(real[:, c], fake[:, c]) for c in range(real.shape[1])]))
