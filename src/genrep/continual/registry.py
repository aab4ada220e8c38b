"""The continual methods by name: one `LearnerSpec` per method, read by `genrep continual` (choices, help,
`--set` fields), the `reproduce` recipes and `genrep.experiments.continual.run_method` (settings per scale and
protocol, the summary's metric, extra pictures).

To add a continual method: write its learner (a `ContinualLearner` built from one settings dataclass) and add
one `register_learner(LearnerSpec(...))` call at the bottom of this module, next to the others: its name, the
learner factory and settings class, kind, a one-line summary, and what differs per scale (`scales`), from the
settings class (`defaults`) and per protocol (`groups`, the keys of `experiments.continual.PROTOCOLS`). Nothing
else names a method: the command line, its help and the run folders follow from the spec. The registry imports
the learner modules, never the other way round, so there is no import cycle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from genrep.continual import baselines
from genrep.continual.binplay import BinPlay, BinPlaySettings
from genrep.continual.learner import ContinualLearner
from genrep.continual.scenario import Scenario
from genrep.errors import ConfigError

KINDS = ("classifier", "generator")

Pictures = Callable[[ContinualLearner, Scenario, Path], list[Path]]


@dataclasses.dataclass(frozen=True)
class LearnerSpec:
    """One continual method.

    `name`: the command-line name; `factory(settings)`: a fresh learner (a class or function); `settings`: the
    settings dataclass; `kind`: "classifier" | "generator" (as `ContinualLearner.kind`); `summary`: one line
    for `--help`; `chapter`: where it comes from ("thesis ch.8", "baseline", ...); `defaults`: the method's
    values on top of the settings class's (gr-distill: distill=True); `scales`: settings per scale ("smoke" |
    "cpu" | "paper") on top of those; `groups`: the protocol groups whose settings the method takes, in order
    (`PROTOCOLS`); `pictures(learner, scenario, folder)`: extra pictures written into a seed's folder after
    its run (returns their paths); `metric`: the metric the run summary reports ("accuracy" for classifiers)."""

    name: str
    factory: Callable[[Any], ContinualLearner]
    settings: type
    kind: str
    summary: str
    chapter: str = ""
    scales: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    groups: tuple[str, ...] = ()
    pictures: Pictures | None = None
    metric: str = "accuracy"

    def help_line(self) -> str:
        """The line "name (chapter): summary" of `--help`."""
        return self.name + (f" ({self.chapter})" if self.chapter else "") + f": {self.summary}"


LEARNERS: dict[str, LearnerSpec] = {}


def register_learner(spec: LearnerSpec) -> LearnerSpec:
    """Add `spec` to `LEARNERS` and return it; ConfigError for a taken name, an unknown kind, or a `scales` /
    `defaults` key that is no field of `spec.settings`."""
    if spec.name in LEARNERS:
        raise ConfigError(f"a continual method named {spec.name!r} is registered already")
    if spec.kind not in KINDS:
        raise ConfigError(f"continual method {spec.name!r}: kind must be one of {', '.join(KINDS)}, got {spec.kind!r}")
    fields = {field.name for field in dataclasses.fields(spec.settings)}
    for where, values in (("defaults", spec.defaults), *((f"scales[{s!r}]", v) for s, v in spec.scales.items())):
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ConfigError(f"continual method {spec.name!r}: {where} sets {', '.join(unknown)}, not settings of "
                              f"{spec.settings.__name__}")
    LEARNERS[spec.name] = spec
    return spec


def get_learner(name: str) -> LearnerSpec:
    """The spec of method `name`; a one-line ConfigError listing the valid names otherwise."""
    if name not in LEARNERS:
        raise ConfigError(f"unknown method {name!r}; valid: {', '.join(LEARNERS)}")
    return LEARNERS[name]


def learner_names(kind: str | None = None) -> tuple[str, ...]:
    """The registered method names (of `kind` only, if given), in registration order."""
    return tuple(name for name, spec in LEARNERS.items() if kind is None or spec.kind == kind)


def _replay_grid(images: torch.Tensor, scenario: Scenario, folder: Path, per_task: int) -> list[Path]:
    from genrep.utils.images import save_grid

    return [save_grid(images.cpu(), Path(folder) / "replay.png", value_range=scenario.value_range, nrow=per_task)]


def conditional_replay_picture(learner, scenario: Scenario, folder: Path, per_task: int = 10) -> list[Path]:
    """folder/replay.png: what a task-conditional generator rehearses, one row of `per_task` samples per task."""
    with torch.no_grad():
        images = torch.cat([learner.sample(per_task, k) for k in range(scenario.num_tasks)])
    return _replay_grid(images, scenario, folder, per_task)


def unconditional_replay_picture(learner, scenario: Scenario, folder: Path, per_task: int = 10) -> list[Path]:
    """folder/replay.png: what an unconditional generator rehearses, as many rows of `per_task` samples as
    the scenario has tasks."""
    with torch.no_grad():
        images = learner.sample(per_task * scenario.num_tasks)
    return _replay_grid(images, scenario, folder, per_task)


# -- the methods ------------------------------------------------------------------------------------------------

_GR_SCALES = {"smoke": {"gen_iters": 100}}

register_learner(LearnerSpec(
    "binplay", BinPlay, BinPlaySettings, "classifier",
    "BinPlay, a binary latent autoencoder regenerating past samples from their index codes", "thesis ch.8",
    scales={"smoke": {"width": 8, "ae_epochs": 10, "warmup_epochs": 3, "decoder_epochs": 40},
            # benchmarks/RESULTS.md: a 4-filter autoencoder, 3 + 15 epochs, the decoder warm-started
            "cpu": {"width": 4, "ae_epochs": 3, "warmup_epochs": 1, "decoder_epochs": 15,
                    "decoder_init": "autoencoder", "decoder_lr": 5e-3, "decoder_new_fraction": 0.5}},
    pictures=conditional_replay_picture))
register_learner(LearnerSpec(
    "gr", baselines.GenerativeReplay, baselines.GRSettings, "classifier",
    "generative replay with a VAE (Shin et al. 2017)", "baseline",
    scales=_GR_SCALES, groups=("classifier", "gr"), pictures=unconditional_replay_picture))
register_learner(LearnerSpec(
    "gr-distill", baselines.GenerativeReplay, baselines.GRSettings, "classifier",
    "generative replay with the previous solver's soft targets (van de Ven & Tolias 2019)", "baseline",
    scales=_GR_SCALES, defaults={"distill": True}, groups=("classifier", "gr", "gr-distill"),
    pictures=unconditional_replay_picture))
register_learner(LearnerSpec(
    "er", baselines.ExperienceReplay, baselines.ERSettings, "classifier",
    "experience replay from a reservoir buffer (Chaudhry et al. 2019)", "baseline", groups=("classifier",)))
register_learner(LearnerSpec(
    "finetune", baselines.FineTune, baselines.ClassifierSettings, "classifier",
    "fine-tuning on each new task only (lower bound)", "baseline", groups=("classifier",)))
register_learner(LearnerSpec(
    "joint", baselines.JointTraining, baselines.JointSettings, "classifier",
    "joint training on all data seen so far (upper bound)", "baseline", groups=("classifier",)))
