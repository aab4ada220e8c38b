"""DAED: Denoising Auto-Encoder with Diffusion (thesis ch. 5.6, Eq. 5.4–5.5), and the two-stage variant.

DAED splits a DDGM into a *denoiser* and a *generator* with separate parameters:

- the DAE f_φ (its own `UNet`, `dae`) maps x_1 ~ q(x_1|x_0) = N(√(1−β_1) x_0, β_1 I) back to x_0
  (ℓ_DAE in Eq. 5.5);
- a DDGM (another `UNet`, `unet`) models x_1 … x_{T′} (ℓ_D in Eq. 5.5).

Both live on one process of T′ steps (0-based index t = thesis step t + 1): index 0 is the DAE's
corruption with β[0] = β_1, indices 1 … T′−1 the DDGM's.

What comes from where (METHODS.md §2):

- thesis: the split into two UNets and the objective (5.4–5.5); the timestep sampler p(t) ∝ β_t
  over all T′ steps including the DAE's (ch. 5.9.5; `dae_sampler="beta"`, the default); the same
  architecture for both networks; the two-stage experiment (ch. 5.7.1: train a DDGM, then replace
  its first steps by a DAE at a switching point).
- reference code: the schedule "linear_combine" (a fresh linear schedule of length T′ with
  β[0] := β_1; `genrep.diffusion.linear_combine_betas`); T′ = T − argmin_t |ᾱ_t − (1−β_1)| on the
  T-step schedule (`steps_rule="argmin"`), or the T′ of the published runs (`steps_rule="published"`,
  e.g. T = 500, β_1 = 0.1 → 468); the "dae_uniform" sampler (`dae_sampler="first-step"`: weight
  β_1·T′ on t = 0, 1 elsewhere); the DAE losses — ε-MSE at t = 0 for `loss="simple"` (the DAE
  predicts ε, x̂_0 = (x_1 − √β_1 ε̂)/√(1−β_1)) and x̂_0-MSE for `loss="vlb"` (the DAE predicts x_0) —
  and the deterministic last step x_0 = f_φ(x_1) (no noise); the two-stage switching point
  argmin_t |ᾱ_t − (1−β_1)| (`genrep.diffusion.switching_step`).
- genrep: `schedule="cosine"` (a fresh cosine schedule of length T′ with β[0] := β_1; neither the
  thesis nor the reference trains it), `dae_sampler="uniform"`, respaced / DDIM sampling of the
  DDGM part (`sample_steps`, `sampler`).

Every sampler returns importance weights 1/(T′·p_t), so the weighted objective stays the uniform
average over the T′ terms; only its variance changes. The DDGM part trains with the usual loss:
"simple" → ε-MSE with σ² = β_t; "vlb" → T′·L_t (KL terms, Eq. 2.9) with a learned-range variance.

Training step: t ~ p(t) over 0 … T′−1; rows with t = 0 go to the DAE, the others to the DDGM
`UNet` (each network sees only its rows); loss = (Σ_{t_i=0} w_i·L^DAE_i + Σ_{t_i>0} w_i·L^D_i)/B.
Sampling: the reverse DDGM from x_{T′} to x_1 (`sample_steps`: N respaced DDGM steps), then
x_0 = f_φ(x_1).

Two-stage variant (thesis ch. 5.7.1, Fig. 5.7.2): `TwoStageDAE` is a DAE trained (x̂_0-MSE) on
q(x_k|x_0) of a trained DDGM's schedule at the switching index k; `two_stage_sample(ddgm, dae, k, n)`
runs the DDGM from x_T down to level k, then one DAE step to x_0.
"""

from __future__ import annotations

import dataclasses

import torch

from genrep.diffusion import (
    BetaProportionalSampler,
    FirstStepWeightedSampler,
    GaussianDiffusion,
    LossType,
    ModelMeanType,
    ModelVarType,
    SpacedDiffusion,
    TimestepSampler,
    UniformSampler,
    cosine_betas,
    get_betas,
    linear_combine_betas,
    mean_flat,
    shortened_steps,
    space_timesteps,
    switching_step,
)
from genrep.errors import ConfigError, InputError
from genrep.models.base import GenerativeModel, Output
from genrep.models.ddgm import (
    SAMPLERS,
    UNetSettings,
    _choice,
    _positive_int,
    from_model_range,
    reverse_diffusion,
    to_model_range,
)
from genrep.models.unet import UNet

