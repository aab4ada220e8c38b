"""Analyses of trained models: latent-space pictures, SNR, reconstruction, VLB share, feature probes."""
