"""`genrep continual METHOD --scenario NAME --scale S --seeds N`: one continual learner on one
scenario over several seeds, with the per-seed task × time matrices and a mean ± SEM summary.

Scales (settings of every learner; `--set key=value` overrides any of them):
- `smoke`: 300 training images per task, the reference classifier schedule, tiny generators — seconds per
  run, for tests and CI (use `--scenario split-digits` for the fully offline 8×8 version);
- `cpu`: the full training split, the reference classifier schedule (15 epochs, batch 120, Adam
  2e-3: cheap on a CPU), GR's reference VAE budget, and BinPlay (`CPU_BINPLAY`) with a 4-filter
  autoencoder, 3 autoencoder and 15 decoder epochs per task instead of 20 and 200, and the task-t
  decoder warm-started from the autoencoder's decoder (lr 5e-3) instead of a fresh one, the new task
  half of its replay batches: with a fresh decoder, 5 epochs regenerate one blurred class per task
  (benchmarks/RESULTS.md);
- `paper`: the published settings (METHODS.md §4; `BinPlaySettings` defaults).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from genrep.errors import ConfigError

SCALES = ("smoke", "cpu", "paper")
METHODS = ("binplay", "gr", "gr-distill", "er", "finetune", "joint")

# settings overrides per scale, shared by every classifier learner (ClassifierSettings fields)
CLASSIFIER = {"smoke": {}, "cpu": {}, "paper": {}}
GENERATOR = {"smoke": {"gen_iters": 100}, "cpu": {}, "paper": {}}
SMOKE_BINPLAY = {"width": 8, "ae_epochs": 10, "warmup_epochs": 3, "decoder_epochs": 40}
CPU_BINPLAY = {"width": 4, "ae_epochs": 3, "warmup_epochs": 1, "decoder_epochs": 15, "decoder_init": "autoencoder",
               "decoder_lr": 5e-3, "decoder_new_fraction": 0.5}
TRAIN_LIMIT = {"smoke": 300, "cpu": None, "paper": None}


def check_choice(kind: str, value: str, choices) -> str:
    if value not in choices:
        raise ConfigError(f"unknown {kind} {value!r}; valid: {', '.join(choices)}")
    return value


def method_settings(method: str, scale: str) -> dict[str, Any]:
    """The settings overrides of `method` at `scale` (on top of the learner's defaults)."""
    check_choice("method", method, METHODS)
    check_choice("scale", scale, SCALES)
    if method == "binplay":
        return dict({"smoke": SMOKE_BINPLAY, "cpu": CPU_BINPLAY, "paper": {}}[scale])
    settings = dict(CLASSIFIER[scale])
    if method in ("gr", "gr-distill"):
        settings.update(GENERATOR[scale])
    return settings


def build_learner(method: str, *, seed: int, overrides: dict[str, Any] | None = None):
    """A fresh learner of `method` with `overrides` (settings field → value) and `seed`."""
    from genrep.continual.baselines import BASELINES

    overrides = dict(overrides or {})
    if method == "binplay":
        from genrep.continual.binplay import BinPlay, BinPlaySettings

        cls, settings_cls = BinPlay, BinPlaySettings
    else:
        cls, settings_cls = BASELINES[method], None
    try:
        if settings_cls is not None:
            return cls(settings_cls(seed=seed, **overrides))
        return cls(seed=seed, **overrides)
    except TypeError as err:
        raise ConfigError(f"{method}: bad setting ({err}); see `genrep continual --help`") from None


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """`key=value` strings → dict; values parsed as JSON where possible (numbers, true/false, lists)."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set needs key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def mean_sem(values: list[float]) -> tuple[float, float]:
    """(mean, standard error of the mean; 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def seed_list(seeds: int | str | list[int]) -> list[int]:
    """`--seeds`: a count N (seeds 0 … N−1) or a comma-separated list of seeds ("1,2", e.g. to run the
    seeds of one cell in parallel processes into the same folder; "2," is seed 2 alone)."""
    if isinstance(seeds, str):
        try:
            seeds = [int(part) for part in seeds.split(",") if part.strip()] if "," in seeds else int(seeds)
        except ValueError:
            raise ConfigError(f"--seeds takes a count or a comma-separated list of seeds, got {seeds!r}") from None
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {seeds}")
        return list(range(seeds))
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds list must hold distinct seeds >= 0, got {seeds}")
    return list(seeds)


def run_method(method: str, scenario: str, *, scale: str = "smoke", seeds: int | str | list[int] = 1,
               out: str | Path, overrides: dict[str, Any] | None = None, resume: bool = False, overwrite: bool = False,
               progress: bool = True, log=print) -> dict[str, Any]:
    """Run `method` on `scenario` for `seed_list(seeds)` into out/seed{s} (each a `run_scenario`
    folder: checkpoint, results.json, heatmap.png, curves.png, and replay.png for generative replay)
    and write out/summary.json with
    the average accuracy after the last task (mean ± SEM over seeds), forgetting, memory and wall
    time. Memory is in MiB (2^20 bytes), the unit of Table 8.4.2. Finished seeds are reused with `resume`."""
    from genrep.continual.runner import run_scenario
    from genrep.continual.scenarios import build_scenario
    from genrep.runs import write_json

    check_choice("scale", scale, SCALES)
    seeds = seed_list(seeds)
    settings = {**method_settings(method, scale), **(overrides or {})}
    if "seed" in settings:
        raise ConfigError("set seeds with --seeds, not --set seed=...")
    out = Path(out)
    per_seed = []
    for seed in seeds:
        scenario_obj = build_scenario(scenario, seed=seed, limit=TRAIN_LIMIT[scale])
        learner = build_learner(method, seed=seed, overrides=settings)
        started = time.perf_counter()
        result = run_scenario(learner, scenario_obj, out / f"seed{seed}", resume=resume, overwrite=overwrite,
                              progress=progress, log=log)
        replay_picture(learner, scenario_obj, out / f"seed{seed}" / "replay.png")
        summary = result.summary["accuracy"]
        per_seed.append({"seed": seed, "average_accuracy": summary["average"], "forgetting": summary["forgetting"],
                         "memory_mb": result.memory_bytes[-1] / 2**20, "wall_time_s": sum(result.wall_times),
                         "run_s": round(time.perf_counter() - started, 1),
                         "final_row": [float(v) for v in result.matrices["accuracy"][-1]]})
    accuracy = mean_sem([100 * r["average_accuracy"] for r in per_seed])
    summary = {"method": method, "scenario": scenario, "scale": scale, "seeds": seeds,
               "settings": settings, "average_accuracy_percent": {"mean": accuracy[0], "sem": accuracy[1]},
               "memory_mb": max(r["memory_mb"] for r in per_seed),
               "wall_time_s": {"mean": sum(r["wall_time_s"] for r in per_seed) / len(seeds),
                               "max": max(r["wall_time_s"] for r in per_seed)},
               "per_seed": per_seed}
    write_json(out / "summary.json", summary)
    return summary


def replay_picture(learner, scenario, path: Path, per_task: int = 10) -> Path | None:
    """What a generative-replay learner rehearses after the last task: one row of `per_task`
    regenerated samples per task (BinPlay), or rows of unconditional samples (GR's VAE); None for
    learners that replay nothing generated."""
    from genrep.continual.baselines import GenerativeReplay
    from genrep.continual.binplay import BinPlay
    from genrep.utils.images import save_grid

    with torch.no_grad():
        if isinstance(learner, BinPlay):
            images = torch.cat([learner.sample(per_task, k) for k in range(scenario.num_tasks)])
        elif isinstance(learner, GenerativeReplay):
            images = learner.sample(per_task * scenario.num_tasks)
        else:
            return None
    return save_grid(images.cpu(), path, value_range=scenario.value_range, nrow=per_task)


def describe(summary: dict[str, Any]) -> str:
    """One line: method, scenario, accuracy mean ± SEM, memory, wall time."""
    acc = summary["average_accuracy_percent"]
    return (f"{summary['method']} on {summary['scenario']} ({summary['scale']}, {len(summary['seeds'])} seed(s)): "
            f"average accuracy {acc['mean']:.1f} ± {acc['sem']:.1f} % (SEM), memory {summary['memory_mb']:.2f} MB, "
            f"{summary['wall_time_s']['mean']:.0f} s per run")


def settings_help() -> str:
    """The settings fields of every learner, for `--help`."""
    from genrep.continual import baselines
    from genrep.continual.binplay import BinPlaySettings

    names = {}
    for label, cls in (("classifier learners", baselines.ClassifierSettings), ("er", baselines.ERSettings),
                       ("gr / gr-distill", baselines.GRSettings)):
        names[label] = [f.name for f in dataclasses.fields(cls) if f.name != "seed"]
    names["binplay"] = [f.name for f in dataclasses.fields(BinPlaySettings) if f.name != "seed"]
    return "; ".join(f"{label}: {', '.join(fields)}" for label, fields in names.items())
