"""Reconstruction error of the backward diffusion from x_t ~ q(x_t|x0), per step (thesis ch. 5.5,
Fig. 5.5.2; ch. 5.7.1, Fig. 5.7.1; Table 5.7.2).

What is measured
    For each timestep t in a grid and each image x0 of an evaluation set: draw
    x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε (Eq. 2.7), reverse it to x̂0, and compare x̂0 with x0 by
    - MAE: mean |x0 − x̂0| over pixels, both in [-1, 1] (the DDGM's range; 0.1 is 5% of the range),
    - MS-SSIM (`genrep.metrics.msssim.ms_ssim`, both mapped to [0, 1], fewer scales for small
      images; NaN for images under 11 px, where not even one scale fits),
    and report the mean over images with a 95% confidence interval of the mean (1.96·std/√n),
    as Fig. 5.7.1 does. Timesteps are 0-based (`genrep.diffusion`): t is the thesis's x_{t+1} and
    fraction_of_steps = (t + 1)/T. The same seed draws ε for every t and every data set (common random
    numbers), so curves differ only by t and by the data.

How x_t is reversed (`eps_model` and `reverse`)
    - a DDGM ε-model with reverse="ancestral" (default, what the thesis measures: "x_t reversed by
      the backward diffusion"): ancestral sampling x_t → x_{t−1} → … → x0 with p_θ
      (`GaussianDiffusion.p_sample_loop(t_start=t)`), x̂0 clipped to [-1, 1];
      reverse="x0": the one-shot prediction x̂0(x_t, t) = (x_t − √(1 − ᾱ_t) ε_θ) / √ᾱ_t instead.
    - `eps_model=None` — the noise decomposition, no model: x̂0 = clip(x_t / √ᾱ_t) = clip(x0 + √((1 − ᾱ_t)/ᾱ_t) ε),
      i.e. the signal plus the noise rescaled to the signal's size; the error is pure noise whose
      size grows with t (1/√SNR). A floor: any denoiser worth its name does better.
    - `GaussianDenoiser(train_images).eps_model(diffusion)` — the exact optimal denoiser for a Gaussian
      fitted to a training set A (mean and full covariance): E[x0|x_t] in closed form, used as an
      ε-model. It needs no training and, like a DDGM trained on A, it knows A's statistics, so it
      gives the cross-data-set picture (trained on A, evaluated on B) without a network.
    - `oracle_eps_model(x0, diffusion)` — the exact ε of a known batch (a check: it reconstructs x0).
    - a trained run: `ddgm_parts(model)` → (diffusion, ε-model, last step) from the documented
      interface (see its docstring): a DDGM reverses with its UNet down to x0; a DAED reverses with its
      UNet down to x_1 and then applies its DAE (`dae_step`, deterministic) for x_1 → x0.
    A class-conditional model gets the evaluated images' labels (`labels=`).
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from genrep.errors import ConfigError, GenrepWarning, InputError

REVERSES = ("ancestral", "x0")
METHODS = ("noise", "gaussian")


# --------------------------------------------------------------------------- ε-models
class GaussianDenoiser:
    """The posterior mean E[x0 | x_t] when x0 ~ N(μ, Σ) is fitted to `images` (N, C, H, W) in [-1, 1]:

        E[x0 | x_t] = μ + √ᾱ Σ (ᾱ Σ + (1 − ᾱ) I)⁻¹ (x_t − √ᾱ μ)
                    = μ + U diag(√ᾱ λ / (ᾱ λ + 1 − ᾱ)) Uᵀ (x_t − √ᾱ μ),   Σ = U diag(λ) Uᵀ,

    the best (minimum-MSE) linear denoiser of data with A's mean and covariance (a per-frequency
    Wiener filter). It fits in O(N·D² + D³) (D = C·H·W; 784 → well under a second)."""

    def __init__(self, images: torch.Tensor):
        x = torch.as_tensor(images)
        if x.ndim != 4 or not x.is_floating_point() or len(x) < 2:
            raise InputError(f"GaussianDenoiser needs at least 2 images N×C×H×W, got {tuple(x.shape)}")
        _check_range(x, "training images")
        self.image_shape = tuple(x.shape[1:])
        flat = x.double().flatten(1)
        self.mean = flat.mean(0)
        centred = flat - self.mean
        cov = centred.T @ centred / (len(flat) - 1)
        eigvals, self.basis = torch.linalg.eigh(cov)
        self.eigvals = eigvals.clamp_min(0.0)

    def x0_given_xt(self, x_t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        """E[x0|x_t]: x_t (N, C, H, W), alpha_bar (N,) ᾱ of each row → (N, C, H, W) in x_t's dtype."""
        if tuple(x_t.shape[1:]) != self.image_shape:
            raise InputError(f"the Gaussian was fitted to images {self.image_shape}, got {tuple(x_t.shape[1:])}")
        ab = alpha_bar.double().reshape(-1, 1).to(x_t.device)
        basis, mean, lam = self.basis.to(x_t.device), self.mean.to(x_t.device), self.eigvals.to(x_t.device)
        y = x_t.double().flatten(1) - ab.sqrt() * mean
        gain = ab.sqrt() * lam / (ab * lam + (1.0 - ab))  # (N, D) per eigen-direction
        x0 = mean + ((y @ basis) * gain) @ basis.T
        return x0.reshape(x_t.shape).to(x_t.dtype)

    def eps_model(self, diffusion):
        """An ε-model `model(x_t, t)` for `diffusion` (a plain `GaussianDiffusion`: t indexes its own ᾱ)."""
        alphas_cumprod = diffusion.alphas_cumprod

        def model(x_t: torch.Tensor, t: torch.Tensor, **_) -> torch.Tensor:
            ab = alphas_cumprod[t.cpu()]
            x0 = self.x0_given_xt(x_t, ab)
            shape = (-1,) + (1,) * (x_t.ndim - 1)
            ab = ab.to(x_t.device, x_t.dtype).reshape(shape)
            return (x_t - ab.sqrt() * x0) / (1.0 - ab).sqrt()  # ε̂ = (x_t − √ᾱ x̂0)/√(1 − ᾱ), Eq. 2.7

        return model


