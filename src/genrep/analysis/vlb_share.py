"""Share of the variational bound per diffusion step (thesis ch. 5.9.4, Fig. 5.9.8).

The bound on −log p(x_0) of a DDGM (Eq. 2.9) is a sum of one term per step plus the prior,

    L = L_0 + L_1 + … + L_{T−1} + L_T,

where (0-based indices, as in `genrep.diffusion`) L_0 is the discretised decoder NLL
−log p(x_0|x_1) (Eq. 2.10–2.11), L_t for t ≥ 1 the KL(q(x_t|x_{t+1}, x_0) ‖ p_θ(x_t|x_{t+1})), and
L_T = KL(q(x_T|x_0) ‖ N(0, I)) the prior term. This module averages every term over a set of
images (in bits/dim, one x_t per step and image, `GaussianDiffusion.vlb_terms_bpd`) and reports

- ``vb_bpd[t]``: the mean term of step t, and its std over the images;
- ``share[t] = vb_bpd[t] / Σ_s vb_bpd[s]``: its share of the sum of the step terms, i.e. of the
  training objective (the prior L_T has no parameters, is not trained, and is left out of the
  shares; it is reported separately as ``prior_bpd`` and ``prior_share_of_bound``);
- ``cumulative_share[t]``: the share of steps 0 … t, against ``fraction_of_steps = (t + 1)/T``.

The thesis (CIFAR-10, VLB-trained, T = 1000) finds that the first step alone holds about 75% of the
bound and the first 1% of the steps over 90%.

DAED (thesis ch. 5.6): the DAE's step (index 0) is trained by an MSE and has no likelihood scale,
so only the DDGM part's terms (indices 1 … T′−1) enter (`DAED.diffusion_bits_per_dim`); the thesis'
Fig. 5.9.8b compares them with a DDGM's terms without its first step (`skip_first=1`).

Every KL term is ≥ 0 in exact arithmetic; in float32 the terms of late steps (≈ 0) can come out a
hair below 0, so ``cumulative_share`` is monotone up to that rounding (~1e-7 of the total).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch

from genrep.errors import ConfigError, InputError

CSV_COLUMNS = ("t", "fraction_of_steps", "vb_bpd", "vb_bpd_std", "share", "cumulative_share")
DEFAULT_LEVELS = (0.5, 0.9)


def _kind(model) -> str:
    """"daed" (a model with `diffusion_bits_per_dim`, its DDGM part) or "ddgm" (`nll_bits_per_dim`)."""
    if callable(getattr(model, "diffusion_bits_per_dim", None)):
        return "daed"
    if callable(getattr(model, "nll_bits_per_dim", None)):
        return "ddgm"
    raise ConfigError(f"{type(model).__name__} has no variational bound per step: the VLB share needs a "
                      "trained DDGM (nll_bits_per_dim) or DAED (diffusion_bits_per_dim)")


@torch.no_grad()
def vlb_terms(model, images: torch.Tensor, *, labels: torch.Tensor | None = None, batch_size: int = 100,
              seed: int = 0, progress: bool = False) -> dict:
    """Per-image bound terms of a trained DDGM or DAED.

    images: N×C×H×W in the model's `value_range`; labels: (N,) int64 for a class-conditional DDGM.
    `seed` fixes the noise of every x_t. Returns {"model": "ddgm" | "daed", "T": number of steps of
    the model's process, "t": (K,) int64 step indices of the terms, "vb": N×K float64 terms in
    bits/dim, "prior_bpd": (N,), "total_bpd": (N,) (the DDGM: the whole bound; the DAED: its DDGM
    part, Σ vb + prior)}. Cost: T model calls per batch.
    """
    kind = _kind(model)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) == 0:
        raise InputError(f"images must be a non-empty N×C×H×W tensor, got {getattr(images, 'shape', images)!r}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    generator = torch.Generator(device=getattr(model, "device", torch.device("cpu"))).manual_seed(seed)
    vb, prior, total = [], [], []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        if kind == "daed":
            terms = model.diffusion_bits_per_dim(x, generator=generator, progress=progress)
        else:
            y = None if labels is None else labels[start:start + batch_size]
            terms = model.nll_bits_per_dim(x, y, return_terms=True, generator=generator, progress=progress)
        vb.append(terms["vb"].double().cpu())
        prior.append(terms["prior_bpd"].double().cpu())
        total.append(terms["total_bpd"].double().cpu())
    vb_all = torch.cat(vb).numpy()
    T = int(model.diffusion.num_timesteps)
    first = T - vb_all.shape[1]  # 0 for a DDGM, 1 for a DAED (its DAE step has no term)
    return {"model": kind, "T": T, "t": np.arange(first, T, dtype=np.int64), "vb": vb_all,
            "prior_bpd": torch.cat(prior).numpy(), "total_bpd": torch.cat(total).numpy()}


def share_curve(vb: np.ndarray, t: np.ndarray, T: int, *, prior_bpd: np.ndarray | None = None,
                skip_first: int = 0) -> dict:
    """Shares of the bound from per-image terms.

    vb: N×K terms (bits/dim) of the steps `t` (K,) of a T-step process; `skip_first` drops the
    first terms (e.g. 1: a DDGM without its decoder step, Fig. 5.9.8b). Returns float64 arrays (K′,)
    "t", "fraction_of_steps" ((t + 1)/T), "vb_bpd" (mean over images), "vb_bpd_std", "share",
    "cumulative_share", and the scalars "steps_bpd" (Σ of the kept mean terms), "prior_bpd" (mean,
    NaN when not given), "prior_share_of_bound" (prior / (Σ all step terms + prior)), "n_images".
    """
    vb = np.asarray(vb, dtype=np.float64)
    t = np.asarray(t, dtype=np.int64)
    if vb.ndim != 2 or vb.shape[1] != len(t) or vb.shape[0] < 1:
        raise InputError(f"vb must be N×K with K = len(t) = {len(t)}, got {vb.shape}")
    if isinstance(skip_first, bool) or int(skip_first) != skip_first or not 0 <= skip_first < len(t):
        raise ConfigError(f"--skip-first must be an integer in [0, {len(t) - 1}], got {skip_first!r}")
    if not np.isfinite(vb).all():
        raise InputError("the bound terms are not finite (a diverged model?)")
    all_mean = vb.mean(0)
    vb_kept, t_kept = vb[:, skip_first:], t[skip_first:]
    mean = vb_kept.mean(0)
    std = vb_kept.std(0, ddof=1) if len(vb) > 1 else np.zeros_like(mean)
    total = mean.sum()
    if not total > 0:
        raise InputError(f"the step terms sum to {total:g} bits/dim: there is no bound to share")
    share = mean / total
    prior = float("nan") if prior_bpd is None else float(np.mean(prior_bpd))
    prior_share = float("nan") if prior_bpd is None else prior / (all_mean.sum() + prior)
    return {"t": t_kept, "fraction_of_steps": (t_kept + 1) / float(T), "vb_bpd": mean, "vb_bpd_std": std,
            "share": share, "cumulative_share": np.cumsum(share), "steps_bpd": float(total), "prior_bpd": prior,
            "prior_share_of_bound": prior_share, "n_images": int(len(vb)), "T": int(T), "skip_first": int(skip_first)}


def vlb_share(model, images: torch.Tensor, *, labels: torch.Tensor | None = None, skip_first: int = 0,
              batch_size: int = 100, seed: int = 0, progress: bool = False) -> dict:
    """`share_curve` of `vlb_terms(model, images)`: the share of the bound per step, averaged over
    `images` (N×C×H×W in the model's value range). Also holds "model" ("ddgm" | "daed")."""
    terms = vlb_terms(model, images, labels=labels, batch_size=batch_size, seed=seed, progress=progress)
    curve = share_curve(terms["vb"], terms["t"], terms["T"], prior_bpd=terms["prior_bpd"], skip_first=skip_first)
    curve["model"] = terms["model"]
    curve["total_bpd"] = float(np.mean(terms["total_bpd"]))
    return curve


def reached_at(curve: dict, level: float) -> tuple[int, float]:
    """(step t, fraction_of_steps) of the first step whose cumulative share reaches `level` ∈ (0, 1]."""
    if not 0.0 < level <= 1.0:
        raise ConfigError(f"a share level must lie in (0, 1], got {level}")
    cumulative = curve["cumulative_share"]
    i = int(np.searchsorted(cumulative, level - 1e-12))
    i = min(i, len(cumulative) - 1)
    return int(curve["t"][i]), float(curve["fraction_of_steps"][i])


def summary_lines(curve: dict, levels=DEFAULT_LEVELS) -> list[str]:
    """The printed summary: first term's share, where each level is reached, the prior."""
    first_t = int(curve["t"][0])
    lines = [f"step terms sum to {curve['steps_bpd']:.4f} bits/dim over {len(curve['t'])} steps "
             f"({curve['n_images']} images); step t={first_t} holds {100 * curve['share'][0]:.1f}%"]
    for level in levels:
        t, fraction = reached_at(curve, level)
        n_steps = int(np.searchsorted(curve["t"], t)) + 1
        lines.append(f"{100 * level:g}% of the bound reached at step t={t} ({n_steps} step"
                     f"{'s' if n_steps > 1 else ''}, {100 * fraction:.2f}% of the T={curve['T']} steps)")
    if not math.isnan(curve["prior_bpd"]):
        lines.append(f"prior L_T = {curve['prior_bpd']:.3g} bits/dim ({100 * curve['prior_share_of_bound']:.3g}% "
                     "of the whole bound; not in the shares)")
    return lines


def write_vlb_csv(curve: dict, path: str | Path) -> Path:
    """One row per step: t, fraction_of_steps, vb_bpd, vb_bpd_std, share, cumulative_share."""
    path = Path(path)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for i in range(len(curve["t"])):
            writer.writerow([int(curve["t"][i])] + [f"{float(curve[c][i]):.10g}" for c in CSV_COLUMNS[1:]])
    return path


def plot_vlb_share(curve: dict, out: str | Path, *, title: str = "", levels=DEFAULT_LEVELS) -> Path:
    """Two panels against the fraction of steps: (left) the mean term per step in bits/dim (log
    scale); (right) the cumulative share of the bound (log x axis), with the `levels` marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = curve["fraction_of_steps"]
    fig, (ax_t, ax_c) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    positive = np.where(curve["vb_bpd"] > 0, curve["vb_bpd"], np.nan)
    ax_t.plot(f, positive, color="tab:blue", lw=1.5)
    ax_t.set_yscale("log")
    ax_t.set_xlabel("fraction of diffusion steps ((t+1) / T)")
    ax_t.set_ylabel("L_t (bits/dim, mean over images)")
    ax_t.set_title("VLB term per step", fontsize=10)
    ax_t.grid(alpha=0.3, which="both")
    ax_c.plot(f, curve["cumulative_share"], color="tab:red", lw=1.8, marker="." if len(f) <= 60 else None)
    for i, level in enumerate(levels):
        _, fraction = reached_at(curve, level)
        ax_c.axhline(level, color="grey", ls=":", lw=0.8)
        ax_c.axvline(fraction, color="grey", ls=":", lw=0.8)
        ax_c.annotate(f"{100 * level:g}% at {100 * fraction:.2g}% of steps", (fraction, level),
                      xytext=(6, -14 - 12 * i), textcoords="offset points", fontsize=9)
    ax_c.set_xscale("log")
    ax_c.set_ylim(0, 1.02)
    ax_c.set_xlabel("fraction of diffusion steps ((t+1) / T), log scale")
    ax_c.set_ylabel("cumulative share of Σ_t L_t")
    ax_c.set_title("Cumulative share of the bound (Fig. 5.9.8)", fontsize=10)
    ax_c.grid(alpha=0.3, which="both")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)


def vlb_share_report(model, images: torch.Tensor, out: str | Path, *, labels: torch.Tensor | None = None,
                     skip_first: int = 0, levels=DEFAULT_LEVELS, seed: int = 0, batch_size: int = 100,
                     title: str = "", info: dict | None = None, progress: bool = True, log=print) -> dict:
    """`genrep analyze vlb-share` once the run is loaded: `vlb_share(model, images)`, then
    OUT/vlb_share.csv, OUT/vlb_share.png and OUT/vlb_share.json (summary, with `info` merged in),
    and the summary lines through `log`. Returns the curve."""
    curve = vlb_share(model, images, labels=labels, skip_first=skip_first, batch_size=batch_size, seed=seed,
                      progress=progress)
    from genrep.utils.files import output_dir, writing

    out = output_dir(out)
    with writing(out / "vlb_share.csv"):
        write_vlb_csv(curve, out / "vlb_share.csv")
    with writing(out / "vlb_share.png"):
        plot_vlb_share(curve, out / "vlb_share.png", levels=levels, title=title)
    lines = summary_lines(curve, levels)
    from genrep.runs import write_json

    write_json(out / "vlb_share.json", {
        **(info or {}), "model": curve["model"], "n_images": curve["n_images"], "seed": seed, "T": curve["T"],
        "skip_first": skip_first, "steps_bpd": curve["steps_bpd"], "prior_bpd": curve["prior_bpd"],
        "total_bpd": curve["total_bpd"], "first_share": float(curve["share"][0]),
        "reached": {f"{level:g}": dict(zip(("t", "fraction_of_steps"), reached_at(curve, level))) for level in levels},
        "summary": lines})
    for line in lines:
        log(line)
    log(f"wrote {out / 'vlb_share.csv'}, {out / 'vlb_share.png'} and {out / 'vlb_share.json'}")
    return curve
