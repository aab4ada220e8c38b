"""Conditional sampling with optimised representations, analysed (thesis Sec. 6.6.2):

- `alpha_sweep`: precision, recall (PRD × 100) and FID of class-balanced conditional samples against
  real features for each step size α (Fig. 6.6.1; the thesis finds a sweet spot α ∈ [100, 250],
  higher α: more precise, less diverse samples);
- `decisions_over_steps`: the classifier's probability of the target class at every sampling step,
  averaged per target class, for each α (Fig. 6.6.3: a higher α converges faster to the target),
  with the final samples (a row per class).

Every α starts from the same seeded noise, so the α values are compared on paired samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genrep.errors import InputError
from genrep.experiments.joint.counterfactual import require_joint

SWEET_SPOT = (100.0, 250.0)  # the thesis' α range where both precision and recall are high (Fig. 6.6.1)


def check_alphas(alphas) -> list[float]:
    """The step sizes as floats (a non-empty list of numbers >= 0), else InputError."""
    values = list(alphas) if isinstance(alphas, (list, tuple)) else None
    if not values or any(isinstance(a, bool) or not isinstance(a, (int, float)) or not a >= 0 or a == float("inf")
                         for a in values):
        raise InputError(f"alphas must be numbers >= 0 (a non-empty list of step sizes), got {alphas!r}")
    return [float(a) for a in values]


def match_extractor(images: torch.Tensor, extractor) -> torch.Tensor:
    """Images resized (bilinear, antialiased when shrinking) to the H×W the feature extractor was
    trained on (`extractor.input_size`, e.g. a FashionMNIST LeNet's 28×28 for a run on 16×16
    resized images); unchanged when it has none or they already match."""
    size = getattr(extractor, "input_size", None)
    if size is None or tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=tuple(size), mode="bilinear", align_corners=False,
                         antialias=True).clamp(0.0, 1.0)


def alpha_sweep(model, real_features: torch.Tensor, extractor, *, alphas, n: int, seed: int,
                progress: bool = False) -> list[dict[str, float]]:
    """[{alpha, precision, recall, fid}] for each α: n class-balanced conditional samples
    (`evaluation.generate` with `balanced_labels`, seed `seed`) against `real_features` (N×D, N ≥ n,
    from the same `extractor`)."""
    from genrep.experiments.joint.evaluation import balanced_labels, generate, generation_metrics

    require_joint(model)
    alphas = check_alphas(alphas)
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise InputError(f"n (samples per α) must be an integer >= 2, got {n!r}")
    labels = balanced_labels(n, model.head_classes)
    rows = []
    for alpha in alphas:
        fake = generate(model, n, seed, labels=labels, alpha=alpha, progress=progress)
        f_fake = extractor.features(match_extractor(fake, extractor), progress=progress)
        metrics = generation_metrics(real_features, f_fake, seed)
        rows.append({"alpha": alpha, "precision": float(metrics["precision"]), "recall": float(metrics["recall"]),
                     "fid": float(metrics["fid"])})
    return rows


def _alpha_positions(alphas: list[float]) -> tuple[list[float], float | None]:
    """x positions on a log axis: α itself, α = 0 one decade left of the smallest positive α (or at 1)."""
    positive = [a for a in alphas if a > 0]
    zero_at = (min(positive) / 10.0) if positive else 1.0
    return [a if a > 0 else zero_at for a in alphas], (zero_at if len(positive) < len(alphas) else None)


def plot_alpha_sweep(rows: list[dict], path: str | Path, *, title: str | None = None) -> Path:
    """Fig. 6.6.1: precision and recall (left) and FID (right) against α on a log x axis, α = 0
    drawn at the left as "0", the thesis' sweet spot α ∈ [100, 250] shaded."""
    from genrep.utils.plots import plt, save_figure

    if not rows:
        raise InputError("plot_alpha_sweep needs at least one row")
    rows = sorted(rows, key=lambda r: r["alpha"])
    alphas = [float(r["alpha"]) for r in rows]
    xs, zero_at = _alpha_positions(alphas)
    fig, (ax, ax_fid) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=110)
    for a in (ax, ax_fid):
        a.axvspan(*SWEET_SPOT, color="tab:green", alpha=0.15, label="thesis sweet spot α ∈ [100, 250]")
    ax.plot(xs, [r["precision"] for r in rows], "o-", label="precision")
    ax.plot(xs, [r["recall"] for r in rows], "s-", label="recall")
    ax.set_ylabel("PRD × 100")
    ax_fid.plot(xs, [r["fid"] for r in rows], "o-", color="tab:red", label="FID")
    ax_fid.set_ylabel("FID")
    lo, hi = min(xs + [SWEET_SPOT[0]]), max(xs + [SWEET_SPOT[1]])
    for a in (ax, ax_fid):
        a.set_xscale("log")
        a.set_xlim(lo / 2, hi * 2)
        ticks = sorted(set(xs))
        a.set_xticks(ticks, [("0" if zero_at is not None and x == zero_at else f"{x:g}") for x in ticks])
        a.minorticks_off()
        a.set_xlabel("step size α")
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.suptitle(title or "Conditional sampling: precision / recall and FID against α", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    return save_figure(fig, path)


@torch.no_grad()
def decisions_over_steps(model, *, alphas, n_per_class: int, seed: int, batch_size: int = 500,
                         progress: bool = False) -> dict:
    """For each α, conditional sampling of n_per_class images per class (targets 0…0, 1…1, …; the
    same seeded noise for every α) with the classifier's probability of each sample's target
    recorded at every step (`on_step`, the head on x_t before the update).

    Returns {"alphas", "num_classes", "n_per_class", "timesteps" (the original t of each step, from
    the first (noise) to the last), "targets" (N,), "value_range", "runs": [{"alpha", "p_target"
    (steps × K float array: mean p(target) of the samples of each target class), "final_p_target"
    (K,: the same for the final samples, classified at t = 0), "samples" (N×C×H×W in the model's
    value range, CPU)}]}."""
    require_joint(model)
    alphas = check_alphas(alphas)
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, int) or n_per_class < 1:
        raise InputError(f"n_per_class must be an integer >= 1, got {n_per_class!r}")
    K = int(model.head_classes)
    targets = torch.arange(K).repeat_interleave(n_per_class)
    runs, timesteps = [], []
    for alpha in alphas:
        generator = torch.Generator(device=model.device).manual_seed(seed)
        chunks, sample_chunks = [], []
        for start in range(0, len(targets), batch_size):
            y = targets[start:start + batch_size].to(model.device)
            rows = torch.arange(len(y), device=model.device)
            record: list[torch.Tensor] = []
            steps_t: list[int] = []

            def on_step(t, probs, record=record, steps_t=steps_t, y=y, rows=rows):
                steps_t.append(int(t.reshape(-1)[0]))
                record.append(probs[rows, y].float().cpu())

            samples = model.sample(len(y), y, alpha=alpha, generator=generator, progress=progress, on_step=on_step)
            chunks.append(torch.stack(record))  # steps × chunk
            sample_chunks.append(samples.cpu())
            timesteps = steps_t
        p = torch.cat(chunks, dim=1)  # steps × N, class-major
        samples = torch.cat(sample_chunks)
        with model.evaluating():
            final = torch.cat([model.classify(samples[i:i + batch_size].to(model.device)).softmax(-1).float().cpu()
                               for i in range(0, len(samples), batch_size)])
        final_target = final[torch.arange(len(targets)), targets]
        runs.append({"alpha": alpha, "p_target": p.reshape(len(p), K, n_per_class).mean(-1).numpy(),
                     "final_p_target": final_target.reshape(K, n_per_class).mean(-1).numpy(), "samples": samples})
    return {"alphas": alphas, "num_classes": K, "n_per_class": n_per_class, "timesteps": list(timesteps),
            "targets": targets, "value_range": tuple(float(v) for v in model.value_range), "runs": runs}


