"""Models (nn.Modules) and the registry that maps CLI names to model classes and configs."""

from genrep.models.base import GenerativeModel, Output
from genrep.models.daed import DAED, DAEDConfig, TwoStageDAE, TwoStageDAEConfig, two_stage_sample
from genrep.models.dcgan import DCGAN, DCGANConfig
from genrep.models.ddgm import DDGM, DDGMConfig, UNetSettings
from genrep.models.networks import ARCHS
from genrep.models.registry import build_model, get_model_spec, model_names, register_model
from genrep.models.sinkhorn_ae import SinkhornAEConfig, SinkhornAutoencoder
from genrep.models.vae import VAE, VAEConfig
from genrep.models.wae import WAE, WAEConfig

__all__ = ["ARCHS", "DAED", "DAEDConfig", "DCGAN", "DCGANConfig", "DDGM", "DDGMConfig", "GenerativeModel", "Output",
           "SinkhornAEConfig", "SinkhornAutoencoder", "TwoStageDAE", "TwoStageDAEConfig", "UNetSettings", "VAE",
           "VAEConfig", "WAE", "WAEConfig", "build_model", "get_model_spec", "model_names", "register_model",
           "two_stage_sample"]
