"""The training job behind `genrep train`: data → model → Trainer → evaluation → run folder."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from genrep.config import dump_yaml, load_yaml, merge, to_dict
from genrep.data import DataSpec, ImageDataset, load_dataset
from genrep.data.labels import append_unlabelled, mask_labels
from genrep.errors import ConfigError, GenrepError, OutputError, one_line
from genrep.experiments.classifier_report import accuracy_hook, classifier_summary, has_classifier
from genrep.experiments.run_config import RunConfig, run_config_from_dict
from genrep.models.base import GenerativeModel
from genrep.models.registry import build_model, get_model_spec
from genrep.runs import prepare_run_dir, read_data_spec, write_json, write_report
from genrep.training import Trainer, launch_fabric, load_weights
from genrep.training.checkpoint import checkpoint_step
from genrep.training.loop import RESUME_CHANGEABLE_FIELDS, check_steps_reached, config_differences
from genrep.training.preemption import preemptible
from genrep.utils.images import save_grid
from genrep.utils.locks import empty_folder, locked_on_rank_zero
from genrep.utils.plots import plot_training_curves

GRID_SIZE = 64


def load_data(cfg: RunConfig, split: str) -> ImageDataset:
    """A split of the run's data; the train split with the semi-supervised label mask and the
    appended unlabelled data set of `DataConfig` applied."""
    d = cfg.data
    options = {"path": d.path} if d.path else {}
    data = load_dataset(d.name, split, value_range=d.value_range, image_size=d.image_size, pad_to=d.pad_to,
                        limit=d.limit if split != "test" else None,
                        validation_fraction=d.validation_fraction if split in ("train", "val") else 0.0,
                        seed=cfg.train.seed, **options)
    if split != "train":
        return data
    if d.labelled_share < 1 or d.drop_unlabelled:
        data = mask_labels(data, d.labelled_share, balanced=d.labelled_balanced, seed=cfg.train.seed,
                           drop_unlabelled=d.drop_unlabelled)
    if d.unlabelled is not None:
        size = d.image_size or data.image_shape[-1]
        extra = load_dataset(d.unlabelled, "train", value_range=d.value_range, image_size=size,
                             limit=d.limit, seed=cfg.train.seed)
        data = append_unlabelled(data, extra)
    return data


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
    """Train `cfg` into run folder `out`; returns the summary (also written to summary.json).

    Everything that can be checked is checked before the run folder is created, wiped (`overwrite`)
    or rewritten (`resume`): whether the folder may be used (RunExistsError, OutputError, and on
    resume the config compared with RUN/config.yaml, see `check_resume_compatible`), the data
    (loaded) and the model (built). Running out of memory while loading, building or training
    raises ConfigError naming the settings to lower. When the command fails after that, a run
    folder it created that holds no checkpoint is removed again (one that existed before is only
    emptied of what this command wrote, and only when it was empty or wiped), so the corrected
    command runs without --overwrite; a folder with a checkpoint, or a resumed one, is kept.
    """
    out = Path(out)
    config_dict = to_dict(cfg)
    fabric = launch_fabric(cfg.train)
    if fabric.is_global_zero:
        check_run_dir(out, overwrite=overwrite, resume=resume, config=config_dict)

    with out_of_memory_as_config_error(cfg, "data"):
        train = load_data(cfg, "train")
        val = load_data(cfg, "val") if cfg.data.validation_fraction > 0 else None
        test = load_data(cfg, "test")
    spec = DataSpec.of(train)
    torch.manual_seed(cfg.train.seed)
    with out_of_memory_as_config_error(cfg, "model"):
        model = build_model(cfg.model_name, cfg.model, spec, train)
        if cfg.train.init_from is not None and not resume:
            load_weights(initial_weights(cfg.train.init_from), model)
        generator = get_model_spec(cfg.model_name).generative
        grid_conditions = sample_conditions(model, test, GRID_SIZE) if generator else None

    existed = out.exists()
    emptied = out.is_dir() and not resume and (overwrite or not any(out.iterdir()))
    with locked_on_rank_zero(out):  # until the summary is written: a second train/resume/overwrite is refused
        if fabric.is_global_zero:
            prepare_run_dir(out, overwrite=overwrite, resume=resume)
        try:
            if fabric.is_global_zero:
                dump_yaml(cfg, out / "config.yaml")
                write_json(out / "data_spec.json", to_dict(spec))
            fabric.barrier()
            hooks = [sample_grid_hook("step_{step:06d}.png", grid_conditions)] if generator else []
            if has_classifier(model):
                hooks.append(accuracy_hook(test))
            trainer = Trainer(cfg.train, fabric=fabric, run_dir=out, resume=resume)
            with out_of_memory_as_config_error(cfg, "training"), preemptible():
                result = trainer.fit(model, train, val=val, hooks=hooks, config=config_dict)
        except BaseException:  # also Ctrl-C: a folder without a checkpoint holds nothing worth resuming
            if fabric.is_global_zero and (not existed or emptied):
                discard_unstarted_run(out, remove_folder=not existed)
            raise
        return summarise_run(cfg, out, result, test, generator) if fabric.is_global_zero else {}


def summarise_run(cfg: RunConfig, out: Path, result, test: ImageDataset, generator: bool) -> dict[str, Any]:
    """summary.json, loss.png and report.md of a trained run (rank 0): the final and test losses,
    speed, size, and the classifier figures of a model with a classifier."""
    model = load_trained_model(out)
    test_metrics = mean_loss(model, test)
    summary = {
        "model": cfg.model_name,
        "dataset": cfg.data.name,
        "steps": result.steps,
        "train_loss_final": result.final_loss,
        **{f"test_{k}": v for k, v in test_metrics.items()},
        "wall_time_s": result.total_wall_time_s,  # all segments of a resumed run
        "images_per_s": result.images_per_s,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    pictures = [("Samples", out / "samples" / "last.png")] if generator else []
    if has_classifier(model):
        classifier_figures, classifier_pictures = classifier_summary(model, test, out)
        summary.update(classifier_figures)
        pictures += classifier_pictures
    write_json(out / "summary.json", summary)
    curves = plot_training_curves(out / "metrics.jsonl", out / "loss.png")
    if curves is not None:
        pictures.append(("Training curves", curves))
    write_report(out, title=f"{cfg.model_name} on {cfg.data.name}", summary=summary, pictures=pictures)
    return summary


def initial_weights(init_from: str) -> Path:
    """The weights file `train.init_from` names: RUN/model.safetensors for a run folder, else the file."""
    path = Path(init_from).expanduser()
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise ConfigError(f"train.init_from: {path} does not exist (give a finished run folder or a .safetensors file)")
    return path


def check_run_dir(out: Path, *, overwrite: bool, resume: bool, config: dict[str, Any]) -> None:
    """Raise what `prepare_run_dir(out, ...)` would raise, without creating or changing anything:
    RunExistsError for a non-empty folder without `overwrite`/`resume` or a resume of a folder
    without config.yaml, OutputError for a file in the way or a parent folder that cannot be
    written, and on `resume` the ConfigError of `check_resume_compatible`."""
    if resume or (out.exists() and not out.is_dir()) or (out.is_dir() and any(out.iterdir()) and not overwrite):
        prepare_run_dir(out, overwrite=overwrite, resume=resume)  # refuses, or (resume) returns untouched
    if resume:
        check_resume_compatible(out, config)
        checkpoint = out / "checkpoints" / "last.ckpt"
        if checkpoint.is_file():  # before config.yaml is rewritten: a resume to fewer steps changes nothing
            check_steps_reached(config["train"]["steps"], checkpoint_step(checkpoint), checkpoint)
        return
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {out}: no permission to write in {existing} (or a read-only file system)")


def discard_unstarted_run(out: Path, *, remove_folder: bool) -> None:
    """Undo a failed `train_run` that wrote no checkpoint: remove `out` (`remove_folder`) or empty
    it. A folder holding checkpoints/last.ckpt or model.safetensors is never touched."""
    if not out.is_dir() or (out / "checkpoints" / "last.ckpt").exists() or (out / "model.safetensors").exists():
        return
    if remove_folder:
        shutil.rmtree(out, ignore_errors=True)
        return
    empty_folder(out, ignore_errors=True)


MEMORY_MARKERS = ("not enough memory", "defaultcpuallocator", "out of memory", "can't allocate memory",
                  "cannot allocate memory")


def is_out_of_memory(err: BaseException) -> bool:
    """True for torch's/numpy's out-of-memory errors (torch.OutOfMemoryError, MemoryError, the
    RuntimeError of the CPU allocator "DefaultCPUAllocator: can't allocate memory" / "not enough memory")."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if isinstance(err, MemoryError) or (oom_type is not None and isinstance(err, oom_type)):
        return True
    return isinstance(err, RuntimeError) and any(m in str(err).lower() for m in MEMORY_MARKERS)