def decisions_summary(result: dict) -> dict:
    """The JSON-ready numbers of `decisions_over_steps` (no samples)."""
    return {"alphas": result["alphas"], "num_classes": result["num_classes"], "n_per_class": result["n_per_class"],
            "timesteps": result["timesteps"],
            "runs": [{"alpha": r["alpha"], "p_target": np.asarray(r["p_target"]).tolist(),
                      "final_p_target": np.asarray(r["final_p_target"]).tolist(),
                      "mean_final_p_target": float(np.mean(r["final_p_target"]))} for r in result["runs"]]}


def _mosaic(samples: torch.Tensor, rows: int, cols: int, per_row: int, value_range) -> tuple[np.ndarray, str | None]:
    """A rows × cols grid (1-pixel white gaps) of the first `cols` images of each row block of
    `per_row` samples, scaled to [0, 1]: (H×W array, "gray") or (H×W×3 array, None)."""
    lo, hi = value_range
    c, h, w = samples.shape[1:]
    grid = torch.ones(c, rows * (h + 1) - 1, cols * (w + 1) - 1)
    for r in range(rows):
        for j in range(cols):
            image = ((samples[r * per_row + j] - lo) / (hi - lo)).clamp(0, 1)
            grid[:, r * (h + 1):r * (h + 1) + h, j * (w + 1):j * (w + 1) + w] = image
    if c == 1:
        return grid[0].numpy(), "gray"
    return grid.permute(1, 2, 0).numpy(), None


