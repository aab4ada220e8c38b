"""Visual counterfactual explanations with a joint diffusion model (thesis Sec. 6.6.6, Fig. 6.6.4).

Protocol: noise each image x_0 to `fraction`·T of the forward diffusion (the thesis: 20 %), then run
conditional sampling by optimised representations (Alg. 1, `JointDiffusion.conditional_model`)
from there toward a target class, the "other" class for two-class data (Malaria uninfected ↔
parasitised). The difference counterfactual − original shows what the classifier needs changed.

On the model's sampling process (`model.sampling_diffusion`, respaced when `sample_steps` is set;
index i ↔ original timestep `timestep_map[i]`) the start is the index k whose original timestep is
closest to fraction·(T − 1) (`noising_index`); x_k = q_sample(x_0, k) with noise drawn from the
generator, then the sampling loop runs steps k, …, 0 (t_start = k) with the model's sampler and
clipping, in eval mode. α = 0 is the plain partial (SDEdit-style) sampling of the UNet.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genrep.errors import InputError

ROW_TITLES = ("original", "noised", "counterfactual", "difference")


def require_joint(model) -> None:
    """InputError unless `model` is a joint diffusion model with a single-label classifier head."""
    if not callable(getattr(model, "conditional_model", None)):
        raise InputError("conditional sampling needs a joint diffusion model with a classifier head;"
                         f" {type(model).__name__} has none")
    if getattr(model, "multi_label", False):
        raise InputError(f"this joint diffusion model has a multi-label head over {model.num_attributes} attributes:"
                         " counterfactuals and class decisions need a single-label head (class labels)")


def check_fraction(fraction) -> float:
    """`fraction` as a float in (0, 1] (the share of the forward diffusion to noise to), else InputError."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise InputError(f"fraction (the share of the forward diffusion to noise the images to) must be a number"
                         f" in (0, 1], got {fraction!r}")
    return float(fraction)


def noising_index(process, fraction: float) -> int:
    """The index k of `process` (a GaussianDiffusion or a SpacedDiffusion) whose original timestep
    (`timestep_map[k]`, or k itself) is closest to fraction·(T − 1), T the original number of steps
    (ties: the lower index)."""
    fraction = check_fraction(fraction)
    timestep_map = getattr(process, "timestep_map", None)
    if timestep_map is None:
        timesteps = torch.arange(process.num_timesteps, dtype=torch.float64)
        T = process.num_timesteps
    else:
        timesteps = timestep_map.to(torch.float64)
        T = getattr(process, "original_num_steps", int(timestep_map.max()) + 1)
    goal = fraction * (T - 1)
    return int(torch.argmin((timesteps - goal).abs()))  # argmin returns the first minimum


