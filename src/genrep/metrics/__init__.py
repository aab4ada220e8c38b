"""Evaluation: feature extractors and metrics (FID, PRD, improved P&R, IS, KID, sFID, MS-SSIM,
Sinkhorn, calorimeter channels), as plain functions on arrays and torchmetrics-style classes."""
