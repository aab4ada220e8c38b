"""Multiband VAE (thesis ch.9) and the generative continual-learning baselines on its two-latent VAE."""

from genrep.continual.multiband.baselines import JointVAE, RegularisedVAE, SeparateVAEs
from genrep.continual.multiband.multiband import MultibandVAE
from genrep.continual.multiband.settings import BoundSettings, MultibandSettings, RegularisedSettings, VAESettings
from genrep.continual.multiband.vae import GenerativePart, TwoLatentVAE

__all__ = ["BoundSettings", "GenerativePart", "JointVAE", "MultibandSettings", "MultibandVAE", "RegularisedSettings",
           "RegularisedVAE", "SeparateVAEs", "TwoLatentVAE", "VAESettings"]
