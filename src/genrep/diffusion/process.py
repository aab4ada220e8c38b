"""The Gaussian diffusion process as a plain object that takes a model (thesis ch. 2.3, Ho et al.
2020, Nichol & Dhariwal 2021), in the style of improved-diffusion.

Conventions
-----------
- Timesteps are 0-based int64 indices t ∈ {0, …, T−1}; index t is the thesis's x_{t+1}: `q_sample`
  at t = 0 gives x_1 ~ q(x_1|x_0), and `p_sample` at t = 0 produces x_0 from x_1.
- Tensors are N×C×… (images N×C×H×W; any trailing shape works, e.g. N×D for toy data). Images for the
  likelihood terms are 8-bit images scaled to [-1, 1] (Eq. 2.10–2.11).
- The model is called as `model(x_t, t, **model_kwargs)` with x_t (N, C, …) and t (N,) int64 and
  returns the ε (or x_0) prediction with C channels, or, for `ModelVarType.LEARNED_RANGE`, 2C
  channels: the prediction then v ∈ [-1, 1] interpolating the log-variance between the posterior
  variance β̃_t and β_t.
- All schedule quantities are float64 tensors; values gathered for a batch are cast to x's dtype.
- Likelihood terms are in bits per dimension (nats / ln 2, averaged over all non-batch dimensions).
"""

from __future__ import annotations

import enum
import functools
import math
from typing import Callable, Iterator

import numpy as np
import torch

from genrep.errors import ConfigError, InputError
from genrep.diffusion.losses import discretized_gaussian_log_likelihood, mean_flat, normal_kl

LN2 = math.log(2.0)


class ModelMeanType(enum.Enum):
    """What the model predicts: the noise ε (Ho et al.) or the clean data x_0."""

    EPSILON = "epsilon"
    START_X = "start_x"


class ModelVarType(enum.Enum):
    """Variance of p(x_{t−1}|x_t): β̃_t (FIXED_SMALL), β_t (FIXED_LARGE, with β̃_1 at t = 0 for a
    better decoder likelihood) or learned between the two (LEARNED_RANGE, Nichol & Dhariwal)."""

    FIXED_SMALL = "fixed_small"
    FIXED_LARGE = "fixed_large"
    LEARNED_RANGE = "learned_range"


class LossType(enum.Enum):
    """Training objective of `GaussianDiffusion.training_losses`.

    SIMPLE (alias MSE): Eq. 2.13, the unweighted ‖ε − ε_θ‖² (or ‖x_0 − x̂_0‖²); with LEARNED_RANGE the
        variance head is trained by the VLB term with the mean frozen (λ = 1 per term), as
        improved-diffusion's LossType.MSE with learn_sigma.
    HYBRID (alias RESCALED_MSE): L_simple + λ·L_vlb with λ = 0.001 on the full sum over T terms, i.e.
        mse + (T/1000)·vb per sampled term, the mean frozen inside vb (Nichol & Dhariwal; needs
        LEARNED_RANGE).
    KL: the sampled VLB term L_t itself (Eq. 2.9), in bits/dim.
    RESCALED_KL: T·L_t, an unbiased estimate of the whole bound (what the reference code's
        `--use_kl True` trains).
    """

    SIMPLE = "simple"
    MSE = "simple"
    HYBRID = "hybrid"
    RESCALED_MSE = "hybrid"
    KL = "kl"
    RESCALED_KL = "rescaled_kl"

    def is_vb(self) -> bool:
        return self in (LossType.KL, LossType.RESCALED_KL)


def _coerce(enum_cls, value):
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, str):
        key = value.strip().lower().replace("-", "_")
        for name, member in enum_cls.__members__.items():
            if key in (name.lower(), member.value):
                return member
    choices = ", ".join(sorted({m.value for m in enum_cls}))
    raise ConfigError(f"unknown {enum_cls.__name__} {value!r}; choose one of {choices}")


def _as_float64(values, name: str) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        arr = values.detach().to("cpu", torch.float64)
    else:
        arr = torch.as_tensor(np.asarray(values, dtype=np.float64))
    if arr.ndim != 1 or arr.numel() == 0:
        raise ConfigError(f"{name} must be a non-empty 1-D sequence, got shape {tuple(arr.shape)}")
    return arr


