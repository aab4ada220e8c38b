"""The continual-learning task loop: train a `ContinualLearner` on a `Scenario` task by task,
evaluate every task (seen and unseen) before training and after each task into full task × time
matrices, checkpoint after each task and resume from the last finished one.

Files the runner owns in `out_dir`::

    checkpoint.pt   learner state and settings, matrices so far, finished tasks, timings, RNG states (atomic)
    results.json    scenario and tasks, learner settings, matrices, initial rows, summary metrics, memory,
                    wall times
    heatmap.png     the main metric's matrix with the values in the cells
    curves.png      the main metric on every task against the number of tasks learned
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from genrep.continual import cl_metrics, distributed
from genrep.continual.learner import ContinualLearner, settings_differences
from genrep.continual.plots import plot_curves, plot_heatmap
from genrep.continual.scenario import Scenario, Task
from genrep.errors import CheckpointError, ConfigError, InputError, RunExistsError
from genrep.runs import write_json
from genrep.training.checkpoint import load_checkpoint, one_line, rng_states, save_checkpoint, set_rng_states
from genrep.training.preemption import preempted, stop_requested
from genrep.utils.locks import locked_on_rank_zero

CHECKPOINT, RESULTS, HEATMAP, CURVES = "checkpoint.pt", "results.json", "heatmap.png", "curves.png"
CHECKPOINT_KIND = "genrep-continual"
LOWER_IS_BETTER = frozenset({"fid", "kid", "nll", "bpd", "loss", "mse", "mae", "wasserstein"})
MAIN_METRICS = ("accuracy", "fid", "wasserstein")  # the default main metric: the first of these evaluated
RESUMABLE_SETTINGS = ("progress",)  # learner settings that may change on resume
EVAL_BATCH = 1000

Evaluator = Callable[[ContinualLearner, Task], Mapping[str, float]]


@dataclasses.dataclass
class ContinualResult:
    """The outcome of `run_scenario` (or its state after k finished tasks, as in results.json).

    `matrices[m]`: k×T float64, `[i, j]` = metric m on task j after learning tasks 0..i;
    `initial[m]`: (T,) metric m on every task before any training; `summary[m]`:
    `cl_metrics.summarize` of the k×k block seen so far; `wall_times[i]`: seconds of
    begin_task + learn + end_task of task i; `eval_times[i]`: seconds of the evaluation after it;
    `memory_bytes[i]`: `learner.memory_bytes()` after task i; `run_time_s`: seconds spent in
    `run_scenario` up to the last checkpoint, summed over the resumed segments of the run (set-up,
    initial evaluation, tasks, evaluations, checkpoints; not the lost work of an interrupted task).
    """

    matrices: dict[str, np.ndarray]
    initial: dict[str, np.ndarray]
    summary: dict[str, dict[str, float]]
    wall_times: list[float]
    memory_bytes: list[int]
    out_dir: Path
    eval_times: list[float] = dataclasses.field(default_factory=list)
    main_metric: str = "accuracy"
    higher_is_better: dict[str, bool] = dataclasses.field(default_factory=dict)
    run_time_s: float = 0.0

    @property
    def tasks_finished(self) -> int:
        return len(self.wall_times)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: arrays as (nested) lists, NaN as None."""
        return {
            "tasks_finished": self.tasks_finished,
            "main_metric": self.main_metric,
            "higher_is_better": dict(self.higher_is_better),
            "matrices": {m: _plain(r) for m, r in self.matrices.items()},
            "initial": {m: _plain(b) for m, b in self.initial.items()},
            "summary": {m: {k: _plain(v) for k, v in s.items()} for m, s in self.summary.items()},
            "wall_times": list(self.wall_times),
            "eval_times": list(self.eval_times),
            "memory_bytes": list(self.memory_bytes),
            "run_time_s": self.run_time_s,
            "out_dir": str(self.out_dir),
        }


