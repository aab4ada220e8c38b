"""Latent pictures of trained runs (thesis Fig. 4.1.1 / 4.4.2): each run's encoder applied to a data
split, projected to 2-D (genrep.analysis.latent), runs side by side in one PNG."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from genrep.analysis.latent import latent_codes, plot_latents, project
from genrep.experiments.train import load_data, load_run_config, load_trained_model


def load_run_and_data(run_dir: str | os.PathLike, dataset: str | None = None, split: str = "test"):
    """(model, data, config) of a run folder: the trained model and `split` of `dataset` (default:
    the run's own data set) prepared like its training data (value range, resizing, padding)."""
    cfg = load_run_config(run_dir)
    model = load_trained_model(run_dir)
    if dataset is not None and dataset != cfg.data.name:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, name=dataset, path=None))
    return model, load_data(cfg, split), cfg


def compare_latents(run_dirs: list[str | os.PathLike], out: str | os.PathLike, *, dataset: str | None = None,
                    split: str = "test", method: str = "pca", n: int = 2000, seed: int = 0, log=print) -> Path:
    """One PNG at `out` with a panel per run: `n` images of `split` (seeded subset) encoded by the
    run (VAEs: posterior mean), projected by `method` ("pca" | "tsne"), coloured by class."""
    panels, class_names, data = {}, None, None
    for run in run_dirs:
        model, data, cfg = load_run_and_data(run, dataset, split)
        codes, labels = latent_codes(model, data, n, seed=seed)
        name = f"{Path(run).name} ({cfg.model_name}, {codes.shape[1]}-d)"
        if name in panels:  # the same folder name twice: number the panels
            name = f"{name} #{sum(key.startswith(name) for key in panels) + 1}"
        panels[name] = (project(codes, method, seed), labels)
        class_names = class_names or data.class_names
        log(f"{run}: encoded {len(codes)} images of {data.name}[{split}] into {codes.shape[1]}-d codes")
    return plot_latents(panels, out, method=method, class_names=class_names,
                        title=f"Latent codes of {data.name}[{split}] ({'PCA' if method == 'pca' else 't-SNE'})")
