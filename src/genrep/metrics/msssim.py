"""Multi-scale structural similarity (MS-SSIM, Wang, Simoncelli & Bovik 2003) of paired images,
with fewer scales for small images.

At scale k = 1..s (the image halved k−1 times by 2×2 average pooling),

    MS-SSIM(x, y) = [l_s(x, y)]^{w_s} · Π_{k=1..s} [cs_k(x, y)]^{w_k},
    l  = (2 μx μy + C1) / (μx² + μy² + C1),   cs = (2 σxy + C2) / (σx² + σy² + C2),
    C1 = (K1·L)², C2 = (K2·L)², K1 = 0.01, K2 = 0.03, L = data_range,

local statistics from an 11×11 Gaussian window (σ = 1.5) and the standard weights
WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333). The computation is torchmetrics'
`multiscale_structural_similarity_index_measure` (its conventions: reflect padding to keep the
image size, the cs map cropped by the padding and the l·cs map over the whole padded image,
statistics averaged over channels and pixels per scale, `normalize="relu"` so a negative cs
cannot give NaN under a fractional power — pytorch-msssim clips the same way).

Scale count
    Five scales need the image side ≥ 176 px here (torchmetrics halves with floor; the usual
    "> 160 px" is for ceil-halving libraries). Smaller images get fewer scales:

        s = the largest s ≤ 5 with floor(side / 2^(s−1)) ≥ 11  (the coarsest scale still holds
            the 11×11 window), i.e. side ≥ 11·2^(s−1),

    side = min(H, W), with one exception: 88–98 px get 3 scales, not 4, because torchmetrics
    requires side ≥ 99 for 4 scales (its check is side > 10·(s−1)²). Resulting counts:
    28 px → 2, 32 px → 2, 44 px → 3, 64 px → 3, 96 px → 3, 128 px → 4, ≥ 176 px → 5;
    11–21 px → 1 (plain SSIM). The weights are the first s of WEIGHTS divided by their sum (five
    scales: WEIGHTS as published), so
    MS-SSIM values at different scale counts are not comparable: report the count beside them.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

from genrep.errors import InputError
from genrep.utils.checks import check_images

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW, SIGMA, K1, K2 = 11, 1.5, 0.01, 0.03


def _library_accepts(side: int, s: int) -> bool:
    """torchmetrics' own input check for len(betas) = s."""
    return side >= 2**s and side // max(1, s - 1) ** 2 > WINDOW - 1


def max_scales(size: int | tuple[int, int]) -> int:
    """The number of MS-SSIM scales used for images of `size` (side, or (H, W)): the largest
    s ≤ 5 with min(H, W) ≥ 11·2^(s−1) that torchmetrics accepts (see the module docstring);
    0 if the image is smaller than the 11×11 window."""
    side = min(size) if isinstance(size, tuple) else size
    fits = [s for s in range(1, len(WEIGHTS) + 1)
            if side // 2 ** (s - 1) >= WINDOW and _library_accepts(side, s)]
    return max(fits, default=0)


def scale_weights(scales: int) -> tuple[float, ...]:
    """The first `scales` standard weights, renormalised to sum to 1; all five unchanged (the
    published values, which sum to 1.0001 by rounding, so 5 scales match every library)."""
    if scales == len(WEIGHTS):
        return WEIGHTS
    total = sum(WEIGHTS[:scales])
    return tuple(w / total for w in WEIGHTS[:scales])


def ms_ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0,
            scales: int | None = None) -> torch.Tensor:
    """MS-SSIM of each image pair: x, y float (N, C, H, W) in [0, data_range] → (N,) in [0, 1]
    (1 for identical images; symmetric in x and y).

    scales: None → `max_scales((H, W))`; an explicit count must lie in 1..max_scales((H, W)).
    Raises InputError for shape mismatch, values outside [0, data_range], or images smaller
    than 11 px (not even one scale fits).
    """
    if data_range <= 0:
        raise InputError(f"data_range must be > 0, got {data_range}")
    check_images(x, value_range=(0.0, data_range), name="x")
    check_images(y, value_range=(0.0, data_range), name="y")
    if x.shape != y.shape:
        raise InputError(f"x and y must have the same shape (paired images), got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dtype != y.dtype:
        y = y.to(x.dtype)
    h, w = x.shape[-2:]
    most = max_scales((h, w))
    if most == 0:
        raise InputError(f"MS-SSIM needs images of at least {WINDOW}×{WINDOW} px (the Gaussian window), got {h}×{w}")
    if scales is None:
        scales = most
    elif not 1 <= scales <= most:
        raise InputError(f"scales must be in 1..{most} for {h}×{w} images (side ≥ 11·2^(scales−1)), got {scales}")
    return multiscale_structural_similarity_index_measure(
        x, y, gaussian_kernel=True, sigma=SIGMA, kernel_size=WINDOW, reduction="none",
        data_range=float(data_range), k1=K1, k2=K2, betas=scale_weights(scales), normalize="relu")


class MSSSIM(Metric):
    """Mean MS-SSIM over paired images: update(real=, fake=) with (N, C, H, W) batches in
    [0, data_range], pair i of real with pair i of fake; compute() → scalar tensor (the mean over
    all pairs seen, across processes). The scale count follows `ms_ssim`."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, *, data_range: float = 1.0, scales: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.data_range, self.scales = data_range, scales
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, *, real: torch.Tensor, fake: torch.Tensor) -> None:
        values = ms_ssim(real, fake, data_range=self.data_range, scales=self.scales)
        self.total += values.double().sum()
        self.count += len(values)

    def compute(self) -> torch.Tensor:
        if self.count == 0:
            raise InputError("MSSSIM.compute() called before any update(real=, fake=)")
        return self.total / self.count
