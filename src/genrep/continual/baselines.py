"""Classifier baselines of Table 8.4.1 on the `ContinualLearner` contract, all built on one base classifier
chosen by name (`classifier`: "lenet5" | "lenetg" | "mlp", `genrep.continual.classifier.CLASSIFIERS`) and
`fit_classifier` (the base classifier and training settings of BinPlay, METHODS.md §4, so that the
methods differ only in what they replay).

- `FineTune`: keeps training one classifier on each new task only (lower bound).
- `JointTraining`: stores every training sample seen and, at each task, retrains on all of them —
  from a fresh initialisation by default (i.i.d. upper bound), or continuing (`from_scratch=False`).
- `ExperienceReplay` (Chaudhry et al. 2019): a reservoir buffer (Vitter 1985, algorithm R) of
  `buffer_size` samples (100 in Table 8.4.2); every batch of new data is joined by a random batch from
  the buffer; the task's samples enter the buffer after the task, in stream order.
- `GenerativeReplay` (Shin et al. 2017) with a VAE generator (van de Ven & Tolias 2018): during task t
  (t previous tasks) the solver minimises r·L(new) + (1 − r)·L(replay), r = 1/(t+1), on samples of the
  frozen previous generator labelled by the frozen previous solver (argmax over the classes seen so
  far); then the generator is trained on new data mixed with its frozen copy's samples at the same
  ratio. `distill=True` ("GR + distillation", van de Ven & Tolias 2019): replayed samples get the frozen
  solver's softmax over the seen classes as soft targets (Hinton et al. 2015) instead of hard labels, at
  temperature `distill_temperature` T for teacher and student alike, the replay loss × T² (T = 2 in
  van de Ven & Tolias; 1 by default, BinPlay's soft targets).

By default every task trains with a fresh Adam for `epochs` passes over all K output units (Table 8.4.1's
shared protocol). Three settings give van de Ven & Tolias' (2019) protocol instead (`--protocol van-de-ven`,
`experiments/continual.py`): `iterations` (a fixed number of full batches per task), `active_classes="seen"`
(the loss sees only the output units of the classes seen so far, the current task's included, for new and
replayed rows) and `reset_optimizer=False` (one Adam for the classifier, and one for GR's generator, kept
across tasks and in `state_dict`). Every learner is deterministic given `seed`: task k draws from its own
seeded generator and global RNG stream, so training resumed from `state_dict()` after task k − 1 repeats an
uninterrupted run. `memory_bytes()` follows Table 8.4.2's convention for every method: what the method
keeps *to replay* between tasks — the VAE (GR), the buffer (ER), the stored training data (joint training),
nothing (fine-tuning) — not the classifier, which every method has (frozen copies exist only during a task).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from collections.abc import Iterator
from typing import Any, ClassVar

import torch

from genrep.continual.classifier import (
    CLASSIFIERS, LEGACY_CLASSIFIER, LOSSES, build_classifier, check_classifier_name, fit_classifier, predict_logits,
)
from genrep.continual.learner import (
    DEVICE, POSITIVE, ContinualLearner, Rule, SettingError, at_least, check_settings, module_bytes,
)
from genrep.continual.scenario import Scenario, Task
from genrep.continual.seeding import full_batches, seeded, stream_seed
from genrep.errors import CheckpointError, ConfigError, DataError, InputError, TrainingDivergedError
from genrep.models.vae import VAE, VAEConfig


ACTIVE_CLASSES = ("all", "seen")  # the values of ClassifierSettings.active_classes


@dataclasses.dataclass
class ClassifierSettings:
    """Base-classifier training per task: BinPlay reference values (METHODS.md §4: Adam 2e-3, 15 epochs,
    batch 120, MSE on softmax outputs); `classifier` names the network (`CLASSIFIERS`: "lenet5", ours and
    the default, "lenetg", the reference's, which the `paper` scale picks, or "mlp", van de Ven & Tolias');
    `width` scales its channels (units); `seed` fixes everything.

    `iterations`: train this many full batches per task instead of `epochs` passes (`fit_classifier`);
    `active_classes`: "all" (default: the loss sees all K output units) or "seen" (only the classes seen so
    far, the current task's included, for new and replayed rows: van de Ven & Tolias' class-IL "active
    classes"); `reset_optimizer`: True (default) a fresh Adam every task, False one Adam kept across tasks
    (its state is part of `state_dict`). Every field is checked against its type and its `RULES` entry
    (`check_settings`): SettingError."""

    classifier: str = "lenet5"
    epochs: int = 15
    batch_size: int = 120
    lr: float = 2e-3
    loss: str = "mse-softmax"
    width: int = 1
    iterations: int | None = None
    active_classes: str = "all"
    reset_optimizer: bool = True
    seed: int = 0
    device: str = "cpu"
    progress: bool = False

    RULES: ClassVar[dict[str, Rule]] = {"classifier": tuple(CLASSIFIERS), "epochs": at_least(1),
                                        "batch_size": at_least(2), "lr": POSITIVE,
                                        "loss": LOSSES, "width": at_least(1), "iterations": at_least(1),
                                        "active_classes": ACTIVE_CLASSES, "seed": at_least(0), "device": DEVICE}

    def __post_init__(self) -> None:
        check_settings(self)


@dataclasses.dataclass
class JointSettings(ClassifierSettings):
    """`from_scratch`: re-initialise the classifier before each retraining on all data seen so far."""

    from_scratch: bool = True


@dataclasses.dataclass
class ERSettings(ClassifierSettings):
    """`buffer_size`: reservoir capacity (100 memories, Table 8.4.2); `replay_batch_size`: buffer samples
    joined to every batch (None: as many as the new batch has, as in Chaudhry et al. 2019)."""

    buffer_size: int = 100
    replay_batch_size: int | None = None

    RULES: ClassVar[dict[str, Rule]] = {**ClassifierSettings.RULES, "buffer_size": at_least(1),
                                        "replay_batch_size": at_least(1)}


@dataclasses.dataclass
class GRSettings(ClassifierSettings):
    """Generator of van de Ven & Tolias (2018, 2019), whose code produced the GR / GR+distill rows of
    Table 8.4.1: a symmetric MLP VAE with 2 hidden layers of 400 units and a 100-d latent, Bernoulli
    likelihood, Adam 1e-3, 2000 iterations of batch 128 per task (with `iterations` set: full batches only,
    reshuffled when a pass runs out, as their loop; with `reset_optimizer=False` its Adam, too, is kept
    across tasks). `distill`: soft replay targets, the
    frozen solver's softmax at temperature `distill_temperature` T (> 0; only with `distill`); the student's
    replay loss is taken at the same T and × T² (`classifier.sample_losses`). T = 1 (default) matches
    BinPlay's soft targets; van de Ven & Tolias (2019) use T = 2."""

    distill: bool = False
    distill_temperature: float = 1.0
    latent_dim: int = 100
    hidden: tuple[int, ...] = (400, 400)
    gen_iters: int = 2000
    gen_batch_size: int = 128
    gen_lr: float = 1e-3

    RULES: ClassVar[dict[str, Rule]] = {**ClassifierSettings.RULES, "distill_temperature": POSITIVE,
                                        "latent_dim": at_least(1), "hidden": at_least(1), "gen_iters": at_least(1),
                                        "gen_batch_size": at_least(1), "gen_lr": POSITIVE}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.distill_temperature != 1 and not self.distill:
            raise SettingError(type(self).__name__, "distill_temperature", self.distill_temperature,
                               "1 unless distill is true (hard replay labels have no temperature; use gr-distill)")


_INIT, _TASK, _RESERVOIR, _REINIT, _GENERATOR_INIT = 0, 1, 100_000, 200_000, 300_000  # random stream offsets


def _optimizer_state(optimizer: torch.optim.Optimizer | None) -> dict[str, Any] | None:
    return copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None


def _index_stream(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless shuffled index batches over n rows (a new permutation every epoch)."""
    while True:
        yield from torch.randperm(n, generator=generator).split(batch_size)


class ReservoirBuffer:
    """Uniform sample of at most `capacity` items of a stream (Vitter 1985, algorithm R): the i-th item
    (0-based) fills a free slot while i < capacity, else replaces slot j ~ U{0, …, i} when j < capacity,
    so that every item seen so far is kept with probability capacity / seen."""

    def __init__(self, capacity: int, image_shape: tuple[int, int, int]):
        self.capacity = capacity
        self.images = torch.zeros(capacity, *image_shape)
        self.labels = torch.zeros(capacity, dtype=torch.int64)
        self.seen = 0

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    def add(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> None:
        """Offer the rows of `images` / `labels` to the reservoir, in order."""
        n = len(images)
        position = torch.arange(self.seen, self.seen + n, dtype=torch.float64)
        slot = (torch.rand(n, dtype=torch.float64, generator=generator) * (position + 1)).floor().long()
        slot = torch.where(position < self.capacity, position.long(), slot)
        writes = {}  # slot -> row of its last writer (a later item overwrites an earlier one)
        for row in (slot < self.capacity).nonzero().flatten().tolist():
            writes[int(slot[row])] = row
        if writes:
            slots, rows = torch.tensor(list(writes)), torch.tensor(list(writes.values()))
            self.images[slots] = images[rows].to(self.images)
            self.labels[slots] = labels[rows].to(self.labels)
        self.seen += n

    def nbytes(self) -> int:
        """Bytes of the stored samples (images and labels)."""
        return len(self) * (self.images[0].numel() * self.images.element_size() + self.labels.element_size())

    def state_dict(self) -> dict[str, Any]:
        return {"images": self.images.clone(), "labels": self.labels.clone(), "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["images"].shape) != tuple(self.images.shape):
            raise CheckpointError(f"reservoir buffer of shape {tuple(state['images'].shape)} does not match "
                                  f"{tuple(self.images.shape)}; use the same buffer_size and scenario")
        self.images, self.labels, self.seen = state["images"].clone(), state["labels"].clone(), int(state["seen"])


class _ClassifierLearner(ContinualLearner):
    """Shared plumbing: settings, the base classifier, seeded task streams, the task counter and the
    classes seen so far. Construct with a settings object and/or keyword overrides."""

    kind = "classifier"
    Settings: type[ClassifierSettings] = ClassifierSettings
    _state_keys: tuple[str, ...] = ("model", "tasks_seen", "seen_classes")  # required on load ("classifier" is not)

    def __init__(self, settings: ClassifierSettings | None = None, **overrides: Any):
        names = {field.name for field in dataclasses.fields(self.Settings)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"{type(self).__name__}: unknown setting(s) {', '.join(unknown)}; valid: "
                              f"{', '.join(sorted(names))}")
        base = settings if settings is not None else self.Settings()
        if not isinstance(base, self.Settings):
            raise ConfigError(f"{type(self).__name__} needs {self.Settings.__name__}, got {type(base).__name__}")
        self.settings = dataclasses.replace(base, **overrides)
        self.model: torch.nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None  # the kept Adam (reset_optimizer=False)
        self.tasks_seen = 0
        self.seen_classes: list[int] = []
        self.active_classes: list[int] | None = None  # during learn(): the loss's output units (None: all)

    def setup(self, scenario: Scenario) -> None:
        if scenario.num_classes is None:
            raise DataError(f"{type(self).__name__} needs a labelled scenario; {scenario.name!r} has no classes")
        self.scenario = scenario
        self.model = self._new_classifier()

    def _new_classifier(self, stream: int = _INIT) -> torch.nn.Module:
        s = self.settings
        with seeded(stream_seed(s.seed, stream)):
            model = build_classifier(s.classifier, self.scenario.image_shape, self.scenario.num_classes, width=s.width)
        return model.to(s.device)

    def _check(self, task: Task | None = None) -> None:
        if self.model is None:
            raise ConfigError(f"{type(self).__name__}: call setup(scenario) before training or predicting")
        if task is not None and task.train.labels is None:
            raise DataError(f"{type(self).__name__}: task {task.index} has no training labels")

    def _fit(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, **replay: Any) -> None:
        s = self.settings
        fit_classifier(self.model, images, labels, epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, loss=s.loss,
                       generator=generator, progress=s.progress, iterations=s.iterations,
                       active_classes=self.active_classes, optimizer=self._kept_optimizer(), **replay)

    def _kept_optimizer(self) -> torch.optim.Optimizer | None:
        """The classifier's Adam kept across tasks (made on first use), or None for a fresh one per task."""
        if self.settings.reset_optimizer:
            return None
        if self.optimizer is None:
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.settings.lr)
        return self.optimizer

    def learn(self, task: Task) -> None:
        self._check(task)
        classes = task.classes or tuple(task.train.labels.unique().tolist())
        seen = sorted(set(self.seen_classes) | {int(c) for c in classes})
        self.active_classes = seen if self.settings.active_classes == "seen" else None
        seed = stream_seed(self.settings.seed, _TASK + task.index)
        try:
            with seeded(seed):
                self._learn(task, torch.Generator().manual_seed(seed))
        finally:
            self.active_classes = None
        self.tasks_seen += 1
        self.seen_classes = seen

    def _learn(self, task: Task, generator: torch.Generator) -> None:
        """Train on `task` (global RNG already seeded, `generator` for shuffling and replay draws)."""
        self._fit(task.train.images, task.train.labels, generator)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        self._check()
        return predict_logits(self.model, x)

    def state_dict(self) -> dict[str, Any]:
        self._check()
        return {"model": copy.deepcopy(self.model.state_dict()), "classifier": self.settings.classifier,
                "tasks_seen": self.tasks_seen, "seen_classes": list(self.seen_classes),
                "optimizer": _optimizer_state(self.optimizer)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check()
        missing = sorted(set(self._state_keys) - set(state))
        if missing:
            raise CheckpointError(f"{type(self).__name__} state lacks {', '.join(missing)}; was it saved by "
                                  f"another learner?")
        check_classifier_name(type(self).__name__, state.get("classifier", LEGACY_CLASSIFIER), self.settings.classifier)
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as error:
            raise CheckpointError(f"{type(self).__name__}: the saved classifier does not match this scenario/width "
                                  f"({str(error).splitlines()[0]})") from None
        self.tasks_seen, self.seen_classes = int(state["tasks_seen"]), [int(c) for c in state["seen_classes"]]
        self.optimizer = self._restored_optimizer(state, "optimizer", self.model)

    def _restored_optimizer(self, state: dict[str, Any], key: str, module: torch.nn.Module,
                            lr: float | None = None) -> torch.optim.Optimizer | None:
        """The kept Adam of `module` from `state[key]` (None where the state holds none); CheckpointError when
        reset_optimizer=False and a state after a task lacks it."""
        saved = state.get(key)
        if saved is None:
            if not self.settings.reset_optimizer and self.tasks_seen:
                raise CheckpointError(f"{type(self).__name__}: reset_optimizer is false but the saved state holds "
                                      f"no {key} state; resume with the settings it was saved with")
            return None
        optimizer = torch.optim.Adam(module.parameters(), lr=self.settings.lr if lr is None else lr)
        try:
            optimizer.load_state_dict(saved)
        except (ValueError, KeyError) as error:
            raise CheckpointError(f"{type(self).__name__}: the saved {key} state does not match "
                                  f"({str(error).splitlines()[0]})") from None
        return optimizer

    def memory_bytes(self) -> int:
        """Bytes kept to replay (the module docstring's convention): none here; subclasses add their store."""
        self._check()
        return 0


class FineTune(_ClassifierLearner):
    """Lower bound: the classifier keeps training on each new task's data only (keeps nothing to replay)."""


class JointTraining(_ClassifierLearner):
    """Upper bound: keeps all training data seen and retrains on it at every task (see JointSettings)."""

    Settings = JointSettings
    _state_keys = (*_ClassifierLearner._state_keys, "images", "labels")

    def setup(self, scenario: Scenario) -> None:
        super().setup(scenario)
        self.images = torch.empty(0, *scenario.image_shape)
        self.labels = torch.empty(0, dtype=torch.int64)

    def _learn(self, task: Task, generator: torch.Generator) -> None:
        self.images = torch.cat([self.images, task.train.images.to(self.images)])
        self.labels = torch.cat([self.labels, task.train.labels.to(self.labels)])
        if self.settings.from_scratch:  # a new network: a kept Adam (reset_optimizer=False) starts anew too
            self.model, self.optimizer = self._new_classifier(_REINIT + task.index), None
        self._fit(self.images, self.labels, generator)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "images": self.images.clone(), "labels": self.labels.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.images, self.labels = state["images"].clone(), state["labels"].clone()

    def memory_bytes(self) -> int:
        """The stored images and labels of every task seen."""
        return super().memory_bytes() + self.images.numel() * self.images.element_size() + \
            self.labels.numel() * self.labels.element_size()


class ExperienceReplay(_ClassifierLearner):
    """Experience replay with a reservoir buffer (see ERSettings and `ReservoirBuffer`)."""

    Settings = ERSettings
    _state_keys = (*_ClassifierLearner._state_keys, "buffer")

    def setup(self, scenario: Scenario) -> None:
        super().setup(scenario)
        self.buffer = ReservoirBuffer(self.settings.buffer_size, scenario.image_shape)

    def _learn(self, task: Task, generator: torch.Generator) -> None:
        def replay(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            rows = torch.randperm(len(self.buffer), generator=generator)[:self.settings.replay_batch_size or n]
            return self.buffer.images[rows], self.buffer.labels[rows]

        self._fit(task.train.images, task.train.labels, generator, replay=replay if len(self.buffer) else None,
                  replay_ratio=None)

    def end_task(self, task: Task) -> None:
        self._check(task)
        order = torch.argsort(task.global_index) if task.global_index is not None else slice(None)
        generator = torch.Generator().manual_seed(stream_seed(self.settings.seed, _RESERVOIR + task.index))
        self.buffer.add(task.train.images[order], task.train.labels[order], generator)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.buffer.load_state_dict(state["buffer"])

    def memory_bytes(self) -> int:
        """The buffer's stored images and labels (`ReservoirBuffer.nbytes`)."""
        return super().memory_bytes() + self.buffer.nbytes()


class GenerativeReplay(_ClassifierLearner):
    """Deep generative replay (Shin et al. 2017) with a VAE; GR + distillation for `distill=True`."""

    Settings = GRSettings
    _state_keys = (*_ClassifierLearner._state_keys, "vae")

    def setup(self, scenario: Scenario) -> None:
        super().setup(scenario)
        s = self.settings
        config = VAEConfig(arch="mlp", latent_dim=s.latent_dim, hidden=list(s.hidden))
        with seeded(stream_seed(s.seed, _GENERATOR_INIT)):
            self.vae = VAE(config, image_shape=scenario.image_shape, value_range=scenario.value_range).to(s.device)
        self.gen_optimizer: torch.optim.Optimizer | None = None  # the VAE's kept Adam (reset_optimizer=False)

    def _learn(self, task: Task, generator: torch.Generator) -> None:
        previous = self.tasks_seen
        old_vae = copy.deepcopy(self.vae).eval() if previous else None
        old_solver = copy.deepcopy(self.model) if previous else None

        def replay(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            x = old_vae.sample(n)
            return x, self.replay_targets(old_solver, x)

        self._fit(task.train.images, task.train.labels, generator, replay=replay if previous else None,
                  replay_ratio=previous / (previous + 1), replay_temperature=self.settings.distill_temperature)
        self._train_generator(task.train.images, old_vae, previous, generator)

    def replay_targets(self, solver: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Targets of replayed images from a frozen `solver`, restricted to the classes seen so far: the
        argmax label (GR), or the softmax over those classes at temperature T = `distill_temperature`,
        softmax(z/T) (GR + distillation; the student's loss uses the same T, see `_learn`)."""
        mask = torch.full((self.scenario.num_classes,), -math.inf, device=x.device)
        mask[self.seen_classes] = 0.0
        logits = predict_logits(solver, x) + mask
        if not self.settings.distill:
            return logits.argmax(1)
        return (logits / self.settings.distill_temperature).softmax(1)

    def _train_generator(self, images: torch.Tensor, old_vae: VAE | None, previous: int,
                         generator: torch.Generator) -> None:
        """Minimise r·L_VAE(new) + (1 − r)·L_VAE(samples of the frozen VAE), r = 1/(previous + 1)."""
        s = self.settings
        optimizer = self.gen_optimizer  # kept from the previous task (reset_optimizer=False), or None
        if optimizer is None:
            optimizer = torch.optim.Adam(self.vae.parameters(), lr=s.gen_lr)
            self.gen_optimizer = None if s.reset_optimizer else optimizer
        self.vae.train()
        if s.iterations is not None:  # full batches only, as the classifier's (van de Ven & Tolias' shared loop)
            if len(images) < s.gen_batch_size:
                raise InputError(f"GR generator: full batches of gen_batch_size={s.gen_batch_size} need as many "
                                 f"images; the task has {len(images)}")
            batches = full_batches(len(images), s.gen_batch_size, s.gen_iters, generator)
        else:
            batches = _index_stream(len(images), s.gen_batch_size, generator)
        for step in range(s.gen_iters):
            index = next(batches)
            loss = self.vae({"x": images[index].to(s.device)}).loss
            if old_vae is not None:
                loss = (loss + previous * self.vae({"x": old_vae.sample(len(index))}).loss) / (previous + 1)
            if not math.isfinite(loss.item()):
                raise TrainingDivergedError(f"GR generator loss became {loss.item()} at step {step}; lower gen_lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        self.vae.eval()

    def sample(self, n: int, task: int | None = None) -> torch.Tensor:
        """n images from the current generator (unconditional: `task` must be None)."""
        self._check()
        if task is not None:
            raise InputError("GenerativeReplay's VAE is unconditional: call sample(n) without a task")
        return self.vae.sample(n)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "vae": copy.deepcopy(self.vae.state_dict()),
                "gen_optimizer": _optimizer_state(self.gen_optimizer)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.vae.load_state_dict(state["vae"])
        self.gen_optimizer = self._restored_optimizer(state, "gen_optimizer", self.vae, self.settings.gen_lr)

    def memory_bytes(self) -> int:
        """The VAE's parameters and buffers (encoder and decoder: the generator is trained on, so both are
        kept; Table 8.4.2's 4.4 MB for MNIST is about this VAE, 4.08 MiB = 4.28 MB)."""
        return super().memory_bytes() + module_bytes(self.vae)


BASELINES = {
    "finetune": FineTune,
    "joint": JointTraining,
    "er": ExperienceReplay,
    "gr": GenerativeReplay,
    "gr-distill": functools.partial(GenerativeReplay, distill=True),
}