def _allocation(err: BaseException) -> str:
    """"one allocation of 205 GB" from an allocator message naming what it tried to allocate, else
    the error on one short line."""
    found = re.search(r"allocate (\d+) bytes", str(err))
    if found:
        return f"one allocation of {int(found.group(1)) / 1e9:.3g} GB"
    found = re.search(r"[Tt]ried to allocate ([\d.]+ [KMGT]i?B)", str(err))
    return f"one allocation of {found.group(1)}" if found else one_line(err, 120)


def grown_settings(cfg: RunConfig, *, include_batch: bool = False) -> list[str]:
    """The memory-relevant settings of `cfg` set above their defaults, as "key (value; default D)":
    numeric model.* fields (or lists of numbers, compared by their largest entry), data.image_size /
    data.pad_to when set, and train.batch_size (`include_batch`)."""
    def flat(value, prefix):
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                out.update(flat(item, f"{prefix}.{key}"))
            return out
        return {prefix: value}

    def size(value):
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return value
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                               for v in value):
            return max(value)
        return None

    try:
        defaults = flat(to_dict(get_model_spec(cfg.model_name).config_cls()), "model")
    except Exception:  # a model config without defaults: compare with nothing
        defaults = {}
    grown = []
    for key, value in flat(to_dict(cfg.model), "model").items():
        new, old = size(value), size(defaults.get(key))
        if new is not None and old is not None and new > old:
            grown.append((new / old if old else float("inf"), f"{key} ({value}; default {defaults[key]})"))
    grown.sort(key=lambda item: -item[0])
    names = [text for _, text in grown]
    for key in ("image_size", "pad_to"):
        if getattr(cfg.data, key) is not None:
            names.append(f"data.{key} ({getattr(cfg.data, key)})")
    if include_batch:
        names.append(f"train.batch_size ({cfg.train.batch_size})")
    return names