def _plain(value):
    """Arrays and floats for JSON: nested lists, NaN → None."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def classification_accuracy(learner: ContinualLearner, task: Task) -> float:
    """Fraction of `task.test` whose argmax of `learner.predict(x)` equals the label, in batches of
    1000 under `torch.no_grad` (images are passed on the CPU; the learner moves them and sets eval
    mode itself). NaN for an empty test view."""
    test = task.test
    if test.labels is None:
        raise InputError(f"task {task.index} ({task.name}): the test view has no labels to compute accuracy from")
    if len(test) == 0:
        return float("nan")
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test), EVAL_BATCH):
            x, y = test.images[start : start + EVAL_BATCH], test.labels[start : start + EVAL_BATCH]
            correct += int((learner.predict(x).argmax(dim=1).cpu() == y).sum())
    return correct / len(test)


def _default_evaluator(learner: ContinualLearner) -> Evaluator:
    if learner.kind == "classifier":
        return lambda lrn, task: {"accuracy": classification_accuracy(lrn, task)}
    if learner.kind == "generator":
        if type(learner).sample is ContinualLearner.sample:
            raise ConfigError(f"{type(learner).__name__} is a generative learner without sample(n, task): implement"
                              " it or pass evaluate=fn(learner, task) -> {metric: value}")
        from genrep.continual.generative_eval import GenerativeEvaluator

        return GenerativeEvaluator()
    raise ConfigError(f"{type(learner).__name__}.kind is {learner.kind!r}; expected 'classifier' or 'generator'")


def _evaluate_all(learner: ContinualLearner, scenario: Scenario, evaluate: Evaluator,
                  names: tuple[str, ...] | None) -> dict[str, np.ndarray]:
    """Metric → (T,) values of `evaluate` on every task; every call must return the metrics `names`."""
    rows: dict[str, np.ndarray] = {}
    for task in scenario.tasks:
        values = evaluate(learner, task)
        if not isinstance(values, Mapping) or not values:
            raise ConfigError(f"the evaluator must return a non-empty dict {{metric: value}}, got {values!r}")
        got = tuple(values)
        if names is None:
            names = got
        if set(got) != set(names):
            raise ConfigError(f"the evaluator returned metrics {list(got)} on task {task.index} but {list(names)}"
                              " before (a resumed run must use the same evaluator)")
        for name in names:
            rows.setdefault(name, np.full(scenario.num_tasks, np.nan))[task.index] = float(values[name])
    return rows


def _evaluation_round(learner: ContinualLearner, scenario: Scenario, evaluate: Evaluator,
                      names: tuple[str, ...] | None, learned: int, out_dir: Path) -> dict[str, np.ndarray]:
    """`_evaluate_all` after `learned` tasks, between the evaluator's optional hooks
    `begin_round(learned, scenario)` and `end_round(learner, scenario, learned, out_dir)`."""
    begin, end = getattr(evaluate, "begin_round", None), getattr(evaluate, "end_round", None)
    if callable(begin):
        begin(learned, scenario)
    rows = _evaluate_all(learner, scenario, evaluate, names)
    if callable(end):
        end(learner, scenario, learned, out_dir)
    return rows


@dataclasses.dataclass
class _Progress:
    """The runner's state between tasks (what the checkpoint holds besides the learner and RNGs)."""

    initial: dict[str, np.ndarray]
    matrices: dict[str, np.ndarray]  # T×T, NaN rows for tasks not yet finished
    wall_times: list[float] = dataclasses.field(default_factory=list)
    eval_times: list[float] = dataclasses.field(default_factory=list)
    memory_bytes: list[int] = dataclasses.field(default_factory=list)
    run_time: float = 0.0  # seconds in run_scenario up to the last checkpoint, over all segments

    @property
    def done(self) -> int:
        return len(self.wall_times)

    def result(self, out_dir: Path, main_metric: str, higher_is_better: dict[str, bool]) -> ContinualResult:
        k = self.done
        return ContinualResult(
            matrices={m: r[:k].copy() for m, r in self.matrices.items()},
            initial={m: b.copy() for m, b in self.initial.items()},
            summary={m: cl_metrics.summarize(r[:k, :k], self.initial[m][:k], higher_is_better[m])
                     for m, r in self.matrices.items()},
            wall_times=list(self.wall_times), memory_bytes=list(self.memory_bytes), out_dir=out_dir,
            eval_times=list(self.eval_times), main_metric=main_metric, higher_is_better=dict(higher_is_better),
            run_time_s=self.run_time)