DAED_LOSSES = ("simple", "vlb")
DAED_SCHEDULES = ("linear", "cosine")
STEPS_RULES = ("argmin", "published", "thesis")
DAE_SAMPLERS = ("beta", "first-step", "uniform")

# loss → (model_var_type, loss_type) of the DDGM part
DAED_LOSS_ENUMS = {
    "simple": (ModelVarType.FIXED_LARGE, LossType.SIMPLE),
    "vlb": (ModelVarType.LEARNED_RANGE, LossType.RESCALED_KL),
}


def _check_beta1(key: str, beta1) -> None:
    if isinstance(beta1, bool) or not isinstance(beta1, (int, float)) or not 0.0 < beta1 < 1.0:
        raise ConfigError(f"{key} (variance of q(x_1|x_0)) must lie in (0, 1), got {beta1!r}")


def daed_betas(T_short: int, beta1: float, schedule: str = "linear"):
    """β of the DAED process, float64 (T′,): "linear" → `linear_combine_betas` (reference code);
    "cosine" → `cosine_betas(T′)` with β[0] := β_1 (genrep extension)."""
    if schedule == "linear":
        return linear_combine_betas(T_short, beta1)
    betas = cosine_betas(T_short)
    betas[0] = beta1
    return betas


@dataclasses.dataclass
class DAEDConfig:
    """steps: T, the length of the DDGM the DAED replaces. beta1: variance of q(x_1|x_0) (the
    thesis uses 0.001, 0.025, 0.1, 0.2, 0.3). schedule: "linear" (reference "linear_combine") |
    "cosine" (genrep). steps_rule: how T′ follows from (T, β_1): "argmin" (computed, any T/β_1) |
    "published" (the thesis tables' T′, linear only) | "thesis" (published where it exists, else
    argmin). loss: "simple" | "vlb". dae_sampler: "beta"
    (thesis, p ∝ β_t) | "first-step" (reference, weight β_1·T′ on t = 0) | "uniform".
    sample_steps: null = all T′−1 DDGM steps, else N respaced DDGM steps; sampler "ancestral" |
    "ddim" (ddim_eta). clip_denoised: clamp x̂_0 to [-1, 1] while sampling (and the DAE output).
    unet / dae_unet: the DDGM's and the DAE's UNet (`UNetSettings`; the thesis uses the same
    architecture for both: the reference FashionMNIST UNet, see `UNetSettings`).
    Reference FashionMNIST runs: T = 500, β_1 ∈ {0.001, 0.025, 0.1, 0.2, 0.3}, steps_rule "published"."""

    steps: int = 1000
    beta1: float = 0.1
    schedule: str = "linear"
    steps_rule: str = "argmin"
    loss: str = "simple"
    dae_sampler: str = "beta"
    sample_steps: int | None = None
    sampler: str = "ancestral"
    ddim_eta: float = 0.0
    clip_denoised: bool = True
    unet: UNetSettings = dataclasses.field(default_factory=UNetSettings)
    dae_unet: UNetSettings = dataclasses.field(default_factory=UNetSettings)

    def __post_init__(self):
        _positive_int("model.steps", self.steps)
        _check_beta1("model.beta1", self.beta1)
        self.beta1 = float(self.beta1)
        _choice("model.schedule", self.schedule, DAED_SCHEDULES)
        _choice("model.steps_rule", self.steps_rule, STEPS_RULES)
        _choice("model.loss", self.loss, DAED_LOSSES)
        _choice("model.dae_sampler", self.dae_sampler, DAE_SAMPLERS)
        _choice("model.sampler", self.sampler, SAMPLERS)
        if isinstance(self.ddim_eta, bool) or not isinstance(self.ddim_eta, (int, float)) or self.ddim_eta < 0:
            raise ConfigError(f"model.ddim_eta must be a number >= 0, got {self.ddim_eta!r}")
        if not isinstance(self.clip_denoised, bool):
            raise ConfigError(f"model.clip_denoised must be true or false, got {self.clip_denoised!r}")
        for key in ("unet", "dae_unet"):
            if isinstance(getattr(self, key), dict):
                setattr(self, key, UNetSettings(**getattr(self, key)))
        try:
            T_short = self.shortened_steps
        except ConfigError as err:
            raise ConfigError(f"model.steps_rule / model.beta1 / model.schedule: {err}") from None
        if T_short < 2:
            raise ConfigError(f"model.beta1={self.beta1:g} leaves T′={T_short} steps of model.steps={self.steps}:"
                              " the DDGM part needs at least one step (use a smaller beta1 or more steps)")
        try:
            daed_betas(T_short, self.beta1, self.schedule)
        except ConfigError as err:
            raise ConfigError(f"model.steps: the DAED process of T′={T_short} steps is invalid: {err}") from None
        if self.sample_steps is not None:
            _positive_int("model.sample_steps", self.sample_steps)
            if self.sample_steps > T_short - 1:
                raise ConfigError(f"model.sample_steps ({self.sample_steps}) cannot exceed the T′−1 = {T_short - 1}"
                                  " DDGM steps of the DAED")

    @property
    def shortened_steps(self) -> int:
        """T′, the length of the DAED process (DAE step + T′−1 DDGM steps)."""
        return shortened_steps(self.steps, self.beta1, self.schedule, rule=self.steps_rule)


