"""Analyses of trained models: latent-space pictures (more to come: SNR, reconstruction, probes)."""