def check_out_dir(out_dir: str | Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to overwrite a run without `overwrite` (RunExistsError); with it, delete the runner's files."""
    out_dir = Path(out_dir)
    if resume and overwrite:
        raise ConfigError("--overwrite and --resume exclude each other")
    ours = [out_dir / name for name in (CHECKPOINT, RESULTS, HEATMAP, CURVES)]
    if resume or not any(path.exists() for path in ours[:2]):
        return
    if not overwrite:
        raise RunExistsError(f"{out_dir} holds a continual-learning run ({CHECKPOINT} / {RESULTS}); pass --resume"
                             " to continue it or --overwrite to replace it")
    for path in ours:
        path.unlink(missing_ok=True)


def _load(path: Path, scenario: Scenario, learner: ContinualLearner, run_config: dict[str, Any]) -> _Progress:
    """Load the checkpoint into `learner` (after setup) and the RNGs; return the runner's progress.
    Refuses (ConfigError) learner settings or a `run_config` that differ from the stored ones."""
    state = load_checkpoint(path)
    if state.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{path} is not a continual-learning checkpoint")
    if (state["scenario"], state["num_tasks"]) != (scenario.name, scenario.num_tasks):
        raise CheckpointError(
            f"{path} belongs to scenario {state['scenario']!r} with {state['num_tasks']} tasks, not"
            f" {scenario.name!r} with {scenario.num_tasks}; use another output folder or --overwrite")
    if state["learner_class"] != type(learner).__name__:
        raise CheckpointError(f"{path} was written by {state['learner_class']}, not {type(learner).__name__};"
                              " use another output folder or --overwrite")
    if "config" in state:  # checkpoints written before the settings were stored are not checked
        stored = {**state.get("run_config", {}), **state["config"]}
        differing = settings_differences(stored, {**run_config, **learner.config()}, ignore=RESUMABLE_SETTINGS)
        if differing:
            raise ConfigError(f"cannot resume from {path}: the settings differ in {'; '.join(differing)}; resume"
                              " with the stored values or start a new run (another output folder, or --overwrite)")
    try:
        learner.load_state_dict(state["learner"])
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path} does not match {type(learner).__name__}: {one_line(err)}") from None
    set_rng_states(state["rng"])
    return _Progress(
        initial={m: t.numpy() for m, t in state["initial"].items()},
        matrices={m: t.numpy() for m, t in state["matrices"].items()},
        wall_times=list(state["wall_times"]), eval_times=list(state["eval_times"]),
        memory_bytes=list(state["memory_bytes"]),
        run_time=float(state.get("run_time", sum(state["wall_times"]) + sum(state["eval_times"]))))


