"""Signal-to-noise ratio of the forward diffusion averaged over a data set (thesis ch. 5.5, Eq. 5.2,
Fig. 5.5.1 and 5.9.1).

What is averaged (our reading of the thesis, stated here because Eq. 5.2 leaves it open)
    Eq. 5.2 gives SNR(x0, t) = ᾱ_t · x0² / (1 − ᾱ_t) for q(x_t|x0) = N(√ᾱ_t x0, (1 − ᾱ_t) I), with the
    SNR "expressed as the squared mean of a signal (here: image) divided by the variance". For one
    image x0 (pixels in [-1, 1], the range the DDGM works in) we therefore take the signal power
    x0² as the mean over its pixels (and channels),

        SNR(x0, t) = ᾱ_t · mean_pixels(x0²) / (1 − ᾱ_t),

    and the curve is the mean over the data set of the natural log of that per-image SNR, with its
    standard deviation over the images (Fig. 5.5.1 plots "the logarithm of the SNR averaged over the
    dataset (solid line) and its standard deviation" — a band that only exists for a per-image
    log-SNR). `average="snr"` gives the other reading, log of the data-set mean SNR (the same as a
    per-pixel SNR pooled over all pixels of all images); the two differ by Jensen's gap, which is
    small on the data here (≤ 0.02 nats on MNIST/Fashion-MNIST), so the crossing points agree to
    within a step or two. A per-pixel mean of log x0² is *not* used: a pixel at exactly 0 (mid-grey
    in [-1, 1]) would make it −∞.

    Because log SNR(x0, t) = log(ᾱ_t / (1 − ᾱ_t)) + log mean(x0²), the data only shift the curve by a
    constant: the discrete derivative Δ log SNR(t) = log SNR(t) − log SNR(t − 1) is the same for
    every data set (thesis ch. 5.9.2: "independently of the original dataset, SNR changes in the
    similar manner"). Δ is undefined at the first step (SNR(x0, 0) = ∞ for the clean image) and is
    NaN there.

Indexing
    Timesteps are the 0-based indices of `genrep.diffusion` (index t is the thesis's x_{t+1});
    `fraction_of_steps` = (t + 1) / T, so the last step is 1.0 and "log-SNR < 0 after P% of steps"
    means the first step whose averaged log-SNR is negative is step (t + 1) = P% of T.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch

from genrep.errors import ConfigError, InputError

AVERAGES = ("log", "snr")
SCHEDULE_CHOICES = ("linear", "cosine", "both")


def signal_power(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Per-image signal power mean_pixels(x0²): images (N, C, H, W) (or (N, …)) in [-1, 1] → (N,) float64."""
    x = torch.as_tensor(images)
    if x.ndim < 2 or not x.is_floating_point() or len(x) == 0:
        raise InputError(f"images must be a non-empty float tensor N×C×H×W, got {tuple(x.shape)} {x.dtype}")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.0 - 1e-4 or hi > 1.0 + 1e-4:
        raise InputError(f"the SNR of Eq. 5.2 is defined for x0 in [-1, 1] (the DDGM's range), got [{lo:.3g}, {hi:.3g}]")
    power = x.double().flatten(1).pow(2).mean(1).numpy()
    if (power <= 0).any():
        raise InputError("an image with zero signal power (all pixels 0 in [-1, 1]) has SNR 0 and log-SNR −∞")
    return power


def snr_curve(images: torch.Tensor | np.ndarray, betas, *, average: str = "log") -> dict[str, np.ndarray]:
    """Log-SNR of Eq. 5.2 averaged over `images`, per timestep of the schedule `betas`.

    images: (N, C, H, W) float in [-1, 1]; betas: (T,) β_1..β_T (e.g. `genrep.diffusion.get_betas`).
    average: "log" (default) — mean over images of log SNR(x0, t), with its std; "snr" — log of the
        mean SNR over images (std then reports the per-image spread of log SNR all the same).

    Returns float64 arrays of shape (T,): t (0-based index), fraction_of_steps ((t + 1)/T),
    alpha_bar (ᾱ_t), log_snr, log_snr_std (std over images of the per-image log-SNR) and dlog_snr
    (log_snr[t] − log_snr[t − 1], NaN at t = 0). Natural logarithms.
    """
    if average not in AVERAGES:
        raise ConfigError(f"unknown SNR average {average!r}; choose one of {', '.join(AVERAGES)}")
    betas = np.asarray(betas, dtype=np.float64)
    if betas.ndim != 1 or len(betas) < 2 or not ((betas > 0) & (betas < 1)).all():
        raise ConfigError("betas must be a 1-D schedule of at least 2 values in (0, 1)")
    power = signal_power(images)
    T = len(betas)
    alpha_bar = np.cumprod(1.0 - betas)
    log_ratio = np.log(alpha_bar) - np.log1p(-alpha_bar)  # log(ᾱ_t / (1 − ᾱ_t))
    log_power = np.log(power)
    offset = log_power.mean() if average == "log" else math.log(power.mean())
    log_snr = log_ratio + offset  # Eq. 5.2, averaged over the data set
    dlog_snr = np.concatenate([[np.nan], np.diff(log_snr)])
    std = np.full(T, log_power.std(ddof=1) if len(power) > 1 else 0.0)
    t = np.arange(T, dtype=np.float64)
    return {"t": t, "fraction_of_steps": (t + 1) / T, "alpha_bar": alpha_bar, "log_snr": log_snr,
            "log_snr_std": std, "dlog_snr": dlog_snr}