class GaussianDiffusion:
    """Forward process q, reverse process p_θ, losses and samplers for a fixed β schedule.

    betas: (T,) variances β_1..β_T in (0, 1) (numpy, torch or a list; stored as float64).
    model_mean_type / model_var_type / loss_type: the enums above (or their string values).

    Attributes (float64 tensors of shape (T,), index t = thesis step t+1):
    betas, alphas, alphas_cumprod (ᾱ_t), alphas_cumprod_prev (ᾱ_{t−1}, 1 at t = 0), alphas_cumprod_next,
    sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod, log_one_minus_alphas_cumprod,
    sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod, posterior_variance (β̃_t),
    posterior_log_variance_clipped (log β̃ with β̃_1 at t = 0, where β̃ = 0), posterior_mean_coef1/2.
    """

    def __init__(
        self,
        betas,
        *,
        model_mean_type: ModelMeanType | str = ModelMeanType.EPSILON,
        model_var_type: ModelVarType | str = ModelVarType.FIXED_LARGE,
        loss_type: LossType | str = LossType.SIMPLE,
    ):
        self.model_mean_type = _coerce(ModelMeanType, model_mean_type)
        self.model_var_type = _coerce(ModelVarType, model_var_type)
        self.loss_type = _coerce(LossType, loss_type)
        if self.loss_type is LossType.HYBRID and self.model_var_type is not ModelVarType.LEARNED_RANGE:
            raise ConfigError(
                "loss_type 'hybrid' trains the variance through the VLB term; use model_var_type='learned_range' "
                "(or loss_type='simple' with a fixed variance)"
            )

        betas = _as_float64(betas, "betas")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ConfigError(
                f"betas must lie in (0, 1), got values in [{float(betas.min()):g}, {float(betas.max()):g}]"
            )
        self.betas = betas
        self.num_timesteps = int(betas.shape[0])

        alphas = 1.0 - betas
        self.alphas = alphas
        self.alphas_cumprod = torch.cumprod(alphas, dim=0)  # ᾱ_t, Eq. 2.7
        one = torch.ones(1, dtype=torch.float64)
        self.alphas_cumprod_prev = torch.cat([one, self.alphas_cumprod[:-1]])
        self.alphas_cumprod_next = torch.cat([self.alphas_cumprod[1:], torch.zeros(1, dtype=torch.float64)])

        # q(x_t | x_0), Eq. 2.7
        self.sqrt_alphas_cumprod = torch.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = torch.sqrt(1.0 - self.alphas_cumprod)
        self.log_one_minus_alphas_cumprod = torch.log(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = torch.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = torch.sqrt(1.0 / self.alphas_cumprod - 1.0)

        # q(x_{t−1} | x_t, x_0), Eq. 2.8: β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # β̃ = 0 at t = 0 (x_0 is determined); the log uses β̃ of the next step there.
        first = self.posterior_variance[1:2] if self.num_timesteps > 1 else betas[:1]
        self.posterior_log_variance_clipped = torch.log(torch.cat([first, self.posterior_variance[1:]]))
        # μ̃(x_t, x_0) = coef1 · x_0 + coef2 · x_t, Eq. 2.8
        self.posterior_mean_coef1 = betas * torch.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * torch.sqrt(alphas) / (1.0 - self.alphas_cumprod)

        self.log_betas = torch.log(betas)
        # FIXED_LARGE: β_t, but β̃_1 at t = 0 (improved-diffusion) so the decoder NLL stays sensible.
        self.fixed_large_variance = torch.cat([first, betas[1:]])
        self.fixed_large_log_variance = torch.log(self.fixed_large_variance)

        self._cache: dict[tuple[str, str], torch.Tensor] = {}

    # ------------------------------------------------------------------ helpers
    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(T={self.num_timesteps}, mean={self.model_mean_type.value}, "
            f"var={self.model_var_type.value}, loss={self.loss_type.value})"
        )

    @property
    def learns_variance(self) -> bool:
        return self.model_var_type is ModelVarType.LEARNED_RANGE

    def _extract(self, name: str, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Schedule values `name` at timesteps t (N,), shaped (N, 1, …) to broadcast against x."""
        key = (name, str(x.device))
        arr = self._cache.get(key)
        if arr is None:
            arr = getattr(self, name)
            if x.device.type == "mps":  # no float64 on MPS
                arr = arr.float()
            arr = arr.to(x.device)
            self._cache[key] = arr
        out = arr[t].to(x.dtype)
        return out.reshape(t.shape[0], *([1] * (x.ndim - 1)))

    def _check_t(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, torch.Tensor) or t.ndim != 1 or t.shape[0] != x.shape[0]:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise InputError(f"t must be a 1-D int64 tensor with one timestep per sample ({x.shape[0]}), got {got}")
        if t.is_floating_point() or t.dtype == torch.bool:
            raise InputError(f"t must hold integer timestep indices, got dtype {t.dtype}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_timesteps):
            raise InputError(
                f"timesteps must lie in [0, {self.num_timesteps - 1}], got [{int(t.min())}, {int(t.max())}]"
            )
        return t.to(device=x.device, dtype=torch.long)

    @staticmethod
    def _check_x(x: torch.Tensor, name: str) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2:
            got = f"{type(x).__name__} {tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"{name} must be a float tensor of shape N×C×…, got {got}")

    @staticmethod
    def _check_image_range(x0: torch.Tensor) -> None:
        lo, hi = float(x0.min()), float(x0.max())
        if lo < -1.0 - 1e-4 or hi > 1.0 + 1e-4:
            raise InputError(
                f"the discretised decoder likelihood (Eq. 2.10) needs x0 in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]"
            )

    def _randn(self, shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if generator is None:
            return torch.randn(shape, dtype=like.dtype, device=like.device)
        return torch.randn(shape, dtype=like.dtype, device=generator.device, generator=generator).to(like.device)

    def noise_like(self, shape, *, dtype: torch.dtype | None = None, device=None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """ε ~ N(0, I) of `shape` as the process draws it (dtype / device: torch's defaults if None). With a
        generator the draw happens on the generator's device and is moved to `device`, so a seed gives the
        same noise wherever the result lives."""
        return self._randn(tuple(shape), torch.empty(0, dtype=dtype, device=device), generator)

    def _model_t(self, t: torch.Tensor) -> torch.Tensor:
        """The timestep the model sees for process index t (identity here; respaced processes map back)."""
        return t

    def _call_model(self, model, x: torch.Tensor, t: torch.Tensor, model_kwargs: dict | None) -> torch.Tensor:
        out = model(x, self._model_t(t), **(model_kwargs or {}))
        C = x.shape[1]
        channels = 2 * C if self.learns_variance else C
        if not isinstance(out, torch.Tensor) or out.shape != (x.shape[0], channels, *x.shape[2:]):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            want = (x.shape[0], channels, *x.shape[2:])
            what = "prediction and variance interpolation v (2C channels)" if self.learns_variance else "prediction"
            raise InputError(f"the model must return the {what} with shape {want}, got {got}")
        return out

    # ------------------------------------------------------------------ forward process
    def q_mean_variance(self, x0: torch.Tensor, t: torch.Tensor):
        """q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I), Eq. 2.7. Returns (mean, variance, log_variance), x0's shape."""
        self._check_x(x0, "x0")
        t = self._check_t(t, x0)
        mean = self._extract("sqrt_alphas_cumprod", t, x0) * x0
        variance = (1.0 - self._extract("alphas_cumprod", t, x0)).expand_as(x0)
        log_variance = self._extract("log_one_minus_alphas_cumprod", t, x0).expand_as(x0)
        return mean, variance, log_variance

    def q_sample(
        self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None, *, generator=None
    ) -> torch.Tensor:
        """Sample x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, ε ~ N(0, I) (Eq. 2.7). x0 (N, C, …), t (N,) → x_t (N, C, …)."""
        self._check_x(x0, "x0")
        t = self._check_t(t, x0)
        if noise is None:
            noise = self._randn(x0.shape, x0, generator)
        elif noise.shape != x0.shape:
            raise InputError(f"noise must have x0's shape {tuple(x0.shape)}, got {tuple(noise.shape)}")
        return self._extract("sqrt_alphas_cumprod", t, x0) * x0 + self._extract(
            "sqrt_one_minus_alphas_cumprod", t, x0
        ) * noise

    def q_posterior_mean_variance(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """q(x_{t−1} | x_t, x_0) = N(μ̃, β̃_t I), Eq. 2.8.

        μ̃ = √ᾱ_{t−1} β_t/(1 − ᾱ_t) · x_0 + √α_t (1 − ᾱ_{t−1})/(1 − ᾱ_t) · x_t, β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) · β_t.
        Returns (mean, variance, log_variance_clipped), each with x_t's shape. (The thesis prints √ᾱ_t for
        the x_t coefficient; Ho et al. and the Gaussian conditioning give √α_t, used here.)
        """
        if x0.shape != x_t.shape:
            raise InputError(f"x0 and x_t must have the same shape, got {tuple(x0.shape)} and {tuple(x_t.shape)}")
        t = self._check_t(t, x_t)
        mean = self._extract("posterior_mean_coef1", t, x_t) * x0 + self._extract("posterior_mean_coef2", t, x_t) * x_t
        variance = self._extract("posterior_variance", t, x_t).expand_as(x_t)
        log_variance = self._extract("posterior_log_variance_clipped", t, x_t).expand_as(x_t)
        return mean, variance, log_variance

    def predict_x0_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x̂_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t (Eq. 2.7 solved for x_0). x_t, eps (N, C, …), t (N,)."""
        t = self._check_t(t, x_t)
        return self._extract("sqrt_recip_alphas_cumprod", t, x_t) * x_t - self._extract(
            "sqrt_recipm1_alphas_cumprod", t, x_t
        ) * eps

    def predict_eps_from_x0(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """ε̂ = (x_t − √ᾱ_t x_0) / √(1 − ᾱ_t) (Eq. 2.7 solved for ε). x_t, x0 (N, C, …), t (N,)."""
        t = self._check_t(t, x_t)
        return (self._extract("sqrt_recip_alphas_cumprod", t, x_t) * x_t - x0) / self._extract(
            "sqrt_recipm1_alphas_cumprod", t, x_t
        )

    # ------------------------------------------------------------------ reverse process
    def _p_from_output(
        self,
        output: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        *,
        clip_denoised: bool,
        denoised_fn: Callable | None = None,
    ) -> dict[str, torch.Tensor]:
        C = x_t.shape[1]
        if self.learns_variance:
            pred, v = torch.split(output, C, dim=1)
            min_log = self._extract("posterior_log_variance_clipped", t, x_t)
            max_log = self._extract("log_betas", t, x_t)
            frac = (v + 1) / 2  # v ∈ [-1, 1] → log σ² between log β̃_t and log β_t
            log_variance = frac * max_log + (1 - frac) * min_log
            variance = torch.exp(log_variance)
        else:
            pred = output
            if self.model_var_type is ModelVarType.FIXED_SMALL:
                var_name, log_name = "posterior_variance", "posterior_log_variance_clipped"
            else:
                var_name, log_name = "fixed_large_variance", "fixed_large_log_variance"
            variance = self._extract(var_name, t, x_t).expand_as(x_t)
            log_variance = self._extract(log_name, t, x_t).expand_as(x_t)

        if self.model_mean_type is ModelMeanType.EPSILON:
            pred_xstart = self.predict_x0_from_eps(x_t, t, pred)
        else:
            pred_xstart = pred
        if denoised_fn is not None:
            pred_xstart = denoised_fn(pred_xstart)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1.0, 1.0)
        mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x_t, t)
        return {
            "mean": mean,
            "variance": variance,
            "log_variance": log_variance,
            "pred_xstart": pred_xstart,
            "model_output": pred,
        }

    def p_mean_variance(
        self,
        model,
        x_t: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        model_kwargs: dict | None = None,
        *,
        denoised_fn: Callable | None = None,
    ) -> dict[str, torch.Tensor]:
        """p_θ(x_{t−1} | x_t) = N(μ_θ, Σ_θ) with μ_θ = μ̃(x̂_0(x_t, t), x_t) (Eq. 2.8 at the predicted x_0).

        x_t (N, C, …), t (N,) int64. clip_denoised clamps x̂_0 to [-1, 1] (image data); denoised_fn,
        if given, is applied to x̂_0 first. Returns a dict of tensors shaped like x_t: "mean",
        "variance", "log_variance", "pred_xstart" (x̂_0) and "model_output" (ε̂ or x̂_0 as returned).
        """
        self._check_x(x_t, "x_t")
        t = self._check_t(t, x_t)
        output = self._call_model(model, x_t, t, model_kwargs)
        return self._p_from_output(output, x_t, t, clip_denoised=clip_denoised, denoised_fn=denoised_fn)

    def condition_mean(self, cond_fn, p_out: dict, x_t: torch.Tensor, t: torch.Tensor, model_kwargs=None) -> torch.Tensor:
        """Guided mean μ + Σ ∇_x log p(y|x_t) (Sohl-Dickstein et al.; guided-diffusion's condition_mean).

        cond_fn(x_t, t, **model_kwargs) is called with autograd enabled and must return the gradient with
        x_t's shape; t is the timestep the model sees.
        """
        with torch.enable_grad():
            gradient = cond_fn(x_t, self._model_t(t), **(model_kwargs or {}))
        return p_out["mean"] + p_out["variance"] * gradient.to(p_out["mean"].dtype)

    def condition_score(self, cond_fn, p_out: dict, x_t: torch.Tensor, t: torch.Tensor, model_kwargs=None) -> dict:
        """Score-based guidance for DDIM (Song et al.): ε̂ ← ε̂ − √(1 − ᾱ_t) ∇_x log p(y|x_t)."""
        with torch.enable_grad():
            gradient = cond_fn(x_t, self._model_t(t), **(model_kwargs or {}))
        eps = self.predict_eps_from_x0(x_t, t, p_out["pred_xstart"])
        eps = eps - self._extract("sqrt_one_minus_alphas_cumprod", t, x_t) * gradient.to(eps.dtype)
        out = dict(p_out)
        out["pred_xstart"] = self.predict_x0_from_eps(x_t, t, eps)
        out["mean"], _, _ = self.q_posterior_mean_variance(out["pred_xstart"], x_t, t)
        return out

    def p_sample(
        self,
        model,
        x_t: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        model_kwargs: dict | None = None,
        *,
        denoised_fn: Callable | None = None,
        cond_fn: Callable | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """One ancestral step x_{t−1} ~ p_θ(x_{t−1} | x_t) (no noise at t = 0).

        Returns {"sample": x_{t−1}, "pred_xstart": x̂_0, "mean", "log_variance"}, each shaped like x_t.
        With cond_fn the mean is shifted by Σ·∇ log p(y|x_t) (`condition_mean`).
        """
        out = self.p_mean_variance(model, x_t, t, clip_denoised, model_kwargs, denoised_fn=denoised_fn)
        t = self._check_t(t, x_t)
        mean = out["mean"]
        if cond_fn is not None:
            mean = self.condition_mean(cond_fn, out, x_t, t, model_kwargs)
        noise = self._randn(x_t.shape, x_t, generator)
        nonzero = (t != 0).to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))
        sample = mean + nonzero * torch.exp(0.5 * out["log_variance"]) * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"], "mean": mean, "log_variance": out["log_variance"]}

    def _loop_indices(self, t_start: int | None, t_stop: int) -> list[int]:
        t_start = self.num_timesteps - 1 if t_start is None else int(t_start)
        if not 0 <= t_stop <= t_start < self.num_timesteps:
            raise InputError(
                f"need 0 <= t_stop <= t_start < {self.num_timesteps}, got t_start={t_start}, t_stop={t_stop}"
            )
        return list(range(t_start, t_stop - 1, -1))

    @staticmethod
    def _device_of(model, device) -> torch.device:
        if device is not None:
            return torch.device(device)
        params = getattr(model, "parameters", None)
        if callable(params):
            for p in params():
                return p.device
        return torch.device("cpu")

    def _progressive(self, step, model, shape, noise, device, progress, generator, t_start, t_stop, desc):
        """The loops' shared body: x = noise (or N(0, I)), then x = step(x, t)["sample"] for t = t_start … t_stop
        under no_grad, yielding each step's dict."""
        device = self._device_of(model, device)
        indices = self._loop_indices(t_start, t_stop)
        if noise is not None:
            if tuple(noise.shape) != tuple(shape):
                raise InputError(f"noise must have shape {tuple(shape)}, got {tuple(noise.shape)}")
            x = noise.to(device)
        else:
            x = self.noise_like(shape, device=device, generator=generator)
        if progress:
            from tqdm.auto import tqdm

            indices = tqdm(indices, desc=desc, leave=False)
        for i in indices:
            t = torch.full((x.shape[0],), i, dtype=torch.long, device=device)
            with torch.no_grad():
                out = step(x, t)
            yield out
            x = out["sample"]

    def p_sample_loop_progressive(
        self,
        model,
        shape,
        *,
        noise: torch.Tensor | None = None,
        clip_denoised: bool = True,
        denoised_fn: Callable | None = None,
        cond_fn: Callable | None = None,
        model_kwargs: dict | None = None,
        device=None,
        progress: bool = False,
        generator: torch.Generator | None = None,
        t_start: int | None = None,
        t_stop: int = 0,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Yield `p_sample`'s dict after each step t = t_start, …, t_stop (defaults T−1 … 0).

        `noise` is the starting x at index t_start (default: x_T ~ N(0, I) of `shape`); starting lower
        (t_start < T−1) from q_sample(x0, t_start) gives SDEdit-style partial sampling, stopping at
        t_stop > 0 leaves x_{t_stop} (e.g. for a separate denoiser, DAED two-stage).
        """
        step = functools.partial(self.p_sample, model, clip_denoised=clip_denoised, model_kwargs=model_kwargs,
                                 denoised_fn=denoised_fn, cond_fn=cond_fn, generator=generator)
        return self._progressive(step, model, shape, noise, device, progress, generator, t_start, t_stop, "sampling")

    def p_sample_loop(
        self,
        model,
        shape,
        *,
        noise: torch.Tensor | None = None,
        cond_fn: Callable | None = None,
        model_kwargs: dict | None = None,
        progress: bool = False,
        clip_denoised: bool = True,
        denoised_fn: Callable | None = None,
        device=None,
        generator: torch.Generator | None = None,
        t_start: int | None = None,
        t_stop: int = 0,
    ) -> torch.Tensor:
        """Ancestral sampling x_T → x_0 (Ho et al. Alg. 2). shape (N, C, …) → samples (N, C, …), no grad.

        cond_fn(x, t, **model_kwargs) → ∇_x log p(y|x) adds Σ·∇ to each step's mean (classifier guidance).
        See `p_sample_loop_progressive` for noise / t_start / t_stop.
        """
        final = None
        for final in self.p_sample_loop_progressive(
            model,
            shape,
            noise=noise,
            clip_denoised=clip_denoised,
            denoised_fn=denoised_fn,
            cond_fn=cond_fn,
            model_kwargs=model_kwargs,
            device=device,
            progress=progress,
            generator=generator,
            t_start=t_start,
            t_stop=t_stop,
        ):
            pass
        return final["sample"]

    def ddim_sample(
        self,
        model,
        x_t: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        model_kwargs: dict | None = None,
        *,
        eta: float = 0.0,
        denoised_fn: Callable | None = None,
        cond_fn: Callable | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """One DDIM step (Song et al. 2021, Eq. 12): x_{t−1} = √ᾱ_{t−1} x̂_0 + √(1 − ᾱ_{t−1} − σ²) ε̂ + σ z,
        σ = η √((1 − ᾱ_{t−1})/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t−1}); η = 0 is deterministic."""
        out = self.p_mean_variance(model, x_t, t, clip_denoised, model_kwargs, denoised_fn=denoised_fn)
        t = self._check_t(t, x_t)
        if cond_fn is not None:
            out = self.condition_score(cond_fn, out, x_t, t, model_kwargs)
        eps = self.predict_eps_from_x0(x_t, t, out["pred_xstart"])
        alpha_bar = self._extract("alphas_cumprod", t, x_t)
        alpha_bar_prev = self._extract("alphas_cumprod_prev", t, x_t)
        sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * torch.sqrt(1 - alpha_bar / alpha_bar_prev)
        mean = out["pred_xstart"] * torch.sqrt(alpha_bar_prev) + torch.sqrt((1 - alpha_bar_prev - sigma**2).clamp(min=0)) * eps
        nonzero = (t != 0).to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))
        sample = mean
        if eta > 0:
            sample = mean + nonzero * sigma * self._randn(x_t.shape, x_t, generator)
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def ddim_sample_loop_progressive(
        self,
        model,
        shape,
        *,
        noise: torch.Tensor | None = None,
        eta: float = 0.0,
        clip_denoised: bool = True,
        denoised_fn: Callable | None = None,
        cond_fn: Callable | None = None,
        model_kwargs: dict | None = None,
        device=None,
        progress: bool = False,
        generator: torch.Generator | None = None,
        t_start: int | None = None,
        t_stop: int = 0,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Yield `ddim_sample`'s dict after each step t = t_start, …, t_stop (defaults T−1 … 0); noise,
        t_start and t_stop as in `p_sample_loop_progressive`."""
        step = functools.partial(self.ddim_sample, model, clip_denoised=clip_denoised, model_kwargs=model_kwargs,
                                 eta=eta, denoised_fn=denoised_fn, cond_fn=cond_fn, generator=generator)
        return self._progressive(step, model, shape, noise, device, progress, generator, t_start, t_stop, "ddim")

    def ddim_sample_loop(
        self,
        model,
        shape,
        *,
        noise: torch.Tensor | None = None,
        eta: float = 0.0,
        cond_fn: Callable | None = None,
        model_kwargs: dict | None = None,
        progress: bool = False,
        clip_denoised: bool = True,
        denoised_fn: Callable | None = None,
        device=None,
        generator: torch.Generator | None = None,
        t_start: int | None = None,
        t_stop: int = 0,
    ) -> torch.Tensor:
        """DDIM sampling x_T → x_0; with eta = 0 the result is a deterministic function of `noise`.
        Use a `SpacedDiffusion` (e.g. "ddim50") to sample in few steps. shape (N, C, …) → (N, C, …), no grad.
        See `p_sample_loop_progressive` for noise / t_start / t_stop."""
        final = None
        for final in self.ddim_sample_loop_progressive(
            model,
            shape,
            noise=noise,
            eta=eta,
            clip_denoised=clip_denoised,
            denoised_fn=denoised_fn,
            cond_fn=cond_fn,
            model_kwargs=model_kwargs,
            device=device,
            progress=progress,
            generator=generator,
            t_start=t_start,
            t_stop=t_stop,
        ):
            pass
        return final["sample"]

    def sample_loop_progressive(
        self, model, shape, *, sampler: str = "ancestral", eta: float = 0.0, **kwargs
    ) -> Iterator[dict[str, torch.Tensor]]:
        """`p_sample_loop_progressive` (sampler "ancestral") or `ddim_sample_loop_progressive` ("ddim", with
        `eta`); kwargs: noise, clip_denoised, denoised_fn, cond_fn, model_kwargs, device, progress,
        generator, t_start, t_stop. Raises ConfigError for another sampler or eta != 0 with "ancestral"."""
        if sampler == "ddim":
            return self.ddim_sample_loop_progressive(model, shape, eta=eta, **kwargs)
        if sampler != "ancestral":
            raise ConfigError(f"unknown sampler {sampler!r}; choose one of ancestral, ddim")
        if eta != 0:
            raise ConfigError(f"eta={eta!r} is the DDIM noise scale; use sampler='ddim' or eta=0 for ancestral")
        return self.p_sample_loop_progressive(model, shape, **kwargs)

    def sample_loop(self, model, shape, *, sampler: str = "ancestral", eta: float = 0.0, **kwargs) -> torch.Tensor:
        """Run the reverse process with `sampler` ("ancestral": `p_sample`, or "ddim": `ddim_sample` with `eta`),
        no grad. x at index t_start (`noise`, shape (N, C, …), default x_T ~ N(0, I)) goes in, steps
        t_start, …, t_stop run (t_start defaults to T−1, t_stop to 0), and the sample at level t_stop − 1 comes
        out, (N, C, …): x_0 for t_stop = 0, else the x that `q_sample(x0, t_stop − 1)` models; x̂_0 is clamped
        to [-1, 1] (image data) unless clip_denoised=False. A run t_start … k continued by one from k − 1 with
        its result as noise (and the same generator) equals the whole run. Other kwargs as in `sample_loop_progressive`."""
        final = None
        for final in self.sample_loop_progressive(model, shape, sampler=sampler, eta=eta, **kwargs):
            pass
        return final["sample"]

    # ------------------------------------------------------------------ likelihood and losses
    def _vb_from_p(self, p_out: dict, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """One VLB term (Eq. 2.9) in bits/dim, (N,): KL(q(x_{t−1}|x_t,x_0) ‖ p_θ(x_{t−1}|x_t)) for t > 0 and
        the discretised decoder NLL −log p_θ(x_0|x_1) (Eq. 2.10–2.11) at t = 0."""
        true_mean, _, true_log_var = self.q_posterior_mean_variance(x0, x_t, t)
        kl = mean_flat(normal_kl(true_mean, true_log_var, p_out["mean"], p_out["log_variance"])) / LN2
        decoder_nll = -mean_flat(
            discretized_gaussian_log_likelihood(x0, p_out["mean"], 0.5 * p_out["log_variance"])
        ) / LN2
        return torch.where(t == 0, decoder_nll, kl)

    def training_losses(
        self,
        model,
        x0: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor | None = None,
        model_kwargs: dict | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-sample training losses at timesteps t for data x0 (N, C, …) (images in [-1, 1]).

        Returns {"loss", "mse", "vb"}, each (N,): "mse" is Eq. 2.13 per dimension (‖ε − ε_θ(x_t, t)‖² /
        dim, or ‖x_0 − x̂_0‖² / dim for START_X); "vb" the VLB term L_t (Eq. 2.9) in bits/dim, computed
        with the mean frozen for SIMPLE/HYBRID (a detached diagnostic when the variance is fixed);
        "loss" follows `loss_type` (see `LossType`). Weight by a timestep sampler's weights and average:
        `(losses["loss"] * weights).mean()`.
        """
        self._check_x(x0, "x0")
        t = self._check_t(t, x0)
        if noise is None:
            noise = self._randn(x0.shape, x0, generator)
        x_t = self.q_sample(x0, t, noise)
        output = self._call_model(model, x_t, t, model_kwargs)
        C = x0.shape[1]
        pred = output[:, :C] if self.learns_variance else output
        target = noise if self.model_mean_type is ModelMeanType.EPSILON else x0
        mse = mean_flat((target - pred) ** 2)  # Eq. 2.13

        if self.loss_type.is_vb():
            self._check_image_range(x0)
            p_out = self._p_from_output(output, x_t, t, clip_denoised=False)
            vb = self._vb_from_p(p_out, x0, x_t, t)
            loss = vb * self.num_timesteps if self.loss_type is LossType.RESCALED_KL else vb
        elif self.learns_variance:
            self._check_image_range(x0)
            # Stop-gradient on the mean: the VLB term only trains the variance (Nichol & Dhariwal, Sec. 3.1).
            frozen = torch.cat([pred.detach(), output[:, C:]], dim=1)
            vb = self._vb_from_p(self._p_from_output(frozen, x_t, t, clip_denoised=False), x0, x_t, t)
            lam = self.num_timesteps / 1000.0 if self.loss_type is LossType.HYBRID else 1.0
            loss = mse + lam * vb
        else:
            with torch.no_grad():
                vb = self._vb_from_p(self._p_from_output(output.detach(), x_t, t, clip_denoised=False), x0, x_t, t)
            loss = mse
        return {"loss": loss, "mse": mse, "vb": vb}

    def prior_bpd(self, x0: torch.Tensor) -> torch.Tensor:
        """L_T = KL(q(x_T | x_0) ‖ N(0, I)) in bits/dim, (N,) (Eq. 2.9); x0 (N, C, …)."""
        t = torch.full((x0.shape[0],), self.num_timesteps - 1, dtype=torch.long, device=x0.device)
        mean, _, log_variance = self.q_mean_variance(x0, t)
        return mean_flat(normal_kl(mean, log_variance, 0.0, 0.0)) / LN2

    def vlb_terms_bpd(
        self,
        model,
        x0: torch.Tensor,
        *,
        clip_denoised: bool = True,
        model_kwargs: dict | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Every term of the variational bound (Eq. 2.9) for x0 (N, C, …) in [-1, 1], one x_t per step.

        Returns (improved-diffusion's calc_bpd_loop):
        "vb" (N, T): L_{t} in bits/dim at index t (t = 0 the decoder NLL, Eq. 2.10–2.11);
        "prior_bpd" (N,): L_T; "total_bpd" (N,): −log p(x_0) bound = Σ_t vb + prior_bpd;
        "xstart_mse" (N, T): ‖x̂_0 − x_0‖²/dim; "mse" (N, T): ‖ε̂ − ε‖²/dim.
        """
        self._check_x(x0, "x0")
        self._check_image_range(x0)
        n = x0.shape[0]
        vb, xstart_mse, mse = [], [], []
        steps = range(self.num_timesteps - 1, -1, -1)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="bpd", leave=False)
        with torch.no_grad():
            for i in steps:
                t = torch.full((n,), i, dtype=torch.long, device=x0.device)
                noise = self._randn(x0.shape, x0, generator)
                x_t = self.q_sample(x0, t, noise)
                output = self._call_model(model, x_t, t, model_kwargs)
                p_out = self._p_from_output(output, x_t, t, clip_denoised=clip_denoised)
                vb.append(self._vb_from_p(p_out, x0, x_t, t))
                xstart_mse.append(mean_flat((p_out["pred_xstart"] - x0) ** 2))
                eps = self.predict_eps_from_x0(x_t, t, p_out["pred_xstart"])
                mse.append(mean_flat((eps - noise) ** 2))
            vb_t = torch.stack(vb[::-1], dim=1)
            prior = self.prior_bpd(x0)
        return {
            "vb": vb_t,
            "prior_bpd": prior,
            "total_bpd": vb_t.sum(dim=1) + prior,
            "xstart_mse": torch.stack(xstart_mse[::-1], dim=1),
            "mse": torch.stack(mse[::-1], dim=1),
        }

