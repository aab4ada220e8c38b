"""Denoising diffusion generative model (DDGM; Ho et al. 2020, Nichol & Dhariwal 2021; thesis ch. 2.3, 5).

A `UNet` ε_θ(x_t, t[, y]) trained through a `GaussianDiffusion` (genrep.diffusion) under the model
contract: `forward(batch) -> Output(loss, parts)`, `sample(n, cond=None)` in the data's value range.

Images are mapped from the data's `value_range` to [-1, 1] internally (the range the diffusion
process, its x̂_0 clipping and the discretised decoder likelihood Eq. 2.10–2.11 assume) and back.

Objective (`DDGMConfig.loss`) → GaussianDiffusion enums (mean type is always ε, `ModelMeanType.EPSILON`):

    loss      model_var_type                  loss_type                  UNet output
    "simple"  FIXED_LARGE (σ² = β_t)          SIMPLE  (Eq. 2.13)         C channels (ε)
    "vlb"     LEARNED_RANGE (β̃_t … β_t)       RESCALED_KL (T·L_t, Eq. 2.9;   2C channels (ε, v)
                                               what `--use_kl True` trains in the reference code)
    "hybrid"  LEARNED_RANGE                   HYBRID  (L_simple + 0.001·L_vlb)  2C channels

Training step: t ~ p(t) from the timestep sampler ("uniform": Ho et al.; "loss-aware": improved-
diffusion's loss-second-moment resampler, fed with the per-sample losses of every training step),
importance weights w_t = 1/(T·p_t), loss = mean_i(w_i · L_i) (an unbiased estimate of the uniform
objective for either sampler). The loss-aware sampler's history lives in buffers
(`sampler_loss_history`, `sampler_loss_counts`), so checkpoints and `--resume` keep it.

Sampling: ancestral (`p_sample_loop`, Ho et al. Alg. 2) or DDIM (η = `ddim_eta`), over all T steps
or, with `sample_steps = N`, over N evenly spaced steps of the trained process (`SpacedDiffusion`,
section counts [N]; for learned variances the respaced β keep ᾱ, improved-diffusion's respacing).

Class-conditional DDGM ("cddgm"): `num_classes` adds the UNet's label embedding; batches need "y",
`sample(n, cond)` takes int64 labels (n,) (they cycle 0..K−1 when omitted).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from genrep.diffusion import (
    GaussianDiffusion,
    LossAwareSampler,
    LossType,
    ModelMeanType,
    ModelVarType,
    SpacedDiffusion,
    TimestepSampler,
    UniformSampler,
    get_betas,
    space_timesteps,
)
from genrep.errors import ConfigError, InputError
from genrep.models.base import GenerativeModel, Output
from genrep.models.unet import UNet, UNetConfig

LOSSES = ("simple", "vlb", "hybrid")
SCHEDULES = ("linear", "cosine")
TIMESTEP_SAMPLERS = ("uniform", "loss-aware")
SAMPLERS = ("ancestral", "ddim")

# loss → (model_var_type, loss_type); see the module docstring
LOSS_ENUMS: dict[str, tuple[ModelVarType, LossType]] = {
    "simple": (ModelVarType.FIXED_LARGE, LossType.SIMPLE),
    "vlb": (ModelVarType.LEARNED_RANGE, LossType.RESCALED_KL),
    "hybrid": (ModelVarType.LEARNED_RANGE, LossType.HYBRID),
}


def _choice(key: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}; got {value!r}")


def _positive_int(key: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")


@dataclasses.dataclass
class UNetSettings:
    """The diffusion UNet's size (see `genrep.models.unet.UNetConfig` for each field; channels,
    image size, class count and `learn_sigma` come from the data and the loss).

    Defaults are small, for CPU runs: 32 channels, mult (1, 2, 2), 2 ResBlocks per level,
    attention only in the middle block, dropout 0.1. The reference FashionMNIST UNet (thesis
    Table 5.9.4, METHODS.md §2) is `model_channels=64, channel_mult=[1, 2, 2], num_res_blocks=3,
    attention_resolutions=null (reference rule: full-resolution attention at 28×28), num_heads=4,
    dropout=0.3` (the thesis says three heads; 4 is the reference code's and divides 64).
    `attention_resolutions`: feature-map sides with attention, [] for none, null for the reference
    rule. `autocast: bf16` runs the UNet in bfloat16 (faster on CPUs with AMX)."""

    model_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] | None = ()
    middle_attention: bool = True
    num_heads: int = 4
    dropout: float = 0.1
    autocast: str | None = None

    def unet_config(self, image_shape, *, learn_sigma: bool = False, num_classes: int | None = None,
                    prefix: str = "model.unet") -> UNetConfig:
        """The `UNetConfig` for images C×H×W; errors name `prefix`.<key>."""
        try:
            return UNetConfig(in_channels=int(image_shape[0]), image_size=int(image_shape[1]),
                              learn_sigma=learn_sigma, num_classes=num_classes,
                              model_channels=self.model_channels, channel_mult=tuple(self.channel_mult),
                              num_res_blocks=self.num_res_blocks,
                              attention_resolutions=(None if self.attention_resolutions is None
                                                     else tuple(self.attention_resolutions)),
                              middle_attention=self.middle_attention, num_heads=self.num_heads,
                              dropout=self.dropout, autocast=self.autocast)
        except ConfigError as err:
            raise ConfigError(str(err).replace("unet.", prefix + ".")) from None


@dataclasses.dataclass
class DDGMConfig:
    """steps: T. schedule: "linear" (Ho et al., T > 20) | "cosine" (Nichol & Dhariwal).
    loss: "simple" | "vlb" | "hybrid" (module docstring). timestep_sampler: "uniform" | "loss-aware".
    sample_steps: null = all T steps, else N respaced steps. sampler: "ancestral" | "ddim" (with
    ddim_eta). clip_denoised: clamp x̂_0 to [-1, 1] while sampling and in `nll_bits_per_dim`.
    unet: `UNetSettings`. The reference FashionMNIST DDGM: T = 500, linear, batch 128, AdamW 1e-4,
    100k steps (train.* settings), UNet as in `UNetSettings`'s docstring."""

    steps: int = 1000
    schedule: str = "linear"
    loss: str = "simple"
    timestep_sampler: str = "uniform"
    sample_steps: int | None = None
    sampler: str = "ancestral"
    ddim_eta: float = 0.0
    clip_denoised: bool = True
    unet: UNetSettings = dataclasses.field(default_factory=UNetSettings)

    def __post_init__(self):
        _positive_int("model.steps", self.steps)
        _choice("model.schedule", self.schedule, SCHEDULES)
        _choice("model.loss", self.loss, LOSSES)
        _choice("model.timestep_sampler", self.timestep_sampler, TIMESTEP_SAMPLERS)
        _choice("model.sampler", self.sampler, SAMPLERS)
        if self.sample_steps is not None:
            _positive_int("model.sample_steps", self.sample_steps)
            if self.sample_steps > self.steps:
                raise ConfigError(f"model.sample_steps ({self.sample_steps}) cannot exceed model.steps ({self.steps})")
        if isinstance(self.ddim_eta, bool) or not isinstance(self.ddim_eta, (int, float)) or self.ddim_eta < 0:
            raise ConfigError(f"model.ddim_eta must be a number >= 0, got {self.ddim_eta!r}")
        if not isinstance(self.clip_denoised, bool):
            raise ConfigError(f"model.clip_denoised must be true or false, got {self.clip_denoised!r}")
        if isinstance(self.unet, dict):
            self.unet = UNetSettings(**self.unet)
        try:
            get_betas(self.schedule, self.steps)
        except ConfigError as err:
            raise ConfigError(f"model.steps / model.schedule: {err}") from None

    @property
    def learn_sigma(self) -> bool:
        return LOSS_ENUMS[self.loss][0] is ModelVarType.LEARNED_RANGE


# --------------------------------------------------------------------------------------------- helpers


def to_model_range(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Images in `value_range` → [-1, 1] (clamped, so values within the check tolerance stay in range)."""
    lo, hi = value_range
    return ((x - lo) / (hi - lo) * 2.0 - 1.0).clamp(-1.0, 1.0)


def from_model_range(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Images in [-1, 1] → `value_range` (clamped)."""
    lo, hi = value_range
    return ((x.clamp(-1.0, 1.0) + 1.0) / 2.0 * (hi - lo) + lo).clamp(lo, hi)


def spaced_process(diffusion: GaussianDiffusion, steps: int | None, *, keep_first: bool = False) -> GaussianDiffusion:
    """`diffusion` itself (steps None or = T) or a `SpacedDiffusion` keeping `steps` evenly spaced
    timesteps (first and last always kept; `keep_first` adds index 1 as well, so that a process
    whose index 0 belongs to another network keeps one own step above it)."""
    T = diffusion.num_timesteps
    if steps is None or steps >= T:
        return diffusion
    kept = space_timesteps(T, [int(steps)])
    if keep_first:
        kept.add(1)
    return SpacedDiffusion(kept, diffusion.betas, model_mean_type=diffusion.model_mean_type,
                           model_var_type=diffusion.model_var_type, loss_type=diffusion.loss_type)


def reverse_diffusion(
    diffusion: GaussianDiffusion,
    model: Callable,
    shape,
    *,
    sampler: str = "ancestral",
    t_stop: int = 0,
    eta: float = 0.0,
    clip_denoised: bool = True,
    model_kwargs: dict | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device=None,
    progress: bool = False,
) -> torch.Tensor:
    """Run the reverse process from x at index T−1 (noise, default N(0, I) of `shape`) through the
    steps T−1, …, t_stop; returns the sample at level t_stop − 1 (the data x_0 for t_stop = 0;
    for t_stop = k + 1 the x that `q_sample(x0, k)` models). sampler: "ancestral" (`p_sample`) or
    "ddim" (`ddim_sample` with `eta`; ancestral ignores it). No gradients."""
    return diffusion.sample_loop(model, shape, sampler=sampler, eta=eta if sampler == "ddim" else 0.0,
                                 t_stop=t_stop, clip_denoised=clip_denoised, model_kwargs=model_kwargs, noise=noise,
                                 generator=generator, device=device, progress=progress)


# --------------------------------------------------------------------------------------------- model


class DDGM(GenerativeModel):
    """images N×C×H×W in `value_range` → Output(loss = mean_i w_i·L_i, parts: mse, vb).

    Parts (importance-weighted batch means, so unbiased for the uniform-t average): "mse" the
    ε-MSE per dimension (Eq. 2.13), "vb" the sampled VLB term L_t in bits/dim (a diagnostic for
    "simple"; for "vlb" the loss is T·vb). Attributes: `unet`, `diffusion` (the T-step training
    process), `sampling_diffusion` (respaced when `sample_steps` is set), `timestep_sampler`.
    """

    def __init__(self, config: DDGMConfig, *, image_shape, value_range=(0.0, 1.0), num_classes: int | None = None):
        super().__init__(image_shape=image_shape, value_range=value_range)
        if num_classes is not None:
            _positive_int("num_classes", num_classes)
        self.config = config
        self.num_classes = num_classes
        var_type, loss_type = LOSS_ENUMS[config.loss]
        self.unet = UNet(config.unet.unet_config(self.image_shape, learn_sigma=config.learn_sigma,
                                                 num_classes=num_classes))
        self.diffusion = GaussianDiffusion(get_betas(config.schedule, config.steps),
                                           model_mean_type=ModelMeanType.EPSILON, model_var_type=var_type,
                                           loss_type=loss_type)
        self.sampling_diffusion = spaced_process(self.diffusion, config.sample_steps)
        self.timestep_sampler: TimestepSampler
        if config.timestep_sampler == "loss-aware":
            self.timestep_sampler = LossAwareSampler(self.diffusion)
            h = self.timestep_sampler.history_per_term
            self.register_buffer("sampler_loss_history", torch.zeros(config.steps, h, dtype=torch.float64))
            self.register_buffer("sampler_loss_counts", torch.zeros(config.steps, dtype=torch.long))
        else:
            self.timestep_sampler = UniformSampler(self.diffusion)

    # ----------------------------------------------------------------------- conditioning
    @property
    def conditional(self) -> bool:
        return self.num_classes is not None

    def _model_kwargs(self, y: torch.Tensor | None) -> dict | None:
        return None if y is None else {"y": y}

    def _batch_labels(self, batch) -> torch.Tensor | None:
        if not self.conditional:
            return None
        y = batch.get("y")
        if y is None:
            raise InputError(f"this DDGM is class-conditional ({self.num_classes} classes): the batch needs labels 'y'")
        return y.to(self.device)

    def sampling_labels(self, n: int, cond: torch.Tensor | None) -> torch.Tensor | None:
        """Labels (n,) int64 for sampling: `cond`, or 0, 1, …, K−1, 0, … when omitted; None when unconditional."""
        if not self.conditional:
            if cond is not None:
                raise InputError(f"this {type(self).__name__} is unconditional: call sample(n) without cond")
            return None
        if cond is None:
            return torch.arange(n, device=self.device) % self.num_classes
        if not isinstance(cond, torch.Tensor) or cond.shape != (n,) or cond.is_floating_point():
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise InputError(f"cond must be int64 class labels of shape ({n},), got {got}")
        if int(cond.min()) < 0 or int(cond.max()) >= self.num_classes:
            raise InputError(f"class labels must lie in [0, {self.num_classes - 1}]")
        return cond.to(self.device, torch.long)

    # ----------------------------------------------------------------------- timestep sampler
    def _draw_timesteps(self, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        sampler = self.timestep_sampler
        if isinstance(sampler, LossAwareSampler) and hasattr(self, "sampler_loss_history"):
            sampler._loss_history[:] = self.sampler_loss_history.detach().cpu().numpy()
            sampler._loss_counts[:] = self.sampler_loss_counts.detach().cpu().numpy()
        return sampler.sample(n, device)

    def _update_sampler(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        sampler = self.timestep_sampler
        if not (self.training and isinstance(sampler, LossAwareSampler)):
            return
        sampler.update_with_local_losses(t, losses.detach())
        if hasattr(self, "sampler_loss_history"):
            with torch.no_grad():
                self.sampler_loss_history.copy_(torch.from_numpy(sampler._loss_history))
                self.sampler_loss_counts.copy_(torch.from_numpy(sampler._loss_counts))

    # ----------------------------------------------------------------------- training
    def forward(self, batch: dict[str, torch.Tensor]) -> Output:
        x = self.check_batch(batch, need_condition=self.conditional)
        x0 = to_model_range(x, self.value_range)
        y = self._batch_labels(batch)
        t, weights = self._draw_timesteps(x0.shape[0], x0.device)
        losses = self.diffusion.training_losses(self.unet, x0, t, model_kwargs=self._model_kwargs(y))
        loss = (losses["loss"] * weights).mean()
        self._update_sampler(t, losses["loss"])
        return Output(loss, {"mse": (losses["mse"] * weights).mean().detach(),
                             "vb": (losses["vb"] * weights).mean().detach()})

    # ----------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, n: int, cond: torch.Tensor | None = None, *, noise: torch.Tensor | None = None,
               generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
        """n images (n×C×H×W in `value_range`) by the configured sampler over `sampling_diffusion`.
        `noise`: the starting x_T (n×C×H×W); `generator`: a torch.Generator for reproducible noise."""
        _positive_int("n", n)
        y = self.sampling_labels(n, cond)
        x0 = reverse_diffusion(self.sampling_diffusion, self.unet, (n, *self.image_shape), sampler=self.config.sampler,
                               eta=self.config.ddim_eta, clip_denoised=self.config.clip_denoised,
                               model_kwargs=self._model_kwargs(y), noise=noise, generator=generator,
                               device=self.device, progress=progress)
        return from_model_range(x0, self.value_range)

    @torch.no_grad()
    def sample_to(self, n: int, t_stop: int, cond: torch.Tensor | None = None, *,
                  noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                  progress: bool = False) -> torch.Tensor:
        """Run the full T-step reverse process (`diffusion`, not respaced) from x_T down to level
        t_stop − 1 (steps T−1 … t_stop) and return that x in [-1, 1] (n×C×H×W): a sample of the
        marginal that `diffusion.q_sample(x0, t_stop − 1)` models. Used by the two-stage DAED."""
        _positive_int("n", n)
        y = self.sampling_labels(n, cond)
        return reverse_diffusion(self.diffusion, self.unet, (n, *self.image_shape), sampler=self.config.sampler,
                                 t_stop=t_stop, eta=self.config.ddim_eta, clip_denoised=self.config.clip_denoised,
                                 model_kwargs=self._model_kwargs(y), noise=noise, generator=generator,
                                 device=self.device, progress=progress)

    # ----------------------------------------------------------------------- likelihood
    @torch.no_grad()
    def nll_bits_per_dim(self, x: torch.Tensor, y: torch.Tensor | None = None, *, return_terms: bool = False,
                         generator: torch.Generator | None = None, progress: bool = False):
        """Variational bound on −log p(x) in bits/dim (Eq. 2.9–2.11), one x_t per step (T model calls).

        x: N×C×H×W in `value_range`; y: labels (N,) for a conditional model. The discretised decoder
        assumes 8-bit images (256 levels over [-1, 1]). Returns total_bpd (N,), or with
        `return_terms` the dict of `GaussianDiffusion.vlb_terms_bpd` ("vb" N×T per-step terms,
        "prior_bpd", "total_bpd", "xstart_mse", "mse"), e.g. for the share of the bound per step."""
        x = self.check_batch({"x": x}).to(self.device)
        x0 = to_model_range(x, self.value_range)
        if self.conditional and y is None:
            raise InputError(f"this DDGM is class-conditional: pass labels y of shape ({x.shape[0]},)")
        if not self.conditional and y is not None:
            raise InputError("this DDGM is unconditional: call nll_bits_per_dim(x) without y")
        terms = self.diffusion.vlb_terms_bpd(self.unet, x0, clip_denoised=self.config.clip_denoised,
                                             model_kwargs=self._model_kwargs(self._batch_labels({"y": y})),
                                             generator=generator, progress=progress)
        return terms if return_terms else terms["total_bpd"]