def crossing_fraction(curve: dict[str, np.ndarray]) -> float | None:
    """The fraction of steps ((t + 1)/T) of the first step whose averaged log-SNR is below 0; None if none is."""
    below = np.flatnonzero(curve["log_snr"] < 0)
    return None if len(below) == 0 else float(curve["fraction_of_steps"][below[0]])


def largest_change_fraction(curve: dict[str, np.ndarray], *, skip_last: float = 0.0) -> float:
    """fraction_of_steps of the step with the largest |Δ log-SNR|, ignoring the last `skip_last`
    fraction of the steps (the cosine schedule's clipped final steps, where ᾱ_t → 0, have a few huge
    drops: β_T = 0.999 gives Δ = log 0.001 ≈ −6.9)."""
    d = np.abs(curve["dlog_snr"])
    T = len(d)
    keep = T - int(round(skip_last * T))
    return float(curve["fraction_of_steps"][int(np.nanargmax(d[:keep]))])


def crossing_line(fraction: float | None, schedule: str | None = None) -> str:
    """The printed summary: "log-SNR < 0 after 21.3% of steps" (prefixed "linear: " when named)."""
    text = ("log-SNR never drops below 0" if fraction is None else f"log-SNR < 0 after {100 * fraction:.1f}% of steps")
    return f"{schedule}: {text}" if schedule else text


def schedules_of(choice: str) -> list[str]:
    """"linear" | "cosine" | "both" → the list of schedule names."""
    if choice not in SCHEDULE_CHOICES:
        raise ConfigError(f"unknown noise schedule {choice!r}; choose one of {', '.join(SCHEDULE_CHOICES)}")
    return ["linear", "cosine"] if choice == "both" else [choice]


MAX_STEPS = 100_000  # T beyond this is no schedule anyone trains (the thesis uses 1000) and only costs memory


def check_steps(steps: int) -> int:
    """The number of diffusion steps T of an analysis: an integer in [2, MAX_STEPS] (100,000)."""
    if isinstance(steps, bool) or int(steps) != steps or not 2 <= int(steps) <= MAX_STEPS:
        raise ConfigError(f"--steps (number of diffusion steps T) must be an integer ≥ 2 and at most {MAX_STEPS:,}, "
                          f"got {steps!r}")
    return int(steps)


def write_snr_csv(curves: dict[str, dict[str, np.ndarray]], path: str | Path) -> Path:
    """One row per timestep. One schedule: t, fraction_of_steps, alpha_bar, log_snr, log_snr_std,
    dlog_snr. Several: t, fraction_of_steps, then alpha_bar_NAME, log_snr_NAME, log_snr_std_NAME,
    dlog_snr_NAME for each schedule NAME (all curves must have the same T)."""
    path = Path(path)
    names = list(curves)
    lengths = {len(c["t"]) for c in curves.values()}
    if len(lengths) != 1:
        raise InputError(f"all SNR curves in one CSV need the same number of steps, got {sorted(lengths)}")
    fields = ("alpha_bar", "log_snr", "log_snr_std", "dlog_snr")
    first = curves[names[0]]
    columns = {"t": first["t"].astype(int), "fraction_of_steps": first["fraction_of_steps"]}
    for field in fields:
        for name in names:
            columns[field if len(names) == 1 else f"{field}_{name}"] = curves[name][field]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(list(columns))
        for i in range(len(first["t"])):
            writer.writerow([_fmt(col[i]) for col in columns.values()])
    return path


def _fmt(value) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    return "nan" if math.isnan(value) else f"{value:.10g}"


def snr_analysis(dataset: str, schedule: str = "linear", steps: int = 1000, out: str | Path = ".", *,
                 split: str = "test", n: int | None = None, seed: int = 0, average: str = "log",
                 log=print) -> dict[str, dict[str, np.ndarray]]:
    """`genrep analyze snr`: log-SNR curves of `dataset[split]` (a seeded subset of `n` images, all
    by default) for `schedule` ("linear" | "cosine" | "both") with T = `steps`; writes OUT/snr.csv and
    OUT/snr.png and logs one "log-SNR < 0 after P% of steps" line per schedule. Returns the curves."""
    from genrep.analysis.plots_diffusion import plot_snr
    from genrep.data import load_dataset
    from genrep.diffusion import get_betas

    from genrep.utils.files import output_dir, writing

    names = schedules_of(schedule)
    steps = check_steps(steps)
    if n is not None and n < 1:
        raise ConfigError(f"--n must be a positive number of images, got {n}")
    out = output_dir(out)  # before the work: an --out that is an existing file fails here
    betas = {name: get_betas(name, steps) for name in names}  # before loading: fail fast on bad T
    data = load_dataset(dataset, split, value_range=(-1.0, 1.0), limit=n, seed=seed)
    curves = {name: snr_curve(data.images, betas[name], average=average) for name in names}
    with writing(out / "snr.csv"):
        write_snr_csv(curves, out / "snr.csv")
    with writing(out / "snr.png"):
        plot_snr(curves, out / "snr.png",
                 title=f"Log-SNR of the forward diffusion on {data.name}[{split}] ({len(data)} images, T={steps})")
    for name in names:
        log(crossing_line(crossing_fraction(curves[name]), name if len(names) > 1 else None))
    log(f"wrote {out / 'snr.csv'} and {out / 'snr.png'}")
    return curves
