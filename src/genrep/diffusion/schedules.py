"""Noise schedules β_1..β_T of the forward diffusion (thesis ch. 2.3, "Noise scheduling"; ch. 5.6).

Every function returns a float64 numpy array of shape (T,). Index i (0-based) holds β_{i+1}
in the thesis's 1-based notation, so `betas[0]` is the variance of q(x_1 | x_0) and
ᾱ_t = ∏_{i<=t} (1 − β_i) is `np.cumprod(1 - betas)[t]` (again 0-based).

- `linear_betas`: Ho et al. (2020), β from 1e-4·1000/T to 0.02·1000/T, so that any T gives
  roughly the same total noise as T = 1000.
- `cosine_betas`: Nichol & Dhariwal (2021), ᾱ(t) = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s)·π/2),
  β clipped at `max_beta` = 0.999.
- `linear_combine_betas`: the DAED schedule of the reference code ("linear_combine"): a fresh
  linear schedule for the shortened length T′ whose first β is overwritten by β_1, so that
  q(x_1|x_0) = N(√(1−β_1) x_0, β_1 I) is the DAE's corruption and x_1..x_{T′} the DDGM part.
- `shortened_steps`: the length T′ of the DAED diffusion for a given β_1 (see its docstring for
  what the reference code computes and which published lengths it does and does not reproduce).
"""

from __future__ import annotations

import math

import numpy as np

from genrep.errors import ConfigError

SCHEDULES = ("linear", "cosine", "linear_combine")

# T′ (the number of DDGM steps) used in the published DAED experiments, read from thesis
# Tables 5.7.1 and 5.9.1–5.9.3 (FashionMNIST T = 500, CIFAR-10 and CelebA T = 1000, linear
# schedule). Keys are (T, β_1). CIFAR-10 lists 891 and CelebA 890 for β_1 = 0.2 (T = 1000); the
# CIFAR-10 value is kept here. β_1 = 0.001 rows are plain linear DDGMs whose first step is the DAE
# (the reference trains them with `--noise_schedule linear`), hence T − 1.
PUBLISHED_SHORTENED_STEPS: dict[tuple[int, float], int] = {
    (500, 0.3): 426,
    (500, 0.2): 445,
    (500, 0.1): 468,
    (500, 0.025): 489,
    (500, 0.001): 499,
    (1000, 0.2): 891,
    (1000, 0.1): 900,
    (1000, 0.025): 979,
    (1000, 0.001): 999,
}


def _check_T(T: int, name: str = "T") -> int:
    if isinstance(T, bool) or int(T) != T or int(T) < 1:
        raise ConfigError(f"{name} (number of diffusion steps) must be a positive integer, got {T!r}")
    return int(T)


def _check_beta1(beta1: float) -> float:
    beta1 = float(beta1)
    if not 0.0 < beta1 < 1.0:
        raise ConfigError(f"beta1 (variance of q(x_1|x_0)) must lie in (0, 1), got {beta1!r}")
    return beta1


def linear_betas(T: int) -> np.ndarray:
    """Linear schedule of Ho et al. (2020) rescaled to T steps: β_1 = 1e-4·1000/T … β_T = 0.02·1000/T.

    Returns float64 (T,). For T ≤ 20 the rescaled β_T reaches 1 (x_T would carry no information and
    ᾱ_T = 0 breaks the posterior), so such T raise a `ConfigError`: use the cosine schedule, or a
    longer linear schedule respaced with `genrep.diffusion.SpacedDiffusion`.
    """
    T = _check_T(T)
    scale = 1000.0 / T
    beta_start, beta_end = scale * 1e-4, scale * 0.02
    if beta_end >= 1.0:
        raise ConfigError(
            f"the linear schedule needs T > 20 (β_T = 0.02·1000/T = {beta_end:g} ≥ 1 for T={T}); "
            "use schedule='cosine' or respace a longer schedule"
        )
    return np.linspace(beta_start, beta_end, T, dtype=np.float64)


