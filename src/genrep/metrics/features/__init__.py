"""Feature extractors for the metrics: LeNet (trained per dataset), FID Inception, or any nn.Module."""
