"""Evaluation of generative continual learners (thesis ch.9, Multiband VAE; REFERENCE_CODE.md §0.1–0.3
and §5.3 "Evaluation", METHODS.md §0 and §5).

Protocol. After every task, for each task j learned so far, the learner draws as many samples as task j
has evaluation images (`learner.sample(n, j)`, in the scenario's value range, clamped to it) and they are
compared with those images:

- "fid": FID (`genrep.metrics.frechet.fid`) of feature-extractor features;
- "precision", "recall": Sajjadi et al. PRD (`genrep.metrics.prd_curves.prd`) with the reference defaults
  (20 clusters, 1001 angles, 10 runs, β = 8, MiniBatchKMeans), in [0, 1] (the thesis tables report ×100);
- "wasserstein" (calorimeter data): `genrep.metrics.calorimeter.channel_wasserstein` of the raw counts
  (`genrep.data.calorimeter.to_counts` of the images), default convention "pooled-log" (the ch.9 reference).

A task not learned yet scores NaN in every metric. A learner with `task_conditional = False` draws
unconditional samples (`learner.sample(n, None)`) that are compared with the union of the evaluation views
of all tasks learned so far (the thesis: "the whole test set"); that one value fills every learned column.

Features (`features=`): "lenet" (the LeNet trained on the evaluation data's own data set, `view.name`, e.g.
"mnist"), "inception" (the FID Inception, `inception_resize="torch"` by default: pytorch-fid's mapping, which
the ch.9 reference code used), "auto" (LeNet when a cached LeNet for that data set exists, else Inception),
or any `FeatureExtractor` (e.g. `genrep.metrics.features.base.wrap_module(...)`). The thesis used LeNet for
MNIST and Inception for FashionMNIST, DoubleMNIST and CelebA: genrep may have a FashionMNIST LeNet cached,
which "auto" then picks; `features="inception"` reproduces the thesis there.

Runner protocol (`genrep.continual.runner.run_scenario(evaluate=GenerativeEvaluator())`): the runner calls
`begin_round(learned, scenario)` before each evaluation round (learned = tasks learned so far: 0 before
training, i+1 after task i), then `evaluator(learner, task)` for every task, then
`end_round(learner, scenario, learned, out_dir)`, which writes `samples/after_task{learned:02d}.png` (one
row of 10 samples per learned task; nothing for learned = 0). Called alone, before any `begin_round`, every
task counts as learned (unconditional learners need `begin_round` for the union).

Transfer. The runner's forward transfer needs R[j−1, j], the score of a task before it is learned, which is
NaN for generators (so is that summary entry). Forward transfer of a generator is read as the thesis does in
Fig. 9.4.2: each new task's first score R[j, j] against a model trained on that task alone
(`diagonal_transfer`); backward transfer is `cl_metrics.backward_transfer` (R[T−1, j] − R[j, j], signed);
`transfer_summary` gives both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from genrep.continual import cl_metrics, distributed
from genrep.continual.learner import ContinualLearner
from genrep.continual.scenario import Scenario, Task
from genrep.data.calorimeter import to_counts
from genrep.data.dataset import ImageDataset
from genrep.data.transforms import rescale
from genrep.errors import CheckpointError, ConfigError, InputError, one_line
from genrep.metrics.calorimeter import CONVENTIONS, channel_wasserstein
from genrep.metrics.features.base import FeatureExtractor
from genrep.metrics.features.inception import check_resize
from genrep.metrics.frechet import fid
from genrep.metrics.prd_curves import check_clustering, prd
from genrep.utils.images import save_grid

METRICS = ("fid", "precision", "recall", "wasserstein")
IMAGE_METRICS, CALORIMETER_METRICS = ("fid", "precision", "recall"), ("wasserstein",)
FEATURES = ("auto", "lenet", "inception")
SPLITS = ("test", "val")
SAMPLE_BATCH = 1000  # images per learner.sample call
FEATURE_BATCH = 200  # images per feature-extractor batch (Inception at 299×299)
GRID_COLUMNS = 10
SAMPLES_DIR = "samples"


class GenerativeEvaluator:
    """`evaluator(learner, task) -> {"fid", "precision", "recall"}` (or {"wasserstein"} for calorimeter
    data) by the protocol of the module docstring; usable as `run_scenario(evaluate=...)`.

    features: "auto" | "lenet" | "inception" | a FeatureExtractor. metrics: "auto" (wasserstein when the
    evaluation data's name contains "calorimeter", else fid, precision, recall) or a sequence of METRICS.
    eval_split: "test" or "val" (the reference compares with each task's validation split). max_samples:
    cap on the real images per task (a seeded subsample without replacement; the learner draws as many).
    prd_*: the options of `prd`; wasserstein_convention: of `channel_wasserstein`; inception_resize: of the
    Inception extractor. seed: subsamples and sampling (the sampling RNG is forked, so evaluating does not
    move the training's RNG stream). device: of the feature extractor (None: cuda if available, else cpu).
    """

    def __init__(self, *, features: str | FeatureExtractor = "auto", metrics: str | Sequence[str] = "auto",
                 eval_split: str = "test", max_samples: int | None = None, prd_clusters: int = 20,
                 prd_angles: int = 1001, prd_runs: int = 10, prd_beta: float = 8.0,
                 prd_clustering: str = "minibatch", wasserstein_convention: str = "pooled-log",
                 inception_resize: str = "torch", seed: int = 0, device: str | torch.device | None = None):
        if not isinstance(features, FeatureExtractor) and features not in FEATURES:
            raise ConfigError(f"features must be one of {', '.join(FEATURES)} or a FeatureExtractor, got {features!r}")
        if metrics != "auto":
            metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
            unknown = [m for m in metrics if m not in METRICS]
            if unknown or not metrics or len(set(metrics)) < len(metrics):
                raise ConfigError(f"metrics must be 'auto' or distinct names from {', '.join(METRICS)},"
                                  f" got {metrics!r}")
        if eval_split not in SPLITS:
            raise ConfigError(f"eval_split must be one of {', '.join(SPLITS)}, got {eval_split!r}")
        if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int)
                                        or max_samples < 2):
            raise ConfigError(f"max_samples must be an integer >= 2 or None, got {max_samples!r}")
        if wasserstein_convention not in CONVENTIONS:
            raise ConfigError(f"wasserstein_convention must be one of {', '.join(CONVENTIONS)}, "
                              f"got {wasserstein_convention!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        self.features, self.metrics, self.eval_split, self.max_samples = features, metrics, eval_split, max_samples
        self.prd_options = {"num_clusters": prd_clusters, "num_angles": prd_angles, "num_runs": prd_runs,
                            "beta": prd_beta, "clustering": check_clustering(prd_clustering)}
        self.wasserstein_convention, self.inception_resize = wasserstein_convention, check_resize(inception_resize)
        self.seed = seed
        self.device = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
        self.learned: int | None = None  # tasks learned, set by begin_round (None: every task counts as learned)
        self.scenario: Scenario | None = None
        self._extractors: dict[tuple[str, ...], FeatureExtractor] = {}
        self._real: dict[int, torch.Tensor] = {}  # task index -> its (capped) evaluation images
        self._real_features: dict[tuple[int, tuple[str, ...]], torch.Tensor] = {}
        self._drawn: dict[int | None, torch.Tensor] = {}  # this round's samples for the grid (None: unconditional)
        self._union: dict[str, float] | None = None  # this round's values of an unconditional learner

    # -- the runner's protocol ---------------------------------------------------------------------------------

    def begin_round(self, learned: int, scenario: Scenario) -> None:
        """Start an evaluation round after `learned` tasks of `scenario`; checks the evaluation views and
        loads the feature extractors now, so a missing one fails before any training."""
        self.learned, self.scenario = learned, scenario
        self._drawn.clear()
        self._union = None
        names = {self.metric_names(task) for task in scenario}
        if len(names) > 1:
            raise ConfigError(f"the tasks of {scenario.name} need different metrics {sorted(names)}: pass metrics=")
        if set(names.pop()) & set(IMAGE_METRICS):
            for task in scenario:
                self._extractor({self._view(task).name})

    def __call__(self, learner: ContinualLearner, task: Task) -> dict[str, float]:
        names = self.metric_names(task)
        if self.learned is not None and task.index >= self.learned:
            return dict.fromkeys(names, math.nan)
        if getattr(learner, "task_conditional", True):
            return self._evaluate(learner, [task], task.index, names)
        if self.scenario is None:
            raise ConfigError("an unconditional learner is compared with all learned tasks: call"
                              " begin_round(learned, scenario) first")
        if self._union is None:
            self._union = self._evaluate(learner, list(self.scenario.tasks[: self.learned]), None, names)
        return dict(self._union)

    def end_round(self, learner: ContinualLearner, scenario: Scenario, learned: int, out_dir: str | Path) -> None:
        """Write `out_dir/samples/after_task{learned:02d}.png`: one row of 10 samples per learned task (task id j
        in row j; unconditional learners: rows of unconditional samples); nothing for learned = 0."""
        if learned == 0 or not distributed.is_main():  # rank 0 writes (its samples come from forked RNGs)
            return
        conditional = getattr(learner, "task_conditional", True)
        wanted = {j: GRID_COLUMNS for j in range(learned)} if conditional else {None: GRID_COLUMNS * learned}
        rows = []
        for task, n in wanted.items():
            drawn = self._drawn.get(task)
            rows.append(drawn[:n] if drawn is not None and len(drawn) >= n
                        else self._sample(learner, n, task, scenario.value_range))
        save_grid(torch.cat(rows), Path(out_dir) / SAMPLES_DIR / f"after_task{learned:02d}.png",
                  value_range=scenario.value_range, nrow=GRID_COLUMNS)

    # -- metrics -----------------------------------------------------------------------------------------------

    def metric_names(self, task: Task) -> tuple[str, ...]:
        """The metrics this evaluator returns on `task`."""
        if self.metrics != "auto":
            return self.metrics
        return CALORIMETER_METRICS if "calorimeter" in self._view(task).name.lower() else IMAGE_METRICS

    def _evaluate(self, learner: ContinualLearner, tasks: list[Task], sample_task: int | None,
                  names: tuple[str, ...]) -> dict[str, float]:
        """The metrics of samples of `sample_task` (None: unconditional) against the union of `tasks`' views."""
        value_range = self._view(tasks[0]).value_range
        real = torch.cat([self._real_images(task) for task in tasks])
        fake = self._sample(learner, len(real), sample_task, value_range)
        if fake.shape != real.shape:
            raise InputError(f"{type(learner).__name__}.sample({len(real)}, {sample_task}) returned images of shape"
                             f" {tuple(fake.shape)}, expected {tuple(real.shape)}")
        self._drawn[sample_task] = fake[: GRID_COLUMNS * len(tasks)]
        values = {}
        if "wasserstein" in names:
            values["wasserstein"] = channel_wasserstein(to_counts(real, value_range), to_counts(fake, value_range),
                                                        convention=self.wasserstein_convention)
        if set(names) & set(IMAGE_METRICS):
            key, extractor = self._extractor({self._view(task).name for task in tasks})
            real_features = torch.cat([self._task_features(task, key, extractor) for task in tasks])
            fake_features = extractor.features(rescale(fake, value_range, extractor.input_range),
                                               batch_size=FEATURE_BATCH, progress=False)
            if "fid" in names:
                values["fid"] = fid(real_features, fake_features)
            if {"precision", "recall"} & set(names):
                values["precision"], values["recall"] = prd(real=real_features, fake=fake_features,
                                                            seed=self.seed, **self.prd_options)
        return {name: float(values[name]) for name in names}

    def _sample(self, learner: ContinualLearner, n: int, task: int | None,
                value_range: tuple[float, float]) -> torch.Tensor:
        """n samples of `task` on the CPU (float32, clamped to `value_range`), in batches of ≤ SAMPLE_BATCH,
        from a forked RNG seeded by (seed, learned, task)."""
        stream = int(np.random.SeedSequence([self.seed, self.learned or 0, 0 if task is None else task + 1])
                     .generate_state(1)[0])
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.default_generator.manual_seed(stream)
            if devices:
                torch.cuda.manual_seed_all(stream)
            parts = [learner.sample(min(SAMPLE_BATCH, n - start), task).detach().float().cpu()
                     for start in range(0, n, SAMPLE_BATCH)]
        return torch.cat(parts).clamp(*value_range)

    # -- real data and features --------------------------------------------------------------------------------

    def _view(self, task: Task) -> ImageDataset:
        view = task.test if self.eval_split == "test" else task.val
        if view is None:
            raise ConfigError(f"task {task.index} ({task.name}) has no validation view: build the scenario with"
                              " validation_fraction > 0 or use eval_split='test'")
        return view

    def _real_images(self, task: Task) -> torch.Tensor:
        """The task's evaluation images (at most `max_samples`, a seeded subsample without replacement)."""
        if task.index not in self._real:
            view = self._view(task)
            if len(view) < 2:
                raise InputError(f"task {task.index} ({task.name}): its {self.eval_split} view has {len(view)} images;"
                                 " the metrics need at least 2")
            images = view.images
            if self.max_samples is not None and len(images) > self.max_samples:
                rng = np.random.default_rng((self.seed, task.index))
                images = images[torch.from_numpy(np.sort(rng.choice(len(images), self.max_samples, replace=False)))]
            self._real[task.index] = images.float().cpu()
        return self._real[task.index]

    def _task_features(self, task: Task, key: tuple[str, ...], extractor: FeatureExtractor) -> torch.Tensor:
        if (task.index, key) not in self._real_features:
            images = rescale(self._real_images(task), self._view(task).value_range, extractor.input_range)
            self._real_features[task.index, key] = extractor.features(images, batch_size=FEATURE_BATCH,
                                                                      progress=False)
        return self._real_features[task.index, key]

    def _extractor(self, datasets: set[str]) -> tuple[tuple[str, ...], FeatureExtractor]:
        """(key, extractor) for images of `datasets` (cached by key: ("custom",), ("inception",) or
        ("lenet", DATASET)); ConfigError saying how to get one when it is missing."""
        from genrep.metrics.features.lenet import cached_lenets, train_command
        from genrep.metrics.features.registry import get_extractor

        names = ", ".join(sorted(datasets))
        if isinstance(self.features, FeatureExtractor):
            key = ("custom",)
        elif self.features == "inception" or (self.features == "auto" and len(datasets) > 1):
            key = ("inception",)
        elif len(datasets) > 1:
            raise ConfigError(f"LeNet features are per data set, and the learned tasks mix {names}: use"
                              " features='inception' or a FeatureExtractor")
        else:
            key = ("lenet", names) if self.features == "lenet" or names in cached_lenets() else ("inception",)
        if key not in self._extractors:
            if key == ("custom",):
                extractor = self.features
            elif key[0] == "lenet":
                try:
                    extractor = get_extractor("lenet", dataset=names)
                except CheckpointError:
                    raise ConfigError(f"no LeNet for {names}: train one with `{train_command(names)}`, or use"
                                      " features='inception'") from None
            else:
                try:
                    extractor = get_extractor("inception", resize=self.inception_resize)
                except CheckpointError as err:
                    lenet = "" if self.features == "inception" else \
                        f"no cached LeNet (train one with `{train_command(names)}`) and "
                    raise ConfigError(f"no feature extractor for {names}: {lenet}no Inception weights"
                                      f" ({one_line(err)})") from None
            self._extractors[key] = extractor.to(self.device).eval()
        return key, self._extractors[key]


# -- transfer of generators ------------------------------------------------------------------------------------


def diagonal_transfer(R, R_separate, *, higher_is_better: bool = False) -> float:
    """Forward transfer of a generative learner as thesis Fig. 9.4.2 reads it: 1/(T−1) Σ_{j≥1} of
    R_separate[j, j] − R[j, j] (lower is better, e.g. FID; R[j, j] − R_separate[j, j] when higher is better),
    so > 0 means the learner's first score on task j beats a model trained on task j alone. `R`: T×T as in
    `cl_metrics`; `R_separate`: T×T or the (T,) scores of the separate models. NaN for T = 1."""
    R = np.asarray(R, dtype=np.float64)
    separate = np.asarray(R_separate, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise InputError(f"R must be square T×T with T ≥ 1, got shape {R.shape}")
    T = len(R)
    if separate.shape == (T, T):
        separate = np.diag(separate)
    if separate.shape != (T,):
        raise InputError(f"R_separate must have shape ({T}, {T}) or ({T},) for a {T}×{T} R, got {separate.shape}")
    if T == 1:
        return float("nan")
    gain = separate[1:] - np.diag(R)[1:]
    return float(np.mean(-gain if higher_is_better else gain))


def transfer_summary(R, R_separate, *, higher_is_better: bool = False) -> dict[str, float]:
    """{"forward_transfer": `diagonal_transfer`, "backward_transfer": `cl_metrics.backward_transfer`} of a
    generative learner's T×T matrix `R` (signed: > 0 helped, in both)."""
    return {"forward_transfer": diagonal_transfer(R, R_separate, higher_is_better=higher_is_better),
            "backward_transfer": cl_metrics.backward_transfer(R, higher_is_better=higher_is_better)}