@contextlib.contextmanager
def _out_of_memory_raises(error: type[GenrepError], message: Callable[[str], str]) -> Iterator[None]:
    """Re-raise running out of memory as `error(message(need))`, need = "one allocation of N GB"."""
    try:
        yield
    except BaseException as err:
        if not is_out_of_memory(err):
            raise
        need = _allocation(err)
        del err  # its traceback holds the frames (and tensors) that filled the memory
        raise error(message(need)) from None


def out_of_memory_as_config_error(cfg: RunConfig, stage: str):
    """Turn running out of memory in `stage` ("data", "model", "training") into a one-line
    ConfigError naming the settings to lower (those set above their defaults first)."""

    def message(need: str) -> str:
        if stage == "data":
            lower = [f"data.{k} ({getattr(cfg.data, k)})" for k in ("image_size", "pad_to", "limit")
                     if getattr(cfg.data, k) is not None]
            return (f"data too large: loading {cfg.data.name} ran out of memory ({need});"
                    f" {'lower ' + ' / '.join(lower) if lower else 'set data.limit to use a subset'}")
        if stage == "model":
            lower = grown_settings(cfg) or ["the model's sizes (model.latent_dim, model.hidden, model.channels, ...)"]
            return f"model too large: building {cfg.model_name} ran out of memory ({need}); lower " + " / ".join(lower)
        lower = grown_settings(cfg, include_batch=True)
        return f"out of memory while training {cfg.model_name} ({need}); lower " + " / ".join(lower)

    return _out_of_memory_raises(ConfigError, message)


def out_of_memory_as_error(what: str, fix: str, error: type[GenrepError] = ConfigError):
    """Turn running out of memory while doing `what` ("sampling 100000000 images") into the one-line
    `error` "out of memory WHAT (one allocation of N GB); FIX"."""
    return _out_of_memory_raises(error, lambda need: f"out of memory {what} ({need}); {fix}")


@torch.no_grad()
def sample_in_batches(model: GenerativeModel, n: int, cond: torch.Tensor | None = None, *,
                      batch_size: int = 500) -> torch.Tensor:
    """`model.sample` for n images, `batch_size` at a time (the rows of `cond` with them), gathered
    on the CPU in one tensor allocated first, so that too large an `n` fails before any sampling.
    For n <= batch_size this is one `model.sample(n, cond)` call (the same images for a seed)."""
    if n <= batch_size:
        return model.sample(n, cond).cpu()
    images = torch.empty((n, *model.image_shape))
    for start in range(0, n, batch_size):
        rows = slice(start, min(start + batch_size, n))
        chunk = model.sample(rows.stop - rows.start, None if cond is None else cond[rows])
        images[rows] = chunk.cpu()
    return images


def check_resume_compatible(run_dir: Path, new: dict[str, Any]) -> None:
    """Refuse to resume with a config that changes anything but the settings a resume may change
    (`RESUME_CHANGEABLE_FIELDS`: train.steps, train.lr, train.grad_clip and the logging settings;
    the Trainer applies them and records them in RUN/resume_changes.jsonl). Checked before
    config.yaml is rewritten, so a refused resume leaves the run folder as it was."""
    differing = config_differences(load_yaml(run_dir / "config.yaml"), new)
    if differing:
        raise ConfigError(f"cannot resume {run_dir}: the config differs in {'; '.join(differing)};"
                          f" use the run's config.yaml or start a new run (a resume may change only"
                          f" train.{', train.'.join(RESUME_CHANGEABLE_FIELDS)})")


def load_run_config(run_dir: str | Path) -> RunConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder: config.yaml is missing")
    return run_config_from_dict(load_yaml(path))


def load_trained_model(run_dir: str | Path, *, model_overrides: dict[str, Any] | None = None) -> GenerativeModel:
    """Rebuild a run's model from config.yaml + data_spec.json and load model.safetensors.
    `model_overrides` replace model settings that do not change the weights, e.g. a DDGM's
    {"sampler": "ddim", "sample_steps": 50} (a changed architecture fails to load, naming the keys)."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if model_overrides:
        raw = to_dict(cfg)
        cfg = run_config_from_dict({**raw, "model": merge(raw["model"], model_overrides)})
    for name in ("data_spec.json", "model.safetensors"):
        if not (run_dir / name).is_file():
            raise ConfigError(f"{run_dir} is not a finished run: {name} is missing (train it first)")
    spec = read_data_spec(run_dir)  # ConfigError naming a corrupt data_spec.json
    model = build_model(cfg.model_name, cfg.model, spec)
    load_weights(run_dir / "model.safetensors", model)
    return model.eval()