def oracle_eps_model(x0: torch.Tensor, diffusion):
    """The exact ε-model of one known batch x0 (N, C, …): ε = (x_t − √ᾱ_t x0)/√(1 − ᾱ_t). The reverse
    process with it recovers x0 (a check of the machinery, and the ideal end of the scale)."""

    def model(x_t: torch.Tensor, t: torch.Tensor, **_) -> torch.Tensor:
        if x_t.shape != x0.shape:
            raise InputError(f"the oracle knows a batch of shape {tuple(x0.shape)}, got {tuple(x_t.shape)}")
        return diffusion.predict_eps_from_x0(x_t, t, x0.to(x_t))

    return model


def ddgm_parts(model):
    """(diffusion, ε-model, last_step) of a trained diffusion model. The documented interface
    (`genrep.models.ddgm.DDGM` and `genrep.models.daed.DAED` follow it):

    - `model.diffusion`: the T-step `genrep.diffusion.GaussianDiffusion` the model was trained with
      (not the respaced sampling process); its 0-based timesteps are the ones the analysis uses;
    - the network: `model.unet`, else `model.eps_model`, else `model.denoiser`, called as
      `net(x_t, t, **model_kwargs)` and returning what `diffusion` expects (ε or x0, C or 2C channels);
    - optional `model.dae_step(x_1) -> x̂0` (DAED): the separate network of index 0, so the reverse
      chain stops at x_1 and this maps x_1 (the level `q_sample(x0, 0)` models) to x̂0; `last_step`
      is then that method, else None.
    Raises ConfigError for anything else (e.g. a VAE run)."""
    diffusion = getattr(model, "diffusion", None)
    if diffusion is None or not hasattr(diffusion, "p_sample_loop") or not hasattr(diffusion, "q_sample"):
        raise ConfigError(f"{type(model).__name__} is not a diffusion model (no .diffusion process); "
                          "reconstruction from x_t needs a trained DDGM or DAED run")
    last_step = getattr(model, "dae_step", None)
    last_step = last_step if callable(last_step) else None
    for name in ("unet", "eps_model", "denoiser"):
        net = getattr(model, name, None)
        if net is not None and callable(net):
            return diffusion, net, last_step
    raise ConfigError(f"{type(model).__name__} has a .diffusion but no network (.unet / .eps_model / .denoiser)")


def to_model_range(images: torch.Tensor, value_range) -> torch.Tensor:
    """Images in `value_range` (lo, hi) → [-1, 1] (clamped), the range the diffusion works in."""
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise InputError(f"value_range must be (lo, hi) with hi > lo, got {value_range}")
    return ((images.float() - lo) / (hi - lo) * 2.0 - 1.0).clamp(-1.0, 1.0)


# --------------------------------------------------------------------------- reconstruction
def _check_range(x: torch.Tensor, name: str) -> None:
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.0 - 1e-4 or hi > 1.0 + 1e-4:
        raise InputError(f"{name} must lie in [-1, 1] (the DDGM's range), got [{lo:.3g}, {hi:.3g}]")


