"""Sampling with fewer steps: keep a subset of the timesteps of a trained process (Nichol & Dhariwal
2021, Sec. 4; improved-diffusion's respace.py) and a small factory for common configurations."""

from __future__ import annotations

import numpy as np
import torch

from genrep.errors import ConfigError
from genrep.diffusion.process import GaussianDiffusion, LossType, ModelMeanType, ModelVarType, _as_float64
from genrep.diffusion.schedules import get_betas


def space_timesteps(num_timesteps: int, section_counts) -> set[int]:
    """The set of original 0-based timesteps to keep.

    section_counts: "ddimN" (the DDIM paper's fixed stride: range(0, T, stride) with exactly N steps),
    or a list / comma-separated string of counts: the T steps are cut into len(counts) equal sections
    (the first T mod len sections one step longer) and section i keeps counts[i] evenly spaced steps,
    always including its first and last step (a count of 1 keeps only the first). The positions are
    accumulated and rounded exactly as improved-diffusion does, so a published respacing selects
    the same steps (`round(j·stride)` would break some .5 ties the other way).
    E.g. space_timesteps(1000, "ddim50") == {0, 20, …, 980}; space_timesteps(300, [10, 15, 20]).
    """
    T = int(num_timesteps)
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired = int(section_counts[len("ddim"):])
            for stride in range(1, T):
                if len(range(0, T, stride)) == desired:
                    return set(range(0, T, stride))
            if desired == T:
                return set(range(T))
            raise ConfigError(f"cannot keep exactly {desired} steps of {T} with a fixed stride (try another 'ddimN')")
        section_counts = [int(c) for c in section_counts.split(",") if c.strip()]
    counts = [int(c) for c in section_counts]
    if not counts:
        raise ConfigError("section_counts must name at least one section")
    size_per, extra = divmod(T, len(counts))
    start, kept = 0, []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if count < 1 or count > size:
            raise ConfigError(f"cannot keep {count} steps from a section of {size} (T={T}, sections={counts})")
        stride = 1.0 if count == 1 else (size - 1) / (count - 1)
        position = 0.0
        for _ in range(count):  # accumulated, then round() (ties to even): improved-diffusion's exact steps
            kept.append(start + round(position))
            position += stride
        start += size
    return set(kept)


class RespacedModel:
    """Calls `model(x, timestep_map[t], **kw)`: maps a respaced index t back to the original timestep."""

    def __init__(self, model, timestep_map: torch.Tensor):
        self.model = model
        self.timestep_map = timestep_map

    def __call__(self, x: torch.Tensor, t: torch.Tensor, **kwargs):
        return self.model(x, self.timestep_map.to(t.device)[t], **kwargs)

    def parameters(self):
        params = getattr(self.model, "parameters", None)
        return params() if callable(params) else iter(())


class SpacedDiffusion(GaussianDiffusion):
    """A diffusion over a subset `use_timesteps` of the steps of the process with `betas`.

    The new betas keep ᾱ at the kept steps: β′_i = 1 − ᾱ_{t_i}/ᾱ_{t_{i−1}} (ᾱ_{t_{−1}} = 1), so q(x_t|x_0)
    is unchanged there and a model trained on the full process can be used as is. Process index i
    corresponds to original timestep `timestep_map[i]`; every model (and cond_fn) call receives the
    original timestep. `wrap_model(model)` gives the same mapping for code that calls the model directly.
    """

    def __init__(self, use_timesteps, betas, **kwargs):
        base_betas = _as_float64(betas, "betas").numpy()
        alphas_cumprod = np.cumprod(1.0 - base_betas)
        kept = sorted(int(t) for t in set(use_timesteps))
        if not kept or kept[0] < 0 or kept[-1] >= len(base_betas):
            raise ConfigError(f"use_timesteps must be a non-empty subset of [0, {len(base_betas) - 1}]")
        last, new_betas = 1.0, []
        for t in kept:
            new_betas.append(1.0 - alphas_cumprod[t] / last)
            last = alphas_cumprod[t]
        self.original_num_steps = len(base_betas)
        self.timestep_map = torch.tensor(kept, dtype=torch.long)
        super().__init__(np.asarray(new_betas, dtype=np.float64), **kwargs)

    def _model_t(self, t: torch.Tensor) -> torch.Tensor:
        return self.timestep_map.to(t.device)[t]

    def _call_model(self, model, x, t, model_kwargs):
        if isinstance(model, RespacedModel) and model.timestep_map is self.timestep_map:
            model = model.model  # already wrapped by us: do not map twice
        return super()._call_model(model, x, t, model_kwargs)

    def wrap_model(self, model) -> RespacedModel:
        """The model as seen by this process: `wrapped(x, i)` calls `model(x, timestep_map[i])`."""
        if isinstance(model, RespacedModel) and model.timestep_map is self.timestep_map:
            return model
        return RespacedModel(model, self.timestep_map)


def create_diffusion(
    steps: int = 1000,
    schedule: str = "linear",
    *,
    beta1: float | None = None,
    model_mean_type: ModelMeanType | str = ModelMeanType.EPSILON,
    model_var_type: ModelVarType | str = ModelVarType.FIXED_LARGE,
    loss_type: LossType | str = LossType.SIMPLE,
    respacing=None,
) -> GaussianDiffusion:
    """A `GaussianDiffusion` for `get_betas(schedule, steps, beta1=beta1)`, respaced when `respacing`
    ("ddimN", a list of section counts, or None for all steps) is given."""
    betas = get_betas(schedule, steps, beta1=beta1)
    kwargs = dict(model_mean_type=model_mean_type, model_var_type=model_var_type, loss_type=loss_type)
    if respacing in (None, "", [], ()):
        return GaussianDiffusion(betas, **kwargs)
    return SpacedDiffusion(space_timesteps(steps, respacing), betas, **kwargs)
