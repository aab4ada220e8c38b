"""Evaluation: feature extractors and metrics (FID, PRD, improved P&R, IS, KID, sFID, MS-SSIM,
Sinkhorn, calorimeter channels), as plain functions on arrays and torchmetrics-style classes.

Functions take 2-D feature arrays (numpy or torch; `real` and `fake` keyword arguments where the
order matters) and return Python floats; classes accumulate `update(real=..., fake=...)` in
float64 states that reduce across processes under DDP. The protocol (which features, sample
counts, splits) is in docs/evaluation.md; `genrep evaluate` runs it from the command line.
"""

from genrep.metrics.calorimeter import calorimeter_channels, channel_mae, channel_wasserstein
from genrep.metrics.features import FeatureExtractor, get_extractor, load_inception, load_lenet, wrap_module
from genrep.metrics.frechet import FID, fid, fid_from_stats, gaussian_stats
from genrep.metrics.improved_pr import ImprovedPrecisionRecall, improved_precision_recall
from genrep.metrics.iscore import InceptionScore, inception_score
from genrep.metrics.kernel_distance import KID, kid
from genrep.metrics.msssim import MSSSIM, ms_ssim
from genrep.metrics.prd_curves import PRD, prd, prd_curve
from genrep.metrics.sinkhorn import SinkhornDivergence, sinkhorn_divergence

__all__ = [
    "FID", "KID", "MSSSIM", "PRD", "FeatureExtractor", "ImprovedPrecisionRecall", "InceptionScore",
    "SinkhornDivergence", "calorimeter_channels", "channel_mae", "channel_wasserstein", "fid", "fid_from_stats",
    "gaussian_stats", "get_extractor", "improved_precision_recall", "inception_score", "kid", "load_inception",
    "load_lenet", "ms_ssim", "prd", "prd_curve", "sinkhorn_divergence", "wrap_module",
]