def reconstruct(x0: torch.Tensor, diffusion, t: int, *, eps_model=None, reverse: str = "ancestral",
                last_step=None, model_kwargs: dict | None = None, generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
    """x̂0 reconstructed from x_t ~ q(x_t|x0) at 0-based step t. x0 (N, C, H, W) in [-1, 1] → (N, C, H, W)
    in [-1, 1]. eps_model None: the noise decomposition clip(x_t/√ᾱ_t); else reverse "ancestral"
    (p_θ chain from t down to 0) or "x0" (one-shot x̂0 prediction at t). `last_step(x_1) -> x̂0`
    (DAED's DAE) replaces the chain's index 0: the chain stops at x_1. `model_kwargs` go to the
    ε-model (e.g. {"y": labels}). `noise`: the ε of x_t (default drawn from `generator`)."""
    if reverse not in REVERSES:
        raise ConfigError(f"unknown reverse {reverse!r}; choose one of {', '.join(REVERSES)}")
    T = diffusion.num_timesteps
    if not 0 <= int(t) < T:
        raise InputError(f"t must be a 0-based step in [0, {T - 1}], got {t}")
    t = int(t)
    tt = torch.full((x0.shape[0],), t, dtype=torch.long, device=x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    x_t = diffusion.q_sample(x0, tt, noise=noise)
    with torch.no_grad():
        if eps_model is None:
            return (x_t / math.sqrt(float(diffusion.alphas_cumprod[t]))).clamp(-1.0, 1.0)
        if last_step is not None and t == 0:
            return last_step(x_t).clamp(-1.0, 1.0)
        if reverse == "x0":
            return diffusion.p_mean_variance(eps_model, x_t, tt, True, model_kwargs)["pred_xstart"].clamp(-1.0, 1.0)
        x_hat = diffusion.p_sample_loop(eps_model, x0.shape, noise=x_t, t_start=t, t_stop=0 if last_step is None else 1,
                                        clip_denoised=True, model_kwargs=model_kwargs, generator=generator,
                                        device=x0.device)
        if last_step is not None:
            x_hat = last_step(x_hat)
    return x_hat.clamp(-1.0, 1.0)


def default_t_values(steps: int, *, max_fraction: float = 0.2, points: int = 11) -> list[int]:
    """A grid of 0-based steps over the first `max_fraction` of a T-step process (thesis Fig. 5.5.2
    shows the first 20%): fractions 0, …, max_fraction in `points` even steps, t = round(f·T) − 1 ≥ 0."""
    if not 0 < max_fraction <= 1:
        raise ConfigError(f"max_fraction must lie in (0, 1], got {max_fraction}")
    if points < 2:
        raise ConfigError(f"points must be ≥ 2, got {points}")
    ts = {min(steps - 1, max(0, int(round(f * steps)) - 1)) for f in np.linspace(0.0, max_fraction, points)}
    return sorted(ts)


def check_t_values(t_values, steps: int) -> list[int]:
    ts = sorted({int(t) for t in t_values})
    if not ts or ts[0] < 0 or ts[-1] >= steps:
        raise ConfigError(f"--t-values must be 0-based steps in [0, {steps - 1}], got {list(t_values)}")
    return ts


def _per_image_msssim(x0: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    from genrep.metrics.msssim import max_scales, ms_ssim

    if max_scales(tuple(x0.shape[-2:])) == 0:
        return torch.full((len(x0),), float("nan"), dtype=torch.float64)
    to01 = lambda x: ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)  # noqa: E731
    return ms_ssim(to01(x0), to01(x_hat), data_range=1.0).double().cpu()


def _mean_ci(values: torch.Tensor) -> tuple[float, float]:
    v = values.double()
    if torch.isnan(v).all():
        return float("nan"), float("nan")
    n = len(v)
    std = float(v.std(unbiased=True)) if n > 1 else 0.0
    return float(v.mean()), 1.96 * std / math.sqrt(n)


def reconstruction_curve(x0: torch.Tensor, diffusion, t_values, *, eps_model=None, reverse: str = "ancestral",
                         last_step=None, labels: torch.Tensor | None = None, batch_size: int = 250, seed: int = 0,
                         progress=None) -> dict[str, np.ndarray]:
    """MAE and MS-SSIM between x0 and `reconstruct(x0, diffusion, t, ...)` for each t in `t_values`.

    x0: (N, C, H, W) in [-1, 1]; labels: (N,) int64 class labels for a class-conditional ε-model
    (passed as model_kwargs {"y": …}), else None. Returns float64 arrays over the t grid: t, fraction_of_steps
    ((t + 1)/T), alpha_bar, mae, mae_ci95, ms_ssim, ms_ssim_ci95 (95% CI half-widths of the mean;
    MS-SSIM NaN for images under 11 px), and n (images). The noise ε is drawn from `seed` in the
    same order for every t (common random numbers). `progress(t)` is called before each t."""
    x0 = torch.as_tensor(x0)
    if x0.ndim != 4 or not x0.is_floating_point() or len(x0) == 0:
        raise InputError(f"x0 must be a non-empty float tensor N×C×H×W, got {tuple(x0.shape)}")
    _check_range(x0, "x0")
    if labels is not None and (labels.ndim != 1 or len(labels) != len(x0)):
        raise InputError(f"labels must be one int64 label per image ({len(x0)}), got {tuple(labels.shape)}")
    T = diffusion.num_timesteps
    ts = check_t_values(t_values, T)
    rows = {k: [] for k in ("mae", "mae_ci95", "ms_ssim", "ms_ssim_ci95")}
    for t in ts:
        if progress is not None:
            progress(t)
        gen = torch.Generator().manual_seed(seed)
        mae, msssim = [], []
        for start in range(0, len(x0), batch_size):
            batch = x0[start:start + batch_size]
            kwargs = None if labels is None else {"y": labels[start:start + batch_size].to(batch.device)}
            x_hat = reconstruct(batch, diffusion, t, eps_model=eps_model, reverse=reverse, last_step=last_step,
                                model_kwargs=kwargs, generator=gen)
            mae.append((batch - x_hat).abs().flatten(1).mean(1).double().cpu())
            msssim.append(_per_image_msssim(batch, x_hat))
        for key, values in (("mae", torch.cat(mae)), ("ms_ssim", torch.cat(msssim))):
            mean, ci = _mean_ci(values)
            rows[key].append(mean)
            rows[f"{key}_ci95"].append(ci)
    t_arr = np.asarray(ts, dtype=np.float64)
    out = {"t": t_arr, "fraction_of_steps": (t_arr + 1) / T,
           "alpha_bar": diffusion.alphas_cumprod.double().numpy()[ts]}
    out.update({k: np.asarray(v, dtype=np.float64) for k, v in rows.items()})
    out["n"] = np.full(len(ts), float(len(x0)))
    return out


# --------------------------------------------------------------------------- data, files, summary
def load_eval_sets(train_dataset: str, eval_datasets: list[str] | None = None, *, split: str = "test",
                   n: int | None = 500, seed: int = 0, image_size: int | None = None) -> dict[str, torch.Tensor]:
    """Images in [-1, 1] to evaluate on: `split` of `train_dataset`, then of each `eval_datasets` (a
    seeded subset of `n` each), all resized to the first set's side (or `image_size`) so that one
    model serves all; without `image_size`, a set of another size gives a GenrepWarning naming both
    sizes. Channels must agree."""
    from genrep.data import load_dataset
    from genrep.data.transforms import resize

    sets: dict[str, torch.Tensor] = {}
    side = image_size
    for name in [train_dataset, *(eval_datasets or [])]:
        if name in sets:
            continue
        data = load_dataset(name, split, value_range=(-1.0, 1.0), limit=n, seed=seed, image_size=image_size)
        if side is None:
            side = data.image_shape[-1]
        elif tuple(data.image_shape[-2:]) != (side, side):
            h, w = data.image_shape[-2:]
            warnings.warn(f"{name} images are {h}×{w} but {train_dataset} images are {side}×{side}: {name} is "
                          f"resized to {side}×{side} (pass --image-size to choose one size for all)", GenrepWarning,
                          stacklevel=2)
            data = resize(data, side)
        first = next(iter(sets.values()), None)
        if first is not None and first.shape[1] != data.images.shape[1]:
            raise ConfigError(f"{name} has {data.images.shape[1]} channel(s) but {train_dataset} has {first.shape[1]}; "
                              "cross-data-set reconstruction needs the same number of channels")
        sets[name] = data.images
    return sets


def fit_gaussian(dataset: str, *, n_fit: int | None = 10000, seed: int = 0,
                 image_size: int | None = None) -> GaussianDenoiser:
    """A `GaussianDenoiser` fitted to the train split of `dataset` (seeded subset of `n_fit` images)."""
    from genrep.data import load_dataset

    if n_fit is not None and (isinstance(n_fit, bool) or not isinstance(n_fit, int) or n_fit < 1):
        raise ConfigError(f"n_fit (--n-fit, training images to fit the Gaussian) must be an integer >= 1, "
                          f"got {n_fit!r}")

    data = load_dataset(dataset, "train", value_range=(-1.0, 1.0), limit=n_fit, seed=seed, image_size=image_size)
    return GaussianDenoiser(data.images)


CSV_COLUMNS = ("dataset", "t", "fraction_of_steps", "alpha_bar", "log_snr", "mae", "mae_ci95", "ms_ssim",
               "ms_ssim_ci95", "n")


def write_reconstruction_csv(curves: dict[str, dict[str, np.ndarray]], path: str | Path) -> Path:
    """Long format, one row per (evaluated data set, t): the columns of `CSV_COLUMNS`."""
    path = Path(path)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for label, c in curves.items():
            for i in range(len(c["t"])):
                row = [label, str(int(c["t"][i]))]
                for key in CSV_COLUMNS[2:]:
                    value = float(c[key][i]) if key in c else float("nan")
                    row.append(str(int(value)) if key == "n" else ("nan" if math.isnan(value) else f"{value:.6g}"))
                writer.writerow(row)
    return path


def first_fraction(curve: dict[str, np.ndarray], key: str, threshold: float, *, above: bool) -> float | None:
    """fraction_of_steps of the first grid point where curve[key] exceeds (above=True) or falls
    below `threshold`; None if it never does on the grid."""
    values = curve[key]
    hit = np.flatnonzero(values > threshold if above else values < threshold)
    return None if len(hit) == 0 else float(curve["fraction_of_steps"][hit[0]])


def summary_line(label: str, c: dict[str, np.ndarray]) -> str:
    """One line per data set: the MAE / MS-SSIM range over the grid and where the thesis thresholds
    (MAE > 0.1, MS-SSIM < 0.9) are first crossed."""
    lo, hi = 100 * c["fraction_of_steps"][0], 100 * c["fraction_of_steps"][-1]
    parts = [f"{label}: MAE {c['mae'][0]:.3f} → {c['mae'][-1]:.3f}"]
    if not np.isnan(c["ms_ssim"]).all():
        parts.append(f"MS-SSIM {c['ms_ssim'][0]:.3f} → {c['ms_ssim'][-1]:.3f}")
    parts[-1] += f" over {lo:.1f}–{hi:.1f}% of steps"
    if np.isnan(c["ms_ssim"]).all():
        parts[-1] += " (no MS-SSIM: images under 11 px)"
    mae_at = first_fraction(c, "mae", 0.1, above=True)
    parts.append("MAE > 0.1 " + (f"from {100 * mae_at:.1f}%" if mae_at is not None else "nowhere on the grid"))
    if not np.isnan(c["ms_ssim"]).all():
        ms_at = first_fraction(c, "ms_ssim", 0.9, above=False)
        parts.append("MS-SSIM < 0.9 " + (f"from {100 * ms_at:.1f}%" if ms_at is not None else "nowhere on the grid"))
    return "; ".join(parts)


def reconstruction_analysis(eval_sets: dict[str, torch.Tensor], diffusion, t_values, out: str | Path, *,
                            eps_model=None, reverse: str = "ancestral", last_step=None,
                            labels: dict[str, torch.Tensor] | None = None, seed: int = 0, batch_size: int = 250,
                            title: str = "", method: str = "", log=print) -> dict[str, dict[str, np.ndarray]]:
    """`genrep analyze reconstruction`: a `reconstruction_curve` per evaluation set (label → images in
    [-1, 1]; `labels`: label → class labels for a class-conditional model); writes OUT/reconstruction.csv and OUT/reconstruction.png, logs one summary line per set.
    Each curve also carries the set's averaged log-SNR at the grid steps (`snr_curve`, Eq. 5.2)."""
    from genrep.analysis.plots_diffusion import plot_reconstruction
    from genrep.analysis.snr import snr_curve

    from genrep.utils.files import output_dir

    out = output_dir(out)
    curves = {}
    betas = diffusion.betas.double().numpy()
    for label, images in eval_sets.items():
        c = reconstruction_curve(images, diffusion, t_values, eps_model=eps_model, reverse=reverse, last_step=last_step,
                                 labels=(labels or {}).get(label), seed=seed, batch_size=batch_size)
        c["log_snr"] = snr_curve(images, betas)["log_snr"][c["t"].astype(int)]
        curves[label] = c
        log(summary_line(label, c))
    write_reconstruction_csv(curves, out / "reconstruction.csv")
    plot_reconstruction(curves, out / "reconstruction.png", title=title, method=method)
    log(f"wrote {out / 'reconstruction.csv'} and {out / 'reconstruction.png'}")
    return curves
