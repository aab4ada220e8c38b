"""DAED: Denoising Auto-Encoder with Diffusion (thesis ch. 5.6, Eq. 5.4–5.5), and the two-stage variant.

DAED splits a DDGM into a *denoiser* and a *generator* with separate parameters:

- the DAE f_φ (its own `UNet`, `dae`) maps x_1 ~ q(x_1|x_0) = N(√(1−β_1) x_0, β_1 I) back to x_0
  (ℓ_DAE in Eq. 5.5);
- a DDGM (another `UNet`, `unet`) models x_1 … x_{T′} (ℓ_D in Eq. 5.5).

Both live on one process of T′ steps (0-based index t = thesis step t + 1): index 0 is the DAE's
corruption with β[0] = β_1, indices 1 … T′−1 the DDGM's.

What comes from where (METHODS.md §2):

- thesis: the split into two UNets and the objective (5.4–5.5, an x̂_0-predicting DAE:
  `dae_prediction="x0"`, the default of `loss="vlb"`); the timestep sampler p(t) ∝ β_t over all T′
  steps including the DAE's (ch. 5.9.5; `dae_sampler="beta"`); the same architecture for both
  networks; the two-stage experiment (ch. 5.7.1: train a DDGM, then replace its first steps by a
  DAE at a switching point; `TwoStageDAEConfig.mode="thesis"`).
- reference code (the defaults where the thesis prose would starve the DAE, `DAEDConfig`): the
  schedule "linear_combine" (a fresh linear schedule of length T′ with β[0] := β_1;
  `genrep.diffusion.linear_combine_betas`) and, for its "β_1 = 0.001" runs, the plain T-step
  linear schedule (`schedule="plain-linear"`); T′ of the published runs where they exist, else
  T − argmin_t |ᾱ_t − (1−β_1)| on the T-step schedule (`steps_rule="thesis"`; "argmin",
  "published"); the "dae_uniform" sampler (`dae_sampler="first-step"`: weight β[0]·T′ on t = 0, 1
  elsewhere); the ε-predicting DAE (`dae_prediction="eps"`, x̂_0 = (x_1 − √β_1 ε̂)/√(1−β_1)) with
  ε-MSE for `loss="simple"` and (T′−1)·MSE(x̂_0(ε̂), x_0) for `loss="vlb"`; the deterministic last
  step x_0 = f_φ(x_1) (no noise); the two-stage switching point argmin_t |ᾱ_t − (1−β_1)|
  (`genrep.diffusion.switching_step`) and its sampling (`TwoStageDAEConfig.mode="reference"`).
  The reference's DDGM-part KL terms are scaled by T′−1, genrep's by T′: a constant factor on a
  separate network, which Adam ignores.
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
runs the DDGM from x_T down to level k, then one DAE step to x_0 (mode "reference": see
`TwoStageDAEConfig`).
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
    linear_betas,
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
DAED_SCHEDULES = ("linear", "cosine", "plain-linear")
TWO_STAGE_SCHEDULES = ("linear", "cosine")
STEPS_RULES = ("argmin", "published", "thesis")
DAE_SAMPLERS = ("beta", "first-step", "uniform")
DAE_PREDICTIONS = ("eps", "x0")
TWO_STAGE_MODES = ("thesis", "reference")

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
    "plain-linear" → `linear_betas(T′)` unchanged (β[0] = 1e-4·1000/T′, β_1 unused: the reference's
    "DAED β_1 = 0.001" runs); "cosine" → `cosine_betas(T′)` with β[0] := β_1 (genrep extension)."""
    if schedule == "linear":
        return linear_combine_betas(T_short, beta1)
    if schedule == "plain-linear":
        return linear_betas(T_short)
    betas = cosine_betas(T_short)
    betas[0] = beta1
    return betas