def default_targets(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The "other" class: 1 − y for two classes (Malaria uninfected ↔ parasitised), else (y + 1) mod K."""
    labels = torch.as_tensor(labels).long()
    if num_classes < 2:
        raise InputError(f"counterfactuals need at least 2 classes, got {num_classes}")
    return 1 - labels if num_classes == 2 else (labels + 1) % num_classes


def pick_balanced(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Indices of n images (seeded), class-balanced where possible: a seeded random order, then the
    classes in turn (0, 1, …, K−1, 0, …), each contributing its next image; a class that has run out
    is skipped. Returned in that pick order."""
    labels = torch.as_tensor(labels).long()
    if not 1 <= n <= len(labels):
        raise InputError(f"n must be between 1 and {len(labels)} (the images available), got {n}")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    queues = [order[labels[order] == c].tolist() for c in torch.unique(labels).tolist()]
    picked: list[int] = []
    while len(picked) < n:
        for queue in queues:
            if queue and len(picked) < n:
                picked.append(queue.pop(0))
    return torch.tensor(picked, dtype=torch.long)


@torch.no_grad()
def _probabilities(model, x: torch.Tensor) -> torch.Tensor:
    """Softmax of the head on clean images (t = 0) in the model's value range, N×K on the CPU."""
    return model.classify(x).softmax(-1).float().cpu()


def counterfactuals(model, x: torch.Tensor, targets: torch.Tensor, *, fraction: float = 0.2,
                    alpha: float | None = None, generator: torch.Generator | None = None) -> dict:
    """Counterfactuals of images x (N×C×H×W in the model's value range) toward `targets` (int64 (N,)).

    Returns a dict of CPU tensors in the model's value range: "original" (x), "noised" (x_k, shown
    clamped to the range), "counterfactual", "difference" (counterfactual − original, signed), and
    "noise" (the ε of x_k); "targets", the classifier's (t = 0, eval mode) "predicted_before" /
    "predicted_after" (N,) and "p_target_before" / "p_target_after" (N,); and "k" (the start index
    on `model.sampling_diffusion`), "timestep" (its original timestep), "fraction", "alpha",
    "value_range". See the module docstring for the protocol; α defaults to
    `model.config.sampling_alpha`."""
    from genrep.models.ddgm import from_model_range, to_model_range

    require_joint(model)
    fraction = check_fraction(fraction)
    x = model.check_batch({"x": x}).to(model.device)
    n = x.shape[0]
    targets = model.check_target(targets, n)
    alpha = model.config.sampling_alpha if alpha is None else alpha
    process = model.sampling_diffusion
    k = noising_index(process, fraction)
    timestep_map = getattr(process, "timestep_map", None)
    timestep = k if timestep_map is None else int(timestep_map[k])
    config = model.config
    with model.evaluating():
        x0 = to_model_range(x, model.value_range)
        noise = process.noise_like(x0.shape, dtype=x0.dtype, device=x0.device, generator=generator)
        x_k = process.q_sample(x0, torch.full((n,), k, dtype=torch.long, device=x0.device), noise)
        cond = model.conditional_model(targets, alpha)
        out = process.sample_loop(cond, tuple(x0.shape), sampler=config.sampler,
                                  eta=config.ddim_eta if config.sampler == "ddim" else 0.0, noise=x_k, t_start=k,
                                  clip_denoised=config.clip_denoised, generator=generator, device=model.device)
        counterfactual = from_model_range(out, model.value_range)
        before, after = _probabilities(model, x), _probabilities(model, counterfactual)
    original = x.float().cpu()
    counterfactual = counterfactual.float().cpu()
    rows = torch.arange(n)
    t_cpu = targets.cpu()
    return {
        "original": original,
        "noised": from_model_range(x_k, model.value_range).float().cpu(),
        "counterfactual": counterfactual,
        "difference": counterfactual - original,
        "noise": noise.float().cpu(),
        "targets": t_cpu,
        "predicted_before": before.argmax(1),
        "predicted_after": after.argmax(1),
        "p_target_before": before[rows, t_cpu],
        "p_target_after": after[rows, t_cpu],
        "k": k,
        "timestep": timestep,
        "fraction": fraction,
        "alpha": float(alpha),
        "value_range": tuple(float(v) for v in model.value_range),
    }


def summary(result: dict, labels: torch.Tensor | None = None, *, class_names: list[str] | None = None) -> dict:
    """The JSON-ready numbers of a `counterfactuals` result: per image (label, target, predicted
    before / after, p(target) before / after, flipped = predicted ≠ target before and = target
    after) and "flipped_share" (share of all images that flipped to the target), "reached_share"
    (share predicted as the target after), mean p(target) before / after."""
    targets = result["targets"]
    before, after = result["predicted_before"], result["predicted_after"]
    flipped = (before != targets) & (after == targets)
    images = []
    for i in range(len(targets)):
        row = {"target": int(targets[i]), "predicted_before": int(before[i]), "predicted_after": int(after[i]),
               "p_target_before": float(result["p_target_before"][i]),
               "p_target_after": float(result["p_target_after"][i]), "flipped": bool(flipped[i])}
        if labels is not None:
            row = {"label": int(labels[i]), **row}
        if class_names is not None:
            if labels is not None:
                row["label_name"] = class_names[int(labels[i])]
            row["target_name"] = class_names[int(targets[i])]
        images.append(row)
    return {"fraction": result["fraction"], "k": result["k"], "timestep": result["timestep"],
            "alpha": result["alpha"], "n": len(targets), "flipped_share": float(flipped.float().mean()),
            "reached_share": float((after == targets).float().mean()),
            "mean_p_target_before": float(result["p_target_before"].mean()),
            "mean_p_target_after": float(result["p_target_after"].mean()), "images": images}


def _display(image: torch.Tensor, value_range) -> tuple:
    """(array for imshow, cmap, vmin, vmax) of one C×H×W image in `value_range`."""
    lo, hi = value_range
    if image.shape[0] == 1:
        return image[0].numpy(), "gray", lo, hi
    scaled = ((image - lo) / (hi - lo)).clamp(0, 1)
    return scaled.permute(1, 2, 0).numpy(), None, None, None


def plot_counterfactuals(result: dict, path: str | Path, *, class_names: list[str] | None = None,
                         value_range=None, labels: torch.Tensor | None = None) -> Path:
    """Fig. 6.6.4: a PNG with one column per image and 4 rows (original / noised / counterfactual /
    difference; the difference, averaged over the channels for RGB, in a diverging colormap centred
    at 0). Column titles "y→target" (class names when given; y from `labels`, else the prediction
    before) and p(target) after. `value_range`: of the images (default the result's)."""
    from genrep.utils.plots import plt, save_figure

    value_range = tuple(result.get("value_range", (0.0, 1.0)) if value_range is None else value_range)
    n = len(result["original"])
    names = class_names or None

    def label(c: int) -> str:
        return names[c] if names and c < len(names) else str(c)

    source = result["predicted_before"] if labels is None else torch.as_tensor(labels)
    difference = result["difference"].mean(1)  # N×H×W (the one channel, or the mean over RGB)
    limit = float(difference.abs().max()) or 1e-6
    fig, axes = plt.subplots(4, n, figsize=(1.25 * n + 1.0, 5.4), dpi=110, squeeze=False)
    shown = None
    for j in range(n):
        for i, key in enumerate(("original", "noised", "counterfactual")):
            array, cmap, vmin, vmax = _display(result[key][j], value_range)
            axes[i, j].imshow(array, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        shown = axes[3, j].imshow(difference[j].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit,
                                  interpolation="nearest")
        y, target = int(source[j]), int(result["targets"][j])
        axes[0, j].set_title(f"{label(y)}→{label(target)}\np={float(result['p_target_after'][j]):.2f}", fontsize=7)
        for i in range(4):
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
    for i, title in enumerate(ROW_TITLES):
        axes[i, 0].set_ylabel(title, fontsize=8)
    fig.suptitle(f"Counterfactuals: noised to {100 * result['fraction']:g}% of the forward diffusion "
                 f"(t = {result['timestep']}), α = {result['alpha']:g}", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    bar = fig.add_axes((0.94, 0.05, 0.015, 0.18))
    fig.colorbar(shown, cax=bar).ax.tick_params(labelsize=6)
    path = Path(path)
    return save_figure(fig, path)