def _save(out_dir: Path, scenario: Scenario, learner: ContinualLearner, progress: _Progress,
          result: ContinualResult, run_config: dict[str, Any]) -> None:
    """Checkpoint, results.json and the two pictures after a finished task."""
    save_checkpoint(out_dir / CHECKPOINT, {
        "kind": CHECKPOINT_KIND, "scenario": scenario.name, "num_tasks": scenario.num_tasks,
        "learner_class": type(learner).__name__, "learner": learner.state_dict(),
        "config": learner.config(), "run_config": dict(run_config), "run_time": progress.run_time,
        "initial": {m: torch.from_numpy(b) for m, b in progress.initial.items()},
        "matrices": {m: torch.from_numpy(r) for m, r in progress.matrices.items()},
        "wall_times": progress.wall_times, "eval_times": progress.eval_times, "memory_bytes": progress.memory_bytes,
        "rng": rng_states(),
    })
    write_json(out_dir / RESULTS, {
        "scenario": scenario.name, "description": scenario.description, "num_classes": scenario.num_classes,
        "learner": type(learner).__name__, "kind": learner.kind, "settings": learner.config(),
        "run_config": dict(run_config),
        "tasks": [{"index": t.index, "name": t.name, "classes": list(t.classes), "train_size": len(t.train),
                   "val_size": 0 if t.val is None else len(t.val), "test_size": len(t.test)} for t in scenario],
        **result.to_dict(), "diagnostics": learner.diagnostics(),
    })
    main, names = result.main_metric, [t.name for t in scenario]
    kwargs = dict(metric=main, task_names=names, higher_is_better=result.higher_is_better[main])
    plot_heatmap(result.matrices[main], out_dir / HEATMAP, title=f"{scenario.name}: {type(learner).__name__}",
                 **kwargs)
    plot_curves(result.matrices[main], out_dir / CURVES, initial=result.initial[main],
                title=f"{scenario.name}: {type(learner).__name__}", **kwargs)


def _task_line(task: Task, T: int, result: ContinualResult, wall: float, eval_time: float) -> str:
    i, main = task.index, result.main_metric
    row = result.matrices[main][i]
    classes = f"; classes {','.join(map(str, task.classes))}" if task.classes else ""
    return (f"task {i + 1}/{T} ({task.name}{classes}): {main} avg over seen {np.mean(row[: i + 1]):.4g}, this task"
            f" {row[i]:.4g}; train {wall:.1f} s, eval {eval_time:.1f} s, memory"
            f" {result.memory_bytes[-1] / 1e6:.2f} MB")


def run_scenario(learner: ContinualLearner, scenario: Scenario, out_dir: str | Path, *,
                 evaluate: Evaluator | None = None, resume: bool = False, overwrite: bool = False,
                 progress: bool = True, log: Callable[[str], None] | None = print, main_metric: str | None = None,
                 lower_is_better: Collection[str] = LOWER_IS_BETTER,
                 run_config: Mapping[str, Any] | None = None) -> ContinualResult:
    """Train `learner` on the tasks of `scenario` in order and evaluate every task after every task.

    `learner.setup(scenario)` once; `evaluate(learner, task) -> {metric: value}` on every task
    before training (the initial rows); then per task begin_task, learn, end_task, and evaluate
    every task again (one T×T matrix per metric). Default `evaluate` for classifiers:
    `{"accuracy": classification_accuracy}`; for generators `generative_eval.GenerativeEvaluator()`
    (FID, PRD precision/recall, or the channel Wasserstein for calorimeter data; NaN on tasks not
    learned yet). An evaluator object with a method `begin_round(learned, scenario)` has it called
    before every evaluation round and one with `end_round(learner, scenario, learned, out_dir)` after
    it, `learned` being the number of tasks learned so far (0 for the initial round, i+1 after task
    i, in resumed runs too). After every task, `out_dir` gets an atomic checkpoint, a refreshed
    results.json and the pictures of `main_metric` (default: the first of `MAIN_METRICS` evaluated,
    else the evaluator's first metric). Metrics named in `lower_is_better` (case-insensitive) flip
    the sign of forgetting and the transfers (`cl_metrics`).

    `resume=True` restores the learner (after `setup`), the matrices and the RNG states from the
    checkpoint and continues with the next task, so an interrupted run ends with the matrices of an
    uninterrupted one; without a checkpoint it starts from task 0; a finished run returns its
    stored result. An existing run without `resume` / `overwrite` raises RunExistsError; a
    checkpoint of another scenario (name, number of tasks) or learner class raises CheckpointError;
    one whose learner settings (`learner.config()`, all but `RESUMABLE_SETTINGS`) or `run_config`
    (JSON-ready facts that define the run besides them, e.g. the data scale) differ raises
    ConfigError naming every differing key with its stored and current value.
    `progress`: a tqdm bar over tasks; `log`: one line per task (None: silent).
    `result.run_time_s` adds up the time of every resumed segment.
    """
    segment_start = time.perf_counter()
    run_config = dict(run_config or {})
    out_dir = Path(out_dir)
    evaluate = evaluate if evaluate is not None else _default_evaluator(learner)
    if distributed.is_main() or not overwrite:  # with overwrite it deletes: rank 0's job
        check_out_dir(out_dir, resume=resume, overwrite=overwrite)
    distributed.barrier()  # every rank has checked before rank 0 writes
    with locked_on_rank_zero(out_dir, what="continual seed folder"):  # a second run/resume of it at once is refused
        return _run_locked(learner, scenario, out_dir, evaluate, resume=resume, progress=progress, log=log,
                           run_config=run_config, main_metric=main_metric, lower_is_better=lower_is_better,
                           segment_start=segment_start)