@dataclasses.dataclass
class DAEDConfig:
    """steps: T, the length of the DDGM the DAED replaces. beta1: variance of q(x_1|x_0) (the
    thesis uses 0.001, 0.025, 0.1, 0.2, 0.3). schedule: "linear" (reference "linear_combine": a
    fresh linear schedule of length T′ with β[0] := β_1) | "plain-linear" (the reference's "DAED
    β_1 = 0.001" runs: the plain T-step linear schedule, T′ = T, whose own first step β[0] =
    1e-4·1000/T is the DAE's; beta1 is then only a label and steps_rule is not used) | "cosine"
    (genrep). steps_rule: how T′ follows from (T, β_1): "thesis" (the published T′ where it exists,
    else argmin) | "argmin" (computed, any T/β_1) | "published" (the thesis tables' T′, linear only).
    loss: "simple" | "vlb". dae_prediction: what the DAE outputs — "eps" (the reference: ε̂, x̂_0 =
    (x_1 − √β_1 ε̂)/√(1−β_1); loss ε-MSE for "simple", (T′−1)·MSE(x̂_0(ε̂), x_0) for "vlb", the
    reference's `dae_model` VLB term) | "x0" (thesis Eq. 5.5: f_φ(x_1) = x̂_0, loss x̂_0-MSE) | None
    (by loss: "eps" for "simple", "x0" for "vlb"). dae_sampler: "first-step" (the published runs'
    "dae_uniform": weight β[0]·T′ on t = 0, 1 elsewhere) | "beta" (the thesis text, p ∝ β_t) |
    "uniform". sample_steps: null = all T′−1 DDGM steps, else N respaced DDGM steps; sampler
    "ancestral" | "ddim" (ddim_eta). clip_denoised: clamp x̂_0 to [-1, 1] while sampling (and the
    DAE output). unet / dae_unet: the DDGM's and the DAE's UNet (`UNetSettings`; the thesis uses
    the same architecture for both: the reference FashionMNIST UNet, see `UNetSettings`).

    Defaults follow the code behind the published numbers where the thesis prose differs from it
    and the prose version starves a component: with p ∝ β_t and the argmin T′ (T = 500, β_1 = 0.1)
    the DAE would see p(t = 0) = 0.0099 of the batches at T′ = 452, against 0.091 at T′ = 468 in
    the published runs (`steps_rule="thesis"`, `dae_sampler="first-step"`; METHODS.md §2).
    Reference FashionMNIST runs: T = 500, β_1 ∈ {0.001, 0.025, 0.1, 0.2, 0.3}."""

    steps: int = 1000
    beta1: float = 0.1
    schedule: str = "linear"
    steps_rule: str = "thesis"
    loss: str = "simple"
    dae_prediction: str | None = None
    dae_sampler: str = "first-step"
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
        if self.dae_prediction is not None:
            _choice("model.dae_prediction", self.dae_prediction, DAE_PREDICTIONS)
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
        """T′, the length of the DAED process (DAE step + T′−1 DDGM steps); T for "plain-linear"."""
        if self.schedule == "plain-linear":
            return self.steps
        return shortened_steps(self.steps, self.beta1, self.schedule, rule=self.steps_rule)

    @property
    def first_step_beta(self) -> float:
        """β[0], the variance of the DAE's corruption q(x_1|x_0): β_1, or the plain linear schedule's own."""
        return float(daed_betas(self.shortened_steps, self.beta1, self.schedule)[0])

    @property
    def resolved_dae_prediction(self) -> str:
        """"eps" | "x0": `dae_prediction`, or by loss when None ("simple" → "eps", "vlb" → "x0")."""
        if self.dae_prediction is not None:
            return self.dae_prediction
        return "eps" if self.loss == "simple" else "x0"


