"""The training job behind `genrep train`: data → model → Trainer → evaluation → run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from genrep.config import dump_yaml, from_dict, load_yaml, to_dict
from genrep.data import DataSpec, ImageDataset, load_dataset
from genrep.errors import ConfigError
from genrep.experiments.run_config import RunConfig, run_config_from_dict
from genrep.models.base import GenerativeModel
from genrep.models.registry import build_model
from genrep.runs import prepare_run_dir, write_json, write_report
from genrep.training import Trainer, launch_fabric, load_weights
from genrep.training.loop import config_differences
from genrep.utils.images import save_grid
from genrep.utils.plots import plot_training_curves

GRID_SIZE = 64


def load_data(cfg: RunConfig, split: str) -> ImageDataset:
    d = cfg.data
    options = {"path": d.path} if d.path else {}
    return load_dataset(d.name, split, value_range=d.value_range, image_size=d.image_size, pad_to=d.pad_to,
                        limit=d.limit if split != "test" else None,
                        validation_fraction=d.validation_fraction if split in ("train", "val") else 0.0,
                        seed=cfg.train.seed, **options)


def sample_conditions(model: GenerativeModel, data: ImageDataset, n: int) -> torch.Tensor | None:
    """Conditions for n samples: None for models that need none or take class labels (they cycle
    through the classes), else the condition vectors of the first n rows of `data`, repeated as needed."""
    condition = getattr(model, "condition", None)
    if condition is None or condition.num_classes is not None:
        return None
    if data.conditions is None:
        raise ConfigError(f"the model is conditioned on vectors but {data.name} has no conditions")
    return data.conditions[torch.arange(n) % len(data)]


def sample_grid_hook(path_pattern: str, cond: torch.Tensor | None = None):
    """Trainer hook writing a grid of GRID_SIZE samples (given `cond` if the model needs it) to
    samples/step_XXXXXX.png and samples/last.png."""

    def hook(state) -> None:
        model = state.model
        with torch.no_grad():
            images = model.sample(GRID_SIZE, None if cond is None else cond.to(model.device))
        out = Path(state.run_dir) / "samples"
        save_grid(images, out / path_pattern.format(step=state.step), value_range=model.value_range, nrow=8)
        save_grid(images, out / "last.png", value_range=model.value_range, nrow=8)

    return hook


@torch.no_grad()
def mean_loss(model: GenerativeModel, data: ImageDataset, *, batch_size: int = 500, seed: int = 0) -> dict[str, float]:
    """Average of Output.loss and its parts over a data set (model in eval mode, fixed noise)."""
    model.eval()
    totals: dict[str, float] = {}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for start in range(0, len(data), batch_size):
            batch = {k: v.to(model.device) for k, v in data.batch(slice(start, start + batch_size)).items()}
            out = model(batch)
            n = len(batch["x"])
            for key, value in {"loss": out.loss, **out.parts}.items():
                totals[key] = totals.get(key, 0.0) + float(value) * n
    return {k: v / len(data) for k, v in totals.items()}


def train_run(cfg: RunConfig, out: str | Path, *, overwrite: bool = False, resume: bool = False) -> dict[str, Any]:
    """Train `cfg` into run folder `out`; returns the summary (also written to summary.json)."""
    out = Path(out)
    config_dict = to_dict(cfg)
    fabric = launch_fabric(cfg.train)
    if fabric.is_global_zero:
        prepare_run_dir(out, overwrite=overwrite, resume=resume)
        if resume:
            check_resume_compatible(out, config_dict)
        dump_yaml(cfg, out / "config.yaml")
    fabric.barrier()

    train = load_data(cfg, "train")
    val = load_data(cfg, "val") if cfg.data.validation_fraction > 0 else None
    spec = DataSpec.of(train)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model_name, cfg.model, spec, train)
    if fabric.is_global_zero:
        write_json(out / "data_spec.json", to_dict(spec))

    test = load_data(cfg, "test")
    hook = sample_grid_hook("step_{step:06d}.png", sample_conditions(model, test, GRID_SIZE))
    trainer = Trainer(cfg.train, fabric=fabric, run_dir=out, resume=resume)
    result = trainer.fit(model, train, val=val, hooks=[hook], config=config_dict)
    if not fabric.is_global_zero:
        return {}

    model = load_trained_model(out)
    test_metrics = mean_loss(model, test)
    summary = {
        "model": cfg.model_name,
        "dataset": cfg.data.name,
        "steps": result.steps,
        "train_loss_final": result.final_loss,
        **{f"test_{k}": v for k, v in test_metrics.items()},
        "wall_time_s": result.wall_time_s,
        "images_per_s": result.images_per_s,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    write_json(out / "summary.json", summary)
    pictures = [("Samples", out / "samples" / "last.png")]
    curves = plot_training_curves(out / "metrics.jsonl", out / "loss.png")
    if curves is not None:
        pictures.append(("Training curves", curves))
    write_report(out, title=f"{cfg.model_name} on {cfg.data.name}", summary=summary, pictures=pictures)
    return summary


def check_resume_compatible(run_dir: Path, new: dict[str, Any]) -> None:
    """Refuse to resume with a config that changes anything but the step budget and logging settings
    (checked before config.yaml is rewritten, so a refused resume leaves the run folder as it was)."""
    differing = config_differences(load_yaml(run_dir / "config.yaml"), new)
    if differing:
        raise ConfigError(f"cannot resume {run_dir}: the config differs in {'; '.join(differing)};"
                          " use the run's config.yaml or start a new run")


def load_run_config(run_dir: str | Path) -> RunConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder: config.yaml is missing")
    return run_config_from_dict(load_yaml(path))


def load_trained_model(run_dir: str | Path) -> GenerativeModel:
    """Rebuild a run's model from config.yaml + data_spec.json and load model.safetensors."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    for name in ("data_spec.json", "model.safetensors"):
        if not (run_dir / name).is_file():
            raise ConfigError(f"{run_dir} is not a finished run: {name} is missing (train it first)")
    spec = from_dict(DataSpec, json.loads((run_dir / "data_spec.json").read_text()))
    model = build_model(cfg.model_name, cfg.model, spec)
    load_weights(run_dir / "model.safetensors", model)
    return model.eval()
