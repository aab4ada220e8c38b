"""Gaussian diffusion as plain maths (thesis ch. 2.3 and ch. 5): schedules, the forward and reverse
process, the variational bound, DDPM/DDIM sampling with guidance hooks, respacing and timestep
samplers. Models are any callables `model(x_t, t, **kwargs)`; there is no training loop here.

    from genrep.diffusion import create_diffusion, UniformSampler
    diffusion = create_diffusion(1000, "linear")
    t, w = UniformSampler(diffusion).sample(x0.shape[0], x0.device)
    loss = (diffusion.training_losses(model, x0, t)["loss"] * w).mean()
    samples = create_diffusion(1000, "linear", respacing="ddim50").ddim_sample_loop(model, x0.shape)
    x_k = diffusion.sample_loop(model, x0.shape, sampler="ddim", t_start=999, t_stop=k + 1)  # x at level k
"""

from genrep.diffusion.losses import (
    approx_standard_normal_cdf,
    discretized_gaussian_log_likelihood,
    mean_flat,
    normal_kl,
)
from genrep.diffusion.process import GaussianDiffusion, LossType, ModelMeanType, ModelVarType
from genrep.diffusion.respace import RespacedModel, SpacedDiffusion, create_diffusion, space_timesteps
from genrep.diffusion.samplers import (
    BetaProportionalSampler,
    FirstStepWeightedSampler,
    LossAwareSampler,
    LossSecondMomentResampler,
    TimestepSampler,
    UniformSampler,
    create_sampler,
)
from genrep.diffusion.schedules import (
    PUBLISHED_SHORTENED_STEPS,
    betas_for_alpha_bar,
    cosine_betas,
    get_betas,
    linear_betas,
    linear_combine_betas,
    shortened_steps,
    switching_step,
)

__all__ = [
    "GaussianDiffusion",
    "SpacedDiffusion",
    "RespacedModel",
    "ModelMeanType",
    "ModelVarType",
    "LossType",
    "create_diffusion",
    "space_timesteps",
    "linear_betas",
    "cosine_betas",
    "betas_for_alpha_bar",
    "linear_combine_betas",
    "get_betas",
    "shortened_steps",
    "switching_step",
    "PUBLISHED_SHORTENED_STEPS",
    "normal_kl",
    "approx_standard_normal_cdf",
    "discretized_gaussian_log_likelihood",
    "mean_flat",
    "TimestepSampler",
    "UniformSampler",
    "LossAwareSampler",
    "LossSecondMomentResampler",
    "BetaProportionalSampler",
    "FirstStepWeightedSampler",
    "create_sampler",
]