def _touch(module: torch.nn.Module) -> torch.Tensor:
    """0 · Σ params: a zero that depends on every parameter, so DDP sees them all used."""
    return 0.0 * sum(p.sum() for p in module.parameters())


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class DAED(GenerativeModel):
    """images N×C×H×W in `value_range` → Output(loss, parts: dae, diffusion, mse, vb).

    Parts are contributions to the importance-weighted batch mean: "dae" + "diffusion" = loss;
    "mse" / "vb" the DDGM rows' ε-MSE and VLB term (bits/dim). Attributes: `dae`, `unet`,
    `diffusion` (T′ steps, β[0] = β_1), `sampling_diffusion`, `timestep_sampler`, `T_short`.
    Unconditional: `sample(n, cond)` refuses `cond`."""

    def __init__(self, config: DAEDConfig, *, image_shape, value_range=(0.0, 1.0)):
        super().__init__(image_shape=image_shape, value_range=value_range)
        self.config = config
        self.T_short = config.shortened_steps
        var_type, loss_type = DAED_LOSS_ENUMS[config.loss]
        self.unet = UNet(config.unet.unet_config(self.image_shape, learn_sigma=var_type is ModelVarType.LEARNED_RANGE,
                                                 prefix="model.unet"))
        self.dae = UNet(config.dae_unet.unet_config(self.image_shape, prefix="model.dae_unet"))
        betas = daed_betas(self.T_short, config.beta1, config.schedule)
        self.diffusion = GaussianDiffusion(betas, model_mean_type=ModelMeanType.EPSILON, model_var_type=var_type,
                                           loss_type=loss_type)
        self.sampling_diffusion = self._spaced(config.sample_steps)
        self.timestep_sampler = self._make_sampler()

    def _make_sampler(self) -> TimestepSampler:
        name = self.config.dae_sampler
        if name == "beta":
            return BetaProportionalSampler(self.diffusion.betas)
        if name == "first-step":
            return FirstStepWeightedSampler(self.T_short, self.config.beta1)
        return UniformSampler(self.T_short)

    def _spaced(self, steps: int | None) -> GaussianDiffusion:
        """The process sampled from: all steps, or index 0 (the DAE's) plus N evenly spaced DDGM steps
        (always including indices 1 and T′−1)."""
        n_ddgm = self.T_short - 1
        if steps is None or steps >= n_ddgm:
            return self.diffusion
        kept = {0} | {1 + s for s in space_timesteps(n_ddgm, [int(steps)])}
        return SpacedDiffusion(kept, self.diffusion.betas, model_mean_type=self.diffusion.model_mean_type,
                               model_var_type=self.diffusion.model_var_type, loss_type=self.diffusion.loss_type)

    # ----------------------------------------------------------------------- the DAE
    def dae_loss(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Per-sample DAE loss (N,) for x0 in [-1, 1]: x_1 = √(1−β_1) x_0 + √β_1 ε, then ε-MSE ("simple")
        or x̂_0-MSE ("vlb"), per dimension."""
        t = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
        x1 = self.diffusion.q_sample(x0, t, noise)
        out = self.dae(x1, t)
        target = noise if self.config.loss == "simple" else x0
        return mean_flat((target - out) ** 2)

    def dae_step(self, x1: torch.Tensor) -> torch.Tensor:
        """The deterministic last step x_0 = f_φ(x_1) (no noise): x1 N×C×H×W in [-1, 1]-scale → x̂_0 in
        [-1, 1] (clamped when `clip_denoised`)."""
        t = torch.zeros(x1.shape[0], dtype=torch.long, device=x1.device)
        out = self.dae(x1, t)
        x0 = self.diffusion.predict_x0_from_eps(x1, t, out) if self.config.loss == "simple" else out
        return x0.clamp(-1.0, 1.0) if self.config.clip_denoised else x0

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """DAE reconstruction of images x (N×C×H×W in `value_range`): corrupt with q(x_1|x_0), then
        f_φ; returns N×C×H×W in `value_range` (thesis Table 5.7.2, the transfer experiment)."""
        x = self.check_batch({"x": x}).to(self.device)
        x0 = to_model_range(x, self.value_range)
        t = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
        x1 = self.diffusion.q_sample(x0, t, generator=generator)
        return from_model_range(self.dae_step(x1), self.value_range)

    # ----------------------------------------------------------------------- training
    def forward(self, batch: dict[str, torch.Tensor]) -> Output:
        x = self.check_batch(batch)
        x0 = to_model_range(x, self.value_range)
        n = x0.shape[0]
        t, weights = self.timestep_sampler.sample(n, x0.device)
        noise = torch.randn_like(x0)
        first = t == 0
        zero = x0.new_zeros(())
        dae_part, diff_part, mse, vb = zero, zero, zero, zero
        if bool(first.any()):
            dae_part = (self.dae_loss(x0[first], noise[first]) * weights[first]).sum() / n
        elif _distributed():
            dae_part = _touch(self.dae)
        rest = ~first
        if bool(rest.any()):
            losses = self.diffusion.training_losses(self.unet, x0[rest], t[rest], noise[rest])
            w = weights[rest]
            diff_part = (losses["loss"] * w).sum() / n
            mse, vb = (losses["mse"] * w).sum().detach() / n, (losses["vb"] * w).sum().detach() / n
        elif _distributed():
            diff_part = _touch(self.unet)
        loss = dae_part + diff_part
        return Output(loss, {"dae": dae_part.detach(), "diffusion": diff_part.detach(), "mse": mse, "vb": vb})

    # ----------------------------------------------------------------------- sampling
    def _check_unconditional(self, cond) -> None:
        if cond is not None:
            raise InputError(f"this {type(self).__name__} is unconditional: call sample(n) without cond")

    @torch.no_grad()
    def sample_x1(self, n: int, *, noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                  progress: bool = False) -> torch.Tensor:
        """x_1 (n×C×H×W, [-1, 1] scale, not clamped): the reverse DDGM x_{T′} → x_1 over `sampling_diffusion`."""
        _positive_int("n", n)
        return reverse_diffusion(self.sampling_diffusion, self.unet, (n, *self.image_shape),
                                 sampler=self.config.sampler, t_stop=1, eta=self.config.ddim_eta,
                                 clip_denoised=self.config.clip_denoised, noise=noise, generator=generator,
                                 device=self.device, progress=progress)

    @torch.no_grad()
    def sample(self, n: int, cond: torch.Tensor | None = None, *, noise: torch.Tensor | None = None,
               generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
        """n images (n×C×H×W in `value_range`): DDGM from x_{T′} (`noise`, default N(0, I)) to x_1,
        then x_0 = f_φ(x_1)."""
        self._check_unconditional(cond)
        x1 = self.sample_x1(n, noise=noise, generator=generator, progress=progress)
        return from_model_range(self.dae_step(x1), self.value_range)

    @torch.no_grad()
    def diffusion_bits_per_dim(self, x: torch.Tensor, *, generator: torch.Generator | None = None,
                               progress: bool = False) -> dict[str, torch.Tensor]:
        """The DDGM part of the bound (ℓ_D of Eq. 5.5) in bits/dim for images x in `value_range`:
        "vb" N×(T′−1) the KL terms of indices 1 … T′−1, "prior_bpd" (N,), "total_bpd" = Σ vb + prior
        (the DAE's term is not included: it is trained by MSE, with no likelihood scale).
        For the loss-per-step comparison of thesis Fig. 5.9.8."""
        x = self.check_batch({"x": x}).to(self.device)
        x0 = to_model_range(x, self.value_range)
        terms = self.diffusion.vlb_terms_bpd(self.unet, x0, clip_denoised=self.config.clip_denoised,
                                             generator=generator, progress=progress)
        vb = terms["vb"][:, 1:]
        return {"vb": vb, "prior_bpd": terms["prior_bpd"], "total_bpd": vb.sum(1) + terms["prior_bpd"]}


# --------------------------------------------------------------------------------------------- two-stage


@dataclasses.dataclass
class TwoStageDAEConfig:
    """A DAE for the two-stage variant: trained on q(x_k|x_0) of the T-step `schedule` of a trained
    DDGM (`steps`, `schedule` must match it). k = `switch_step` (0-based) if given, else the
    reference rule argmin_t |ᾱ_t − (1−β_1)| (`genrep.diffusion.switching_step`) for `beta1`.
    The DAE predicts x̂_0 (x̂_0-MSE). unet: its `UNetSettings`."""

    steps: int = 1000
    schedule: str = "linear"
    beta1: float = 0.1
    switch_step: int | None = None
    clip_denoised: bool = True
    unet: UNetSettings = dataclasses.field(default_factory=UNetSettings)

    def __post_init__(self):
        _positive_int("model.steps", self.steps)
        _choice("model.schedule", self.schedule, DAED_SCHEDULES)
        _check_beta1("model.beta1", self.beta1)
        if isinstance(self.unet, dict):
            self.unet = UNetSettings(**self.unet)
        try:
            get_betas(self.schedule, self.steps)
        except ConfigError as err:
            raise ConfigError(f"model.steps / model.schedule: {err}") from None
        if self.switch_step is not None:
            _positive_int("model.switch_step", self.switch_step, minimum=0)
            if self.switch_step >= self.steps:
                raise ConfigError(f"model.switch_step must lie in [0, {self.steps - 1}], got {self.switch_step}")

    @property
    def resolved_switch_step(self) -> int:
        if self.switch_step is not None:
            return self.switch_step
        return switching_step(self.steps, self.beta1, self.schedule)


class TwoStageDAE(GenerativeModel):
    """The denoiser of the two-stage DAED: f_φ(x_k) → x̂_0 for x_k ~ q(x_k|x_0) of a T-step schedule.

    forward(batch) → Output(loss = x̂_0-MSE per dimension, parts: mse). It generates only together
    with a DDGM: `two_stage_sample(ddgm, dae, dae.switch_step, n)`; `sample` raises."""

    def __init__(self, config: TwoStageDAEConfig, *, image_shape, value_range=(0.0, 1.0)):
        super().__init__(image_shape=image_shape, value_range=value_range)
        self.config = config
        self.switch_step = config.resolved_switch_step
        self.unet = UNet(config.unet.unet_config(self.image_shape, prefix="model.unet"))
        self.diffusion = GaussianDiffusion(get_betas(config.schedule, config.steps))

    @classmethod
    def for_ddgm(cls, ddgm, *, beta1: float = 0.1, switch_step: int | None = None,
                 unet: UNetSettings | None = None) -> TwoStageDAE:
        """A DAE matching a `DDGM`'s schedule, image shape and value range."""
        cfg = TwoStageDAEConfig(steps=ddgm.config.steps, schedule=ddgm.config.schedule, beta1=beta1,
                                switch_step=switch_step, clip_denoised=ddgm.config.clip_denoised,
                                unet=unet if unet is not None else UNetSettings())
        return cls(cfg, image_shape=ddgm.image_shape, value_range=ddgm.value_range)

    def _t(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0],), self.switch_step, dtype=torch.long, device=x.device)

    def forward(self, batch: dict[str, torch.Tensor]) -> Output:
        x0 = to_model_range(self.check_batch(batch), self.value_range)
        t = self._t(x0)
        x_k = self.diffusion.q_sample(x0, t)
        mse = mean_flat((x0 - self.unet(x_k, t)) ** 2).mean()
        return Output(mse, {"mse": mse.detach()})

    def denoise(self, x_k: torch.Tensor) -> torch.Tensor:
        """x̂_0 = f_φ(x_k) for x_k N×C×H×W at level `switch_step` ([-1, 1] scale) → [-1, 1] (deterministic)."""
        out = self.unet(x_k, self._t(x_k))
        return out.clamp(-1.0, 1.0) if self.config.clip_denoised else out

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Corrupt images x (value_range) with q(x_k|x_0), denoise; returns images in `value_range`."""
        x0 = to_model_range(self.check_batch({"x": x}).to(self.device), self.value_range)
        x_k = self.diffusion.q_sample(x0, self._t(x0), generator=generator)
        return from_model_range(self.denoise(x_k), self.value_range)

    def sample(self, n: int, cond: torch.Tensor | None = None) -> torch.Tensor:
        raise InputError("a two-stage DAE generates only together with a trained DDGM: "
                         "use genrep.models.daed.two_stage_sample(ddgm, dae, switch_t, n)")


@torch.no_grad()
def two_stage_sample(ddgm_model, dae_model: TwoStageDAE, switch_t: int | None, n: int, *,
                     cond: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                     generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
    """Two-stage DAED sampling (thesis ch. 5.7.1): the trained `ddgm_model` (a `DDGM`) runs its full
    T-step reverse process from x_T (`noise`, default N(0, I)) down to level `switch_t` (0-based, the
    level of `q_sample(x0, switch_t)`; steps T−1 … switch_t+1), then `dae_model` maps that x to x_0 in
    one deterministic step. switch_t None = the DAE's own `switch_step`. Returns n images in the
    DDGM's value range."""
    k = dae_model.switch_step if switch_t is None else int(switch_t)
    if k != dae_model.switch_step:
        raise InputError(f"the DAE was trained for switching step {dae_model.switch_step}, got switch_t={k}")
    T = ddgm_model.diffusion.num_timesteps
    if not 0 <= k < T:
        raise InputError(f"switch_t must lie in [0, {T - 1}], got {k}")
    if dae_model.diffusion.num_timesteps != T or not torch.allclose(
            dae_model.diffusion.alphas_cumprod[k], ddgm_model.diffusion.alphas_cumprod[k]):
        raise InputError("the DAE was trained on another noise schedule than the DDGM's "
                         "(TwoStageDAEConfig.steps / schedule must match the DDGM's)")
    if tuple(dae_model.image_shape) != tuple(ddgm_model.image_shape):
        raise InputError(f"image shapes differ: DDGM {ddgm_model.image_shape}, DAE {dae_model.image_shape}")
    shape = (n, *ddgm_model.image_shape)
    if k == T - 1:  # nothing left for the DDGM: the DAE denoises x_T itself
        x_k = noise.to(ddgm_model.device) if noise is not None else torch.randn(shape, generator=generator).to(
            ddgm_model.device)
    else:
        x_k = ddgm_model.sample_to(n, k + 1, cond, noise=noise, generator=generator, progress=progress)
    x0 = dae_model.denoise(x_k.to(dae_model.device))
    return from_model_range(x0, ddgm_model.value_range)
