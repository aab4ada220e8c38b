"""Latent-space pictures: encode a data set, project the codes to 2-D, scatter them by class
(thesis Fig. 4.1.1 and 4.4.2: the e2e Sinkhorn autoencoder's latent space beside the cVAE's).

Works for any model with `encode(x[, cond])`:
- a tuple/list result (a VAE's (μ, log σ²)) → its first element, the posterior mean;
- a tensor result (e.g. the e2e SAE's z) → itself;
- codes with more than two dimensions (e.g. N×C×h×w feature maps) are flattened to N×d.
The condition is passed only when the model is conditional, i.e. has a non-None attribute
`condition`, *and* its `encode` takes a second positional argument:
`model.encode(x, model.condition(batch))` (the cVAE). The conditional e2e SAE has a condition
but an encoder that never sees it (`encode(x)`, Eq. 4.8), so it gets `encode(x)`.

Projections (`project`) are deterministic for a seed: PCA (sklearn, full SVD, signs fixed by
sklearn's svd_flip) or t-SNE (sklearn, PCA initialisation, perplexity min(30, (N−1)/3)).
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import numpy as np
import torch

from genrep.errors import InputError

METHODS = ("pca", "tsne")
AXIS_NAMES = {"pca": "PC", "tsne": "t-SNE"}


def _encode_takes_condition(encode) -> bool:
    """Whether encode accepts (x, cond): two positional parameters or *args."""
    try:
        params = list(inspect.signature(encode).parameters.values())
    except (TypeError, ValueError):  # no signature to read (some C extensions): try passing it
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def _rows(n_data: int, n: int, seed: int) -> torch.Tensor:
    """All rows, or a seeded random subset of n rows in data order."""
    if n >= n_data:
        return torch.arange(n_data)
    return torch.randperm(n_data, generator=torch.Generator().manual_seed(seed))[:n].sort().values


@torch.no_grad()
def latent_codes(model, data, n: int = 2000, batch_size: int = 500, *, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Encode up to n images of `data` (an ImageDataset; a seeded random subset when larger).

    data must be in the model's `value_range` and image shape (when the model states them).
    Returns (codes float32 N×d numpy, labels int64 (N,) numpy or None when the data has none)."""
    if not callable(getattr(model, "encode", None)):
        raise InputError(f"{type(model).__name__} has no encode(x): latent pictures need an encoder "
                         "(an autoencoder such as vae, cvae or e2e-sae)")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or batch_size < 1:
        raise InputError(f"n and batch_size must be positive integers, got n={n!r}, batch_size={batch_size!r}")
    if len(data) == 0:
        raise InputError(f"{data.name} has no images to encode")
    model_range = getattr(model, "value_range", None)
    if model_range is not None and tuple(map(float, model_range)) != tuple(map(float, data.value_range)):
        raise InputError(f"{data.name} is in range {tuple(data.value_range)} but the model takes "
                         f"{tuple(model_range)}: load the data with value_range={tuple(model_range)}")
    model_shape = getattr(model, "image_shape", None)
    if model_shape is not None and tuple(model_shape) != tuple(data.image_shape):
        raise InputError(f"{data.name} has images {tuple(data.image_shape)} but the model takes {tuple(model_shape)}")
    params = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    device = params.device if params is not None else torch.device("cpu")
    condition = getattr(model, "condition", None)
    if condition is not None and not _encode_takes_condition(model.encode):
        condition = None
    rows = _rows(len(data), n, seed)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    codes = []
    try:
        for start in range(0, len(rows), batch_size):
            batch = {k: v.to(device) for k, v in data.batch(rows[start : start + batch_size]).items()}
            z = model.encode(batch["x"], condition(batch)) if condition is not None else model.encode(batch["x"])
            if isinstance(z, (tuple, list)):
                z = z[0]
            codes.append(z.detach().float().flatten(1).cpu())
    finally:
        if was_training:
            model.train()
    labels = None if data.labels is None else data.labels[rows].numpy().astype(np.int64)
    return torch.cat(codes).numpy(), labels


def project(codes, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D projection of codes (N×d) by "pca" or "tsne": float64 N×2, deterministic per seed.
    Codes with d = 1 get a zero second coordinate (PCA)."""
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    x = np.asarray(codes, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise InputError(f"codes must be N×d with N >= 2, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("codes contain NaN or infinite values")
    if method == "pca":
        from sklearn.decomposition import PCA

        k = min(2, x.shape[1])
        xy = PCA(n_components=k, svd_solver="full", random_state=seed).fit_transform(x)
        return np.pad(xy, ((0, 0), (0, 2 - k)))
    from sklearn.manifold import TSNE

    if len(x) < 5:
        raise InputError(f"t-SNE needs at least 5 codes, got {len(x)}")
    perplexity = min(30.0, (len(x) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                random_state=seed).fit_transform(x).astype(np.float64)


def plot_latents(panels: dict[str, tuple[np.ndarray, np.ndarray | None]], path: str | os.PathLike, *,
                 method: str = "pca", class_names: list[str] | None = None, title: str | None = None) -> Path:
    """Side-by-side scatter plots, one per panel {name: (xy N×2, labels (N,) or None)}, coloured by
    class with one shared legend (`class_names[label]` when given). Returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        raise InputError("plot_latents needs at least one panel")
    axis = AXIS_NAMES.get(method, method)
    present = sorted({int(v) for _, labels in panels.values() if labels is not None for v in np.unique(labels)})
    cmap = plt.get_cmap("tab10" if len(present) <= 10 else "tab20")
    colour = {label: cmap(i % cmap.N) for i, label in enumerate(present)}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels) + 1.4, 4.4), dpi=110, squeeze=False,
                             layout="constrained")
    for ax, (name, (xy, labels)) in zip(axes[0], panels.items()):
        xy = np.asarray(xy)
        size = max(4.0, min(14.0, 8000 / len(xy)))
        if labels is None:
            ax.scatter(xy[:, 0], xy[:, 1], s=size, color="tab:gray", alpha=0.7, linewidths=0)
        else:
            labels = np.asarray(labels)
            for label in present:
                mask = labels == label
                if mask.any():
                    ax.scatter(xy[mask, 0], xy[mask, 1], s=size, color=colour[label], alpha=0.7, linewidths=0)
        ax.set_title(f"{name}\n({len(xy)} codes)", fontsize=10)
        ax.set_xlabel(f"{axis} 1")
        ax.set_ylabel(f"{axis} 2")
        ax.grid(alpha=0.2)
    if present:
        def label_name(label: int) -> str:
            return class_names[label] if class_names is not None and label < len(class_names) else str(label)

        handles = [plt.Line2D([], [], ls="", marker="o", color=colour[k], label=label_name(k)) for k in present]
        fig.legend(handles=handles, title="class", loc="outside right center", fontsize=8, title_fontsize=9,
                   frameon=False)
    fig.suptitle(title or f"Latent codes ({'PCA' if method == 'pca' else 't-SNE'} projection)", fontsize=11)
    from genrep.utils.files import output_file, writing

    path = output_file(path)
    try:
        with writing(path):
            fig.savefig(path)
    finally:
        plt.close(fig)
    return path

