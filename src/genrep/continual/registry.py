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


# -- chapter 9: generative learners on the two-latent VAE (genrep.continual.multiband) ---------------------------

def _generative_specs() -> None:
    from genrep.continual import multiband as mb
    from genrep.continual.multiband.pictures import latent_picture

    tiny = {"width": 8, "epochs": 2, "batch_size": 32}
    # cpu: the published FC VAE, 2000 images per task (TRAIN_LIMIT_GENERATOR), local 10 + global 20 epochs;
    # the baselines train as many epochs per task as Multiband's two phases together (thesis §9.4.3)
    multiband_scales = {"smoke": {**tiny, "global_epochs": 2, "translator_warmup": 1, "forgetting_compare": 200},
                        "cpu": {"epochs": 10, "global_epochs": 20}}
    gr = {"two_step": False, "translator": False, "binary_latent": False, "forgetting_threshold": 1.0}
    plain_vae = {"translator": False, "binary_latent": False}
    bound_scales = {"smoke": {**tiny, "epochs": 4}, "cpu": {"epochs": 30}, "paper": {"epochs": 210}}
    register_learner(LearnerSpec(
        "multiband", mb.MultibandVAE, mb.MultibandSettings, "generator",
        "Multiband VAE: local VAE per task + translator aligning the task bands on a global decoder", "thesis ch.9",
        scales=multiband_scales, pictures=lambda learner, scenario, folder: [
            conditional_replay_picture(learner, scenario, folder)[0], latent_picture(learner, scenario, folder)],
        metric="fid"))
    register_learner(LearnerSpec(
        "gr-vae", mb.MultibandVAE, mb.MultibandSettings, "generator",
        "generative replay of a task-conditioned VAE on its frozen copy's samples (Table 9.4.4's first row)",
        "baseline", defaults=gr, scales=multiband_scales,
        pictures=lambda learner, scenario, folder: [conditional_replay_picture(learner, scenario, folder)[0],
                                                    latent_picture(learner, scenario, folder)], metric="fid"))
    for name, penalty, paper in (("ewc-vae", "ewc", "Kirkpatrick et al. 2017"), ("si-vae", "si", "Zenke et al. 2017")):
        register_learner(LearnerSpec(
            name, mb.RegularisedVAE, mb.RegularisedSettings, "generator",
            f"{penalty.upper()} ({paper}) on the VAE's weights, Fisher/importance from the ELBO", "baseline",
            defaults={**plain_vae, "penalty": penalty}, scales=bound_scales, pictures=conditional_replay_picture,
            metric="fid"))
    register_learner(LearnerSpec(
        "separate-vae", mb.SeparateVAEs, mb.BoundSettings, "generator",
        "one VAE per task trained on that task alone (memory grows; forward-transfer reference)", "bound",
        scales=bound_scales, pictures=conditional_replay_picture, metric="fid"))
    register_learner(LearnerSpec(
        "joint-vae", mb.JointVAE, mb.BoundSettings, "generator",
        "one task-conditioned VAE retrained on all data seen so far (upper bound)", "bound",
        scales=bound_scales, pictures=conditional_replay_picture, metric="fid"))


_generative_specs()