def plot_decisions(result: dict, path: str | Path, *, class_names: list[str] | None = None,
                   max_columns: int = 8, title: str | None = None) -> Path:
    """Fig. 6.6.3: one panel per α of the mean p(target) against the sampling step (one line per
    target class, from the first step, noise, to the last), and under each a grid of the final
    samples, a row per class (at most `max_columns` per row)."""
    from matplotlib.ticker import MaxNLocator

    from genrep.utils.plots import plt, save_figure

    runs = result["runs"]
    if not runs:
        raise InputError("plot_decisions needs at least one α")
    K, per_class = result["num_classes"], result["n_per_class"]
    cols = min(per_class, max_columns)
    width = max(2.6, 0.3 * cols + 0.8)
    fig, axes = plt.subplots(2, len(runs), figsize=(width * len(runs), 2.8 + max(1.2, 0.3 * K)), dpi=110,
                             squeeze=False, gridspec_kw={"height_ratios": [2.6, max(1.2, 0.3 * K)]})
    cmap = plt.get_cmap("tab10" if K <= 10 else "viridis")
    for j, run in enumerate(runs):
        p = np.asarray(run["p_target"])
        steps = np.arange(1, len(p) + 1)
        ax = axes[0, j]
        for c in range(K):
            name = class_names[c] if class_names and c < len(class_names) else str(c)
            ax.plot(steps, p[:, c], color=cmap(c % 10 if K <= 10 else c / max(K - 1, 1)), lw=1.2, label=name)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(1, max(len(p), 2))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"α = {run['alpha']:g}", fontsize=9)
        ax.set_xlabel("sampling step (1 = noise)", fontsize=8)
        ax.grid(alpha=0.3)
        if j == 0:
            ax.set_ylabel("mean p(target class)", fontsize=8)
            if K <= 10:
                ax.legend(fontsize=6, title="target", title_fontsize=6, loc="best")
        grid, gray = _mosaic(run["samples"], K, cols, per_class, result["value_range"])
        axes[1, j].imshow(grid, cmap=gray, vmin=0, vmax=1, interpolation="nearest")
        axes[1, j].set_xticks([])
        axes[1, j].set_yticks([])
        if j == 0:
            axes[1, j].set_ylabel("samples\n(row = class)", fontsize=8)
    fig.suptitle(title or "Classifier decisions during conditional sampling", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    return save_figure(fig, path)


def run_feature_extractor(dataset: str, channels: int, *, progress: bool = False):
    """(extractor, note) for FID / PRD of a run on `dataset`: its cached LeNet (gray data), or a
    quick 1-epoch LeNet trained now and not cached when none is cached (as
    `evaluation.feature_extractor` does at `smoke`); Inception for RGB data."""
    from genrep.errors import CheckpointError
    from genrep.metrics import get_extractor
    from genrep.metrics.features import load_lenet, train_lenet

    if channels != 1:
        return get_extractor("inception", resize="torch"), "Inception (FID port, 2048-d)"
    try:
        return load_lenet(dataset), f"LeNet[{dataset}] (cached)"
    except CheckpointError:
        pass
    model, accuracy = train_lenet(dataset, epochs=1, save=False, progress=progress)
    return model, f"LeNet[{dataset}] (quick 1-epoch, not cached, test accuracy {accuracy:.4f})"