def betas_for_alpha_bar(T: int, alpha_bar, max_beta: float = 0.999) -> np.ndarray:
    """Discretise a continuous ᾱ(τ), τ ∈ [0, 1], into T betas: β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), max_beta).

    Without the clip, ∏_{i<t}(1 − β_i) = ᾱ(t/T)/ᾱ(0) exactly (the product telescopes).
    """
    T = _check_T(T)
    betas = [min(1.0 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta) for i in range(T)]
    return np.asarray(betas, dtype=np.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Cosine schedule of Nichol & Dhariwal (2021): ᾱ_t = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s)·π/2).

    β_t = 1 − ᾱ_t/ᾱ_{t−1} is clipped at `max_beta` (0.999) against the singularity at t = T;
    in practice only the last step is clipped. Returns float64 (T,), all β in (0, max_beta].
    """
    if s <= 0:
        raise ConfigError(f"the cosine offset s must be positive, got {s!r}")
    if not 0.0 < max_beta < 1.0:
        raise ConfigError(f"max_beta must lie in (0, 1), got {max_beta!r}")
    return betas_for_alpha_bar(T, lambda tau: math.cos((tau + s) / (1 + s) * math.pi / 2) ** 2, max_beta)


def linear_combine_betas(T_short: int, beta1: float) -> np.ndarray:
    """DAED schedule (reference code "linear_combine"): `linear_betas(T_short)` with β[0] := β_1.

    `betas[0] = beta1` is the DAE's corruption q(x_1|x_0) = N(√(1−β_1) x_0, β_1 I) (thesis
    Eq. 5.4–5.5); `betas[1:]` are those of a *fresh* linear schedule of length T′ = `T_short`
    (not the tail of the original T-step schedule). Returns float64 (T_short,).
    """
    betas = linear_betas(T_short)
    betas[0] = _check_beta1(beta1)
    return betas


def get_betas(name: str, T: int, *, beta1: float | None = None, **kwargs) -> np.ndarray:
    """A named schedule: "linear", "cosine" (kwargs s, max_beta) or "linear_combine" (needs beta1)."""
    if name == "linear":
        return linear_betas(T)
    if name == "cosine":
        return cosine_betas(T, **kwargs)
    if name == "linear_combine":
        if beta1 is None:
            raise ConfigError("schedule 'linear_combine' needs beta1 (the DAED first-step variance)")
        return linear_combine_betas(T, beta1)
    raise ConfigError(f"unknown noise schedule {name!r}; choose one of {', '.join(SCHEDULES)}")


def switching_step(T: int, beta1: float, schedule: str = "linear") -> int:
    """The 0-based step k of a T-step `schedule` whose ᾱ_k is closest to 1 − β_1.

    This is the reference code's DAED switching point `argmin_t |ᾱ_t − (1 − β_1)|`
    (scripts/image_sample_with_two_models.py): running the DDGM down to step k leaves about as much
    noise as one DAED corruption with variance β_1.
    """
    beta1 = _check_beta1(beta1)
    alphas_cumprod = np.cumprod(1.0 - get_betas(schedule, T))
    return int(np.argmin(np.abs(alphas_cumprod - (1.0 - beta1))))


def shortened_steps(T: int, beta1: float, schedule: str = "linear", *, rule: str = "thesis") -> int:
    """Length T′ of the DAED diffusion that replaces the first steps of a T-step DDGM by one step β_1.

    rule="thesis" (default): the published T′ where the thesis has one (linear schedule, the
    (T, β_1) of `PUBLISHED_SHORTENED_STEPS`: T = 500, β_1 = 0.1 → 468; T = 1000, β_1 = 0.1 → 900),
    else the argmin rule — what a user reproducing the thesis expects.

    rule="argmin": T′ = T − argmin_t |ᾱ_t − (1 − β_1)| on the T-step `schedule`, the
    reference code's switching point (`switching_step`). It reproduces the thesis exactly where the
    thesis derives the length from it (cosine, T = 4000, β_1 = 0.1: 793 steps replaced, ch. 5.7.3)
    and the CIFAR-10/CelebA lengths to within 0.5% (T = 1000, β_1 = 0.1: 903 vs the published 900).
    It does **not** reproduce the published FashionMNIST lengths (T = 500, β_1 = 0.1: 452 vs 468;
    0.025: 478 vs 489; 0.2: 428 vs 445; 0.3: 409 vs 426): the reference code hard-codes those as
    `--diffusion_steps` and never computes them, and no single rule we tried fits both data sets.

    rule="published": the T′ of the published runs (`PUBLISHED_SHORTENED_STEPS`, linear schedule
    only): use it to reproduce the thesis tables, e.g. `shortened_steps(500, 0.1, rule="published")
    == 468`. Unknown (T, β_1) pairs raise a `ConfigError`.
    """
    T = _check_T(T)
    beta1 = _check_beta1(beta1)
    if rule == "thesis":
        published = PUBLISHED_SHORTENED_STEPS.get((T, beta1)) if schedule == "linear" else None
        return published if published is not None else T - switching_step(T, beta1, schedule)
    if rule == "argmin":
        return T - switching_step(T, beta1, schedule)
    if rule == "published":
        if schedule != "linear":
            raise ConfigError("published DAED lengths exist only for the linear schedule")
        key = (T, beta1)
        if key not in PUBLISHED_SHORTENED_STEPS:
            known = ", ".join(f"T={t} β1={b:g}" for t, b in PUBLISHED_SHORTENED_STEPS)
            raise ConfigError(f"no published DAED length for T={T}, beta1={beta1:g}; known: {known}")
        return PUBLISHED_SHORTENED_STEPS[key]
    raise ConfigError(f"unknown rule {rule!r} for shortened_steps; choose 'thesis', 'argmin' or 'published'")