def _run_locked(learner: ContinualLearner, scenario: Scenario, out_dir: Path, evaluate: Evaluator, *, resume: bool,
                progress: bool, log, run_config: dict[str, Any], main_metric: str | None, lower_is_better,
                segment_start: float) -> ContinualResult:
    """The body of `run_scenario`, run while this process holds `out_dir`'s lock."""
    say = log if log is not None and distributed.is_main() else (lambda line: None)
    T = scenario.num_tasks

    learner.setup(scenario)
    if resume and (out_dir / CHECKPOINT).is_file():
        state = _load(out_dir / CHECKPOINT, scenario, learner, run_config)
        say(f"resuming {scenario.name} from {out_dir / CHECKPOINT} after task {state.done}/{T}")
    else:
        if resume:
            say(f"no checkpoint in {out_dir}: starting {scenario.name} from task 1/{T}")
        initial = _evaluation_round(learner, scenario, evaluate, None, 0, out_dir)
        state = _Progress(initial=initial, matrices={m: np.full((T, T), np.nan) for m in initial})
    names = tuple(state.initial)
    main = main_metric or next((m for m in MAIN_METRICS if m in names), names[0])
    if main not in names:
        raise ConfigError(f"main_metric {main!r} is not evaluated; the evaluator returns {list(names)}")
    run_time_before = state.run_time  # of the earlier segments
    lower = {name.lower() for name in lower_is_better}
    higher_is_better = {m: m.lower() not in lower for m in names}

    with tqdm(total=T, initial=state.done, desc=scenario.name, unit="task", dynamic_ncols=True,
              disable=not (progress and distributed.is_main())) as bar:
        for task in scenario.tasks[state.done:]:
            start = time.perf_counter()
            learner.begin_task(task)
            learner.learn(task)
            learner.end_task(task)
            wall = time.perf_counter() - start
            memory = int(learner.memory_bytes())
            start = time.perf_counter()
            for m, row in _evaluation_round(learner, scenario, evaluate, names, task.index + 1, out_dir).items():
                state.matrices[m][task.index] = row
            eval_time = time.perf_counter() - start
            state.wall_times.append(wall)
            state.eval_times.append(eval_time)
            state.memory_bytes.append(memory)
            state.run_time = run_time_before + time.perf_counter() - segment_start
            result = state.result(out_dir, main, higher_is_better)
            if distributed.is_main():
                _save(out_dir, scenario, learner, state, result, run_config)
            bar.update()
            with tqdm.external_write_mode():
                say(_task_line(task, T, result, wall, eval_time))
            if task.index + 1 < T and stop_requested():  # SIGTERM / SIGUSR1 during the task: stop at its end
                raise preempted(f"task {task.index + 1}/{T} and its checkpoint ({out_dir / CHECKPOINT})",
                                "continue with the same command and --resume (or --resume auto)")
    return state.result(out_dir, main, higher_is_better)