def daed_timestep_sampler(config: DAEDConfig) -> TimestepSampler:
    """The training sampler of t ∈ 0 … T′−1 named by `config.dae_sampler` (weights 1/(T′·p_t))."""
    T_short = config.shortened_steps
    if config.dae_sampler == "beta":
        return BetaProportionalSampler(daed_betas(T_short, config.beta1, config.schedule))
    if config.dae_sampler == "first-step":
        return FirstStepWeightedSampler(T_short, config.first_step_beta)
    return UniformSampler(T_short)


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
        self.timestep_sampler = daed_timestep_sampler(config)

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
        """Per-sample DAE loss (N,) for x0 in [-1, 1], per dimension: x_1 = √(1−β[0]) x_0 + √β[0] ε, then
        "eps" + "simple": ‖ε − ε̂‖²; "eps" + "vlb": (T′−1)·‖x_0 − x̂_0(ε̂)‖² (the reference's VLB term at
        t = 0, = (T′−1)·β[0]/(1−β[0])·‖ε − ε̂‖²); "x0": ‖x_0 − f_φ(x_1)‖² (Eq. 5.5)."""
        t = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
        x1 = self.diffusion.q_sample(x0, t, noise)
        out = self.dae(x1, t)
        if self.config.resolved_dae_prediction == "x0":
            return mean_flat((x0 - out) ** 2)
        if self.config.loss == "simple":
            return mean_flat((noise - out) ** 2)
        return (self.T_short - 1) * mean_flat((x0 - self.diffusion.predict_x0_from_eps(x1, t, out)) ** 2)

    def dae_step(self, x1: torch.Tensor) -> torch.Tensor:
        """The deterministic last step x_0 = f_φ(x_1) (no noise): x1 N×C×H×W in [-1, 1]-scale → x̂_0 in
        [-1, 1] (clamped when `clip_denoised`)."""
        t = torch.zeros(x1.shape[0], dtype=torch.long, device=x1.device)
        out = self.dae(x1, t)
        eps = self.config.resolved_dae_prediction == "eps"
        x0 = self.diffusion.predict_x0_from_eps(x1, t, out) if eps else out
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
    """A DAE for the two-stage variant of a trained DDGM whose T-step `schedule` (`steps`, `schedule`
    must match it) is switched at k = `switch_step` (0-based) if given, else at the reference rule
    argmin_t |ᾱ_t − (1−β_1)| (`genrep.diffusion.switching_step`) for `beta1`. unet: its `UNetSettings`.

    mode "thesis" (ch. 5.7.1): the DAE is trained on q(x_k|x_0) of the DDGM's schedule and predicts
    x̂_0 (x̂_0-MSE); sampling runs the DDGM to level k, then the DAE.
    mode "reference" (the authors' `image_sample_with_two_models.py`): the DAE is a DAED's, trained at
    noise β_1 (x_1 = √(1−β_1) x_0 + √β_1 ε, time input 0) to predict ε (ε-MSE), x̂_0 = (x − √β_1 ε̂)/√(1−β_1);
    sampling runs the DDGM's steps T−1 … max(k, 1) (to level max(k, 1) − 1), then the DDGM's own
    t = 0 step on that input (its deterministic x̂_0), then the DAE."""

    steps: int = 1000
    schedule: str = "linear"
    beta1: float = 0.1
    switch_step: int | None = None
    clip_denoised: bool = True
    mode: str = "thesis"
    unet: UNetSettings = dataclasses.field(default_factory=UNetSettings)

    def __post_init__(self):
        _positive_int("model.steps", self.steps)
        _choice("model.schedule", self.schedule, TWO_STAGE_SCHEDULES)
        _check_beta1("model.beta1", self.beta1)
        _choice("model.mode", self.mode, TWO_STAGE_MODES)
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
    """The denoiser of the two-stage DAED (`TwoStageDAEConfig.mode`): "thesis" f_φ(x_k) → x̂_0 for
    x_k ~ q(x_k|x_0) of a T-step schedule; "reference" ε̂ = f_φ(x_1, 0) for x_1 ~ N(√(1−β_1) x_0, β_1 I).

    forward(batch) → Output(loss = x̂_0-MSE ("thesis") or ε-MSE ("reference") per dimension, parts: mse).
    It generates only together with a DDGM: `two_stage_sample(ddgm, dae, dae.switch_step, n)`;
    `sample` raises."""

    def __init__(self, config: TwoStageDAEConfig, *, image_shape, value_range=(0.0, 1.0)):
        super().__init__(image_shape=image_shape, value_range=value_range)
        self.config = config
        self.switch_step = config.resolved_switch_step
        self.unet = UNet(config.unet.unet_config(self.image_shape, prefix="model.unet"))
        self.diffusion = GaussianDiffusion(get_betas(config.schedule, config.steps))

    @classmethod
    def for_ddgm(cls, ddgm, *, beta1: float = 0.1, switch_step: int | None = None,
                 unet: UNetSettings | None = None, mode: str = "thesis") -> TwoStageDAE:
        """A DAE matching a `DDGM`'s schedule, image shape and value range."""
        cfg = TwoStageDAEConfig(steps=ddgm.config.steps, schedule=ddgm.config.schedule, beta1=beta1,
                                switch_step=switch_step, clip_denoised=ddgm.config.clip_denoised, mode=mode,
                                unet=unet if unet is not None else UNetSettings())
        return cls(cfg, image_shape=ddgm.image_shape, value_range=ddgm.value_range)

    @property
    def reference(self) -> bool:
        return self.config.mode == "reference"

    def _t(self, x: torch.Tensor) -> torch.Tensor:
        """The DAE's time input: `switch_step` ("thesis") or 0 ("reference", a DAED's DAE)."""
        return torch.full((x.shape[0],), 0 if self.reference else self.switch_step, dtype=torch.long,
                          device=x.device)

    def corrupt(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The DAE's training input: q(x_k|x_0) ("thesis") or √(1−β_1) x_0 + √β_1 ε ("reference")."""
        if self.reference:
            beta1 = self.config.beta1
            return (1.0 - beta1) ** 0.5 * x0 + beta1 ** 0.5 * noise
        return self.diffusion.q_sample(x0, self._t(x0), noise)

    def forward(self, batch: dict[str, torch.Tensor]) -> Output:
        x0 = to_model_range(self.check_batch(batch), self.value_range)
        noise = torch.randn_like(x0)
        out = self.unet(self.corrupt(x0, noise), self._t(x0))
        mse = mean_flat(((noise if self.reference else x0) - out) ** 2).mean()
        return Output(mse, {"mse": mse.detach()})

    def denoise(self, x_k: torch.Tensor) -> torch.Tensor:
        """x̂_0 for x_k N×C×H×W ([-1, 1] scale) → [-1, 1], deterministic: f_φ(x_k) ("thesis"), or
        (x_k − √β_1 ε̂)/√(1−β_1) with ε̂ = f_φ(x_k, 0) ("reference")."""
        out = self.unet(x_k, self._t(x_k))
        if self.reference:
            beta1 = self.config.beta1
            out = (x_k - beta1 ** 0.5 * out) / (1.0 - beta1) ** 0.5
        return out.clamp(-1.0, 1.0) if self.config.clip_denoised else out

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Corrupt images x (value_range) as in training (`corrupt`), denoise; returns images in `value_range`."""
        x0 = to_model_range(self.check_batch({"x": x}).to(self.device), self.value_range)
        noise = self.diffusion.noise_like(x0.shape, dtype=x0.dtype, device=x0.device, generator=generator)
        return from_model_range(self.denoise(self.corrupt(x0, noise)), self.value_range)

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
    if dae_model.reference:
        return _reference_two_stage_sample(ddgm_model, dae_model, k, n, cond=cond, noise=noise, generator=generator,
                                           progress=progress)
    shape = (n, *ddgm_model.image_shape)
    if k == T - 1:  # nothing left for the DDGM: the DAE denoises x_T itself
        x_k = noise.to(ddgm_model.device) if noise is not None else torch.randn(shape, generator=generator).to(
            ddgm_model.device)
    else:
        x_k = ddgm_model.sample_to(n, k + 1, cond, noise=noise, generator=generator, progress=progress)
    x0 = dae_model.denoise(x_k.to(dae_model.device))
    return from_model_range(x0, ddgm_model.value_range)


def _reference_two_stage_sample(ddgm_model, dae_model: TwoStageDAE, k: int, n: int, *, cond, noise, generator,
                                progress: bool) -> torch.Tensor:
    """The reference's two-stage sampling (`p_sample_loop(limit_indices=k)` then a DAE step): the DDGM's
    steps T−1 … max(k, 1), its own t = 0 step on that x (deterministic: the mean x̂_0), then the DAE."""
    y = ddgm_model.sampling_labels(n, cond)
    x = ddgm_model.sample_to(n, max(k, 1), y, noise=noise, generator=generator, progress=progress)
    t0 = torch.zeros(n, dtype=torch.long, device=x.device)
    x = ddgm_model.diffusion.p_mean_variance(ddgm_model.unet, x, t0, clip_denoised=ddgm_model.config.clip_denoised,
                                             model_kwargs=ddgm_model._model_kwargs(y))["mean"]
    x0 = dae_model.denoise(x.to(dae_model.device))
    return from_model_range(x0, ddgm_model.value_range)
