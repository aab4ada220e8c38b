"""Models (nn.Modules) and the registry that maps CLI names to model classes and configs."""

from genrep.models.base import GenerativeModel, Output
from genrep.models.registry import build_model, get_model_spec, model_names, register_model
from genrep.models.vae import VAE, VAEConfig

__all__ = ["GenerativeModel", "Output", "VAE", "VAEConfig", "build_model", "get_model_spec", "model_names",
           "register_model"]
