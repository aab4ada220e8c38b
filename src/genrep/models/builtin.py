"""Registers the built-in models."""

from genrep.models.registry import condition_for, register_model
from genrep.models.vae import VAE, VAEConfig


def _vae(config, spec, data):
    return VAE(config, image_shape=spec.image_shape, value_range=spec.value_range)


def _cvae(config, spec, data):
    return VAE(config, image_shape=spec.image_shape, value_range=spec.value_range, condition=condition_for(spec, data))


register_model("vae", config_cls=VAEConfig, build=_vae, description="variational autoencoder (MLP or conv)")
register_model("cvae", config_cls=VAEConfig, build=_cvae, conditional=True,
               description="conditional VAE on class labels or condition vectors")
