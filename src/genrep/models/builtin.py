"""Registers the built-in models."""

from genrep.models.dcgan import DCGAN, DCGANConfig
from genrep.models.registry import condition_for, register_model
from genrep.models.sinkhorn_ae import SinkhornAEConfig, SinkhornAutoencoder
from genrep.models.vae import VAE, VAEConfig
from genrep.models.wae import WAE, WAEConfig


def _vae(config, spec, data):
    return VAE(config, image_shape=spec.image_shape, value_range=spec.value_range)


def _cvae(config, spec, data):
    return VAE(config, image_shape=spec.image_shape, value_range=spec.value_range, condition=condition_for(spec, data))


register_model("vae", config_cls=VAEConfig, build=_vae, description="variational autoencoder (MLP or conv)")
register_model("cvae", config_cls=VAEConfig, build=_cvae, conditional=True,
               description="conditional VAE on class labels or condition vectors")


def _e2e_sae(config, spec, data):
    return SinkhornAutoencoder(config, image_shape=spec.image_shape, value_range=spec.value_range)


def _ce2e_sae(config, spec, data):
    return SinkhornAutoencoder(config, image_shape=spec.image_shape, value_range=spec.value_range,
                               condition=condition_for(spec, data))


register_model("e2e-sae", config_cls=SinkhornAEConfig, build=_e2e_sae,
               description="end-to-end Sinkhorn autoencoder with a noise generator (thesis ch.4)")
register_model("ce2e-sae", config_cls=SinkhornAEConfig, build=_ce2e_sae, conditional=True,
               description="conditional e2e Sinkhorn autoencoder: y enters only the noise generator")


# WAE-MMD and the conditional WAE (Tolstikhin et al. 2018; thesis ch.4 baselines)
def _wae(config, spec, data):
    return WAE(config, image_shape=spec.image_shape, value_range=spec.value_range)


def _cwae(config, spec, data):
    return WAE(config, image_shape=spec.image_shape, value_range=spec.value_range, condition=condition_for(spec, data))


register_model("wae", config_cls=WAEConfig, build=_wae, description="Wasserstein autoencoder with the IMQ-kernel MMD")
register_model("cwae", config_cls=WAEConfig, build=_cwae, conditional=True,
               description="conditional WAE-MMD on class labels or condition vectors")


# DCGAN and the conditional DCGAN (Radford et al. 2016; thesis ch.4 baseline)
def _dcgan(config, spec, data):
    return DCGAN(config, image_shape=spec.image_shape, value_range=spec.value_range)


def _cdcgan(config, spec, data):
    return DCGAN(config, image_shape=spec.image_shape, value_range=spec.value_range,
                 condition=condition_for(spec, data))


register_model("dcgan", config_cls=DCGANConfig, build=_dcgan, description="deep convolutional GAN")
register_model("cdcgan", config_cls=DCGANConfig, build=_cdcgan, conditional=True,
               description="conditional DCGAN on class labels or condition vectors")


# DDGM (Ho et al. 2020; thesis ch. 2.3, 5), its class-conditional version, and DAED (thesis ch. 5.6)
from genrep.errors import ConfigError  # noqa: E402
from genrep.models.daed import DAED, DAEDConfig  # noqa: E402
from genrep.models.ddgm import DDGM, DDGMConfig  # noqa: E402


def _ddgm(config, spec, data):
    return DDGM(config, image_shape=spec.image_shape, value_range=spec.value_range)


def _cddgm(config, spec, data):
    if spec.num_classes is None:
        raise ConfigError(f"cddgm is conditioned on class labels, but {spec.name} has none")
    return DDGM(config, image_shape=spec.image_shape, value_range=spec.value_range, num_classes=spec.num_classes)


def _daed(config, spec, data):
    return DAED(config, image_shape=spec.image_shape, value_range=spec.value_range)


register_model("ddgm", config_cls=DDGMConfig, build=_ddgm,
               description="denoising diffusion model (UNet; simple/VLB/hybrid loss, ancestral/DDIM sampling)")
register_model("cddgm", config_cls=DDGMConfig, build=_cddgm, conditional=True,
               description="class-conditional DDGM (label embedding in the UNet)")
register_model("daed", config_cls=DAEDConfig, build=_daed,
               description="denoising autoencoder with diffusion: a DAE for x0<-x1 plus a shortened DDGM (thesis ch.5)")


# Joint diffusion model (thesis ch. 6): a DDGM whose UNet encoder feeds a classifier head
from genrep.models.joint_diffusion import JointDiffusion, JointDiffusionConfig  # noqa: E402


def _joint_ddgm(config, spec, data):
    buffer = config.classifier.buffer_size
    if buffer is not None and data is not None and data.labels is not None and buffer > int((data.labels >= 0).sum()):
        raise ConfigError(f"model.classifier.buffer_size ({buffer}) is larger than the {int((data.labels >= 0).sum())}"
                          " labelled training images: it would never release; lower it or label more data")
    if spec.num_classes is not None:
        return JointDiffusion(config, image_shape=spec.image_shape, value_range=spec.value_range,
                              num_classes=spec.num_classes)
    if spec.cond_dim is not None and (data is None or bool(((data.conditions == 0) | (data.conditions == 1)).all())):
        return JointDiffusion(config, image_shape=spec.image_shape, value_range=spec.value_range,
                              num_attributes=spec.cond_dim)
    raise ConfigError(f"joint-ddgm trains a classifier, but {spec.name} has neither class labels nor binary attributes")


register_model("joint-ddgm", config_cls=JointDiffusionConfig, build=_joint_ddgm,
               description="joint diffusion model: a DDGM plus a classifier on its UNet features (thesis ch.6)")


# The UNet-encoder classifiers of ch. 6: the stand-alone classifier and the noisy classifier of classifier guidance
from genrep.models.unet_classifier import UNetClassifier, UNetClassifierConfig  # noqa: E402


def _unet_classifier(config, spec, data):
    if spec.num_classes is None:
        raise ConfigError(f"unet-classifier needs class labels, but {spec.name} has none")
    return UNetClassifier(config, image_shape=spec.image_shape, value_range=spec.value_range,
                          num_classes=spec.num_classes)


register_model("unet-classifier", config_cls=UNetClassifierConfig, build=_unet_classifier, generative=False,
               description="classifier on the diffusion UNet's encoder (clean, or noisy x_t for classifier guidance)")
