"""The training loop: one explicit loop for every `GenerativeModel`, over Lightning Fabric.

A run folder written by `Trainer.fit` holds:
  checkpoints/last.ckpt  full training state (atomic; every `checkpoint_every` steps and at the end)
  model.safetensors      the final weights (the EMA weights when EMA is on)
  metrics.jsonl, tensorboard/   see `MetricsLogger`
  resume_changes.jsonl   one line per setting changed on resume: {"step", "key", "old", "new", "time"}
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

import torch
from lightning_fabric import Fabric
from torch import nn
from tqdm.auto import tqdm

from genrep.data.dataset import BatchIterator, ImageDataset
from genrep.errors import CheckpointError, ConfigError, TrainingDivergedError
from genrep.models.base import Output
from genrep.training.checkpoint import (
    load_checkpoint,
    one_line,
    rng_states,
    save_checkpoint,
    save_weights,
    set_rng_states,
)
from genrep.training.config import RESUMABLE_FIELDS, TrainConfig
from genrep.training.ema import EMA
from genrep.training.logger import MetricsLogger
from genrep.training.preemption import preempted, stop_requested

# Settings a resume may change besides RESUMABLE_FIELDS (train.steps and the logging settings, which
# never touch the parameters' trajectory): the optimisation settings a NaN stop advises to change.
# From the checkpoint's step on the new values apply (lr: set in every optimiser param group and
# scheduler base, keeping the schedule's factor), and each change is appended to
# RUN/resume_changes.jsonl; any other difference is refused by name.
RESUME_ADJUSTABLE_FIELDS = ("lr", "grad_clip")
RESUME_CHANGEABLE_FIELDS = RESUMABLE_FIELDS + RESUME_ADJUSTABLE_FIELDS

# Over several processes the stop-signal flag is all-reduced (a host sync) every this many steps only.
STOP_CHECK_EVERY = 10

CHECKPOINT_KEYS = ("model", "optimizers", "schedulers", "ema", "rng", "step", "epoch", "batch_in_epoch",
                   "last_loss", "best_val_loss", "wall_time_s", "config")


@dataclasses.dataclass
class TrainState:
    """What a hook receives on global rank 0: the global `step`, the `epoch` index, the unwrapped
    `model` in eval mode (holding the EMA weights when EMA is on), the `run_dir` (or None) and the
    `fabric`. The torch/numpy/python RNGs are seeded with `train.seed` for the hook and restored
    after it, so hooks never change the training trajectory. Wrap sampling in `torch.no_grad()`."""

    step: int
    epoch: int
    model: nn.Module
    run_dir: Path | None
    fabric: Fabric


@dataclasses.dataclass
class TrainResult:
    """Summary of one `fit` call. `steps`/`epoch`: where training stands (global step count, epoch
    index); `final_loss`: training loss at the last step, averaged over processes (None if the call
    ran no step); `wall_time_s`, `images_per_s`: of this call, all processes together;
    `total_wall_time_s`: of the whole run, this call plus the earlier segments of a resumed run (up
    to their last checkpoint, where the elapsed time is stored); the paths
    are None without a run folder (`weights_path` also on ranks other than 0); `val_loss` (the
    latest) and `best_val_loss`: None without validation."""

    steps: int
    epoch: int
    final_loss: float | None
    wall_time_s: float
    images_per_s: float
    checkpoint_path: Path | None
    weights_path: Path | None
    val_loss: float | None = None
    best_val_loss: float | None = None
    total_wall_time_s: float = 0.0


@dataclasses.dataclass
class _Position:
    """The counters stored in a checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    last_loss: float | None = None
    best_val_loss: float | None = None
    wall_time_s: float = 0.0


class Trainer:
    """Trains a `GenerativeModel` with `fit`; see the module docstring for what it writes.

    Each step, by default: zero the gradients, `out = model(batch)`, `fabric.backward(out.loss)`,
    clip the gradient norm to `train.grad_clip` (if set), `optimizer.step()`, step a per-step
    scheduler, update the EMA; at the end of an epoch step a per-epoch scheduler.

    Optional model methods change this:
    - `configure_optimizers(cfg) -> Optimizer | list[Optimizer]` replaces the optimiser built from
      `train.optimizer`/`lr`/...; the `train.scheduler` is attached to each optimiser.
    - `training_step(batch, optimizers, fabric) -> Output` replaces the default step (e.g. a GAN
      with a generator and a discriminator optimiser). It gets the batch on the device and the
      Fabric-wrapped optimisers in the order `configure_optimizers` returned them, and must itself
      zero the gradients, call `fabric.backward(loss)` (not `loss.backward()`), clip if wanted
      (`fabric.clip_gradients`) and step each optimiser. It runs under `fabric.autocast()`.
      `Output.loss` is what is logged and checked for NaN. Over several processes such a model also
      needs `distributed_modules() -> dict[str, nn.Module]`: the submodules (attribute name →
      module, together holding every trainable parameter) that are each set up as their own DDP
      module (`fabric.setup_module`); during `training_step` those attributes point at the wrapped
      modules, so each `fabric.backward` all-reduces the gradients of the networks it reaches
      (parameters frozen with `requires_grad_(False)` in a backward get none and are skipped). The
      model itself stays unwrapped: its state_dict, the EMA and the checkpoints are as in one
      process. Without that method it is refused with ConfigError.

    Resuming (`resume=True`) loads `run_dir/checkpoints/last.ckpt` and restores the model, the
    optimisers, schedulers, EMA, the RNG states and the position inside the epoch, so an interrupted
    run ends with exactly the parameters of an uninterrupted one (same machine and settings). The
    stored configuration must equal the current one in every key except `RESUME_CHANGEABLE_FIELDS`:
    `train.steps` and the logging fields (`RESUMABLE_FIELDS`), and `train.lr` and `train.grad_clip`
    (`RESUME_ADJUSTABLE_FIELDS`, e.g. to follow a NaN stop's advice), which apply from the
    checkpoint's step on: the new lr replaces the restored one in every optimiser param group (times
    the scheduler's current factor; also the scheduler's base lr). Each changed setting is appended
    to `run_dir/resume_changes.jsonl`; any other difference raises ConfigError naming the keys.
    """

    def __init__(self, cfg: TrainConfig, *, fabric: Fabric, run_dir: Path | None, resume: bool = False):
        if resume and run_dir is None:
            raise ConfigError("resuming needs a run folder: pass run_dir")
        self.cfg, self.fabric, self.resume = cfg, fabric, resume
        self.run_dir = None if run_dir is None else Path(run_dir)
        self._good_step: int | None = None  # step of the last checkpoint known to be good

    @property
    def checkpoint_path(self) -> Path | None:
        """`run_dir/checkpoints/last.ckpt`, or None without a run folder."""
        return None if self.run_dir is None else self.run_dir / "checkpoints" / "last.ckpt"

    def fit(self, model: nn.Module, train: ImageDataset, *, val: ImageDataset | None = None,
            hooks: Sequence[Callable[[TrainState], None]] = (), config: dict | None = None) -> TrainResult:
        """Train `model` on `train` for `cfg.steps` steps in total (counting steps done before a resume).

        Batches come from `BatchIterator(train, batch_size, seed=cfg.seed)`, sharded over the
        processes. Every `log_every` steps one line goes to metrics.jsonl/TensorBoard (loss and
        Output.parts at that step, averaged over processes, lr, images/s). With `val`, the loss on
        `val` (eval mode, no grad, EMA weights if on, RNG seeded and restored) is logged as
        `val_loss` every `eval_every` steps and at the end. `hooks` run on rank 0 every
        `sample_every` steps and at the end. `config` is the caller's resolved configuration; it is
        stored in the checkpoint with `train` replaced by `cfg`, and compared on resume.

        Raises TrainingDivergedError when the loss or, at a checkpoint, a parameter is NaN/inf; the
        loss is checked at every log/eval/checkpoint/sample step for all steps since the previous
        check, so the message names the first bad step and no bad state is ever saved.
        """
        cfg, fabric = self.cfg, self.fabric
        parts = distributed_parts(model, fabric) if hasattr(model, "training_step") and fabric.world_size > 1 else None
        run_config = json.loads(json.dumps({**(config or {}), "train": dataclasses.asdict(cfg)}, default=str))
        fabric.seed_everything(cfg.seed, workers=False, verbose=False)
        raw_optimizers = self._build_optimizers(model)
        schedulers = self._build_schedulers(raw_optimizers)
        if parts is None:
            wrapped, *optimizers = fabric.setup(model, *raw_optimizers)
        else:  # each network its own DDP module; the optimisers keep referring to the same parameters
            wrapped = _SeparatelyWrapped(model.to(fabric.device),
                                         {name: fabric.setup_module(module) for name, module in parts.items()})
            optimizers = [fabric.setup_optimizers(optimizer) for optimizer in raw_optimizers]
        model.train()
        ema = None if cfg.ema_decay is None else EMA(model, cfg.ema_decay)
        batches = BatchIterator(train, cfg.batch_size, seed=cfg.seed, rank=fabric.global_rank,
                                num_replicas=fabric.world_size)
        val_batches = None if val is None else BatchIterator(val, cfg.batch_size, shuffle=False, drop_last=False,
                                                             rank=fabric.global_rank, num_replicas=fabric.world_size)
        pos = _Position()
        if self.resume:  # restores the RNG states last: nothing below draws random numbers before the loop
            self._restore(load_checkpoint(self.checkpoint_path), run_config, model, optimizers, schedulers, ema, pos)

        logger = MetricsLogger(self.run_dir, resume_step=pos.step) if (
            self.run_dir is not None and fabric.is_global_zero) else None
        bar = tqdm(total=cfg.steps, initial=pos.step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not (cfg.progress and fabric.is_global_zero))
        images_per_step = cfg.batch_size * fabric.world_size
        epoch_scheduler = cfg.scheduler == "exponential"
        custom_step = hasattr(model, "training_step")
        start_step, start_time, wall_before = pos.step, time.perf_counter(), pos.wall_time_s
        log_step, log_time = pos.step, start_time
        window: list[torch.Tensor] = []  # detached losses of the steps since the last check
        val_loss = None
        epoch_batches = batches.epoch(pos.epoch, start_batch=pos.batch_in_epoch)
        try:
            while pos.step < cfg.steps:
                out = self._step(wrapped, fabric.to_device(next(epoch_batches)), optimizers, custom_step)
                if not epoch_scheduler:
                    for scheduler in schedulers:
                        scheduler.step()
                if ema is not None:
                    ema.update(model)
                pos.step += 1
                pos.batch_in_epoch += 1
                window.append(out.loss.detach())
                if pos.batch_in_epoch == len(batches):
                    pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0
                    if epoch_scheduler:
                        for scheduler in schedulers:
                            scheduler.step()
                    epoch_batches = batches.epoch(pos.epoch)
                bar.update()

                last = pos.step == cfg.steps
                check_stop = fabric.world_size == 1 or pos.step % STOP_CHECK_EVERY == 0
                if not last and check_stop and stop_requested():  # SIGTERM / SIGUSR1: checkpoint and stop
                    self._stop(pos, model, optimizers, schedulers, ema, run_config, window, wall_before, start_time)
                log_now = last or pos.step % cfg.log_every == 0
                eval_now = val_batches is not None and cfg.eval_every > 0 and (last or pos.step % cfg.eval_every == 0)
                save_now = not last and cfg.checkpoint_every > 0 and pos.step % cfg.checkpoint_every == 0
                sample_now = not last and cfg.sample_every > 0 and pos.step % cfg.sample_every == 0 and bool(hooks)
                if not (log_now or eval_now or save_now or sample_now):
                    continue
                parts = out.parts if log_now else {}
                values = self._mean_over_processes(window + list(parts.values()))
                losses, part_values = values[: len(window)], values[len(window):]
                for i, loss in enumerate(losses):
                    if not math.isfinite(loss):
                        raise self._diverged(f"loss became {loss}", pos.step - len(losses) + 1 + i)
                pos.last_loss = losses[-1]
                pos.wall_time_s = wall_before + time.perf_counter() - start_time
                window.clear()
                if log_now:
                    now = time.perf_counter()
                    images_per_s = (pos.step - log_step) * images_per_step / max(now - log_time, 1e-9)
                    log_step, log_time = pos.step, now
                    record = {"step": pos.step, "epoch": round(pos.epoch + pos.batch_in_epoch / len(batches), 4),
                              "loss": pos.last_loss, **dict(zip(parts, part_values)),
                              **self._learning_rates(optimizers), "images_per_s": round(images_per_s, 1),
                              "time": round(pos.wall_time_s, 3)}
                    if logger is not None:
                        logger.log(record)
                    bar.set_postfix(loss=f"{pos.last_loss:.4g}", img_s=f"{images_per_s:.0f}", refresh=False)
                if eval_now:
                    val_loss = self._validate(wrapped, model, val_batches, ema)
                    pos.best_val_loss = val_loss if pos.best_val_loss is None else min(pos.best_val_loss, val_loss)
                    if logger is not None:
                        logger.log({"step": pos.step, "val_loss": val_loss, "time": round(pos.wall_time_s, 3)})
                if save_now:
                    self._save(pos, model, optimizers, schedulers, ema, run_config)
                if sample_now:
                    self._run_hooks(hooks, model, ema, pos)
            pos.wall_time_s = wall_before + time.perf_counter() - start_time
            self._save(pos, model, optimizers, schedulers, ema, run_config)
            weights_path = None
            if self.run_dir is not None and fabric.is_global_zero:
                with ema.swapped(model) if ema is not None else contextlib.nullcontext():
                    weights_path = save_weights(self.run_dir / "model.safetensors", model)
            self._run_hooks(hooks, model, ema, pos)
            fabric.barrier()
        finally:
            bar.close()
            if logger is not None:
                logger.close()
        elapsed = time.perf_counter() - start_time
        return TrainResult(
            steps=pos.step, epoch=pos.epoch, final_loss=pos.last_loss if pos.step > start_step else None,
            wall_time_s=elapsed, images_per_s=(pos.step - start_step) * images_per_step / max(elapsed, 1e-9),
            checkpoint_path=self.checkpoint_path, weights_path=weights_path, val_loss=val_loss,
            best_val_loss=pos.best_val_loss, total_wall_time_s=wall_before + elapsed,
        )

    def _build_optimizers(self, model: nn.Module) -> list[torch.optim.Optimizer]:
        """The model's `configure_optimizers(cfg)` result as a list, or one optimiser from the config."""
        cfg = self.cfg
        if hasattr(model, "configure_optimizers"):
            result = model.configure_optimizers(cfg)
            optimizers = [result] if isinstance(result, torch.optim.Optimizer) else list(result)
            if not optimizers or not all(isinstance(o, torch.optim.Optimizer) for o in optimizers):
                raise TypeError(
                    f"{type(model).__name__}.configure_optimizers must return an optimizer or a list of them")
        else:
            params = [p for p in model.parameters() if p.requires_grad]
            if cfg.optimizer == "sgd":
                optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
            else:
                kind = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
                optimizer = kind(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
            optimizers = [optimizer]
        if len(optimizers) > 1 and not hasattr(model, "training_step"):
            raise TypeError(f"{type(model).__name__}.configure_optimizers returned {len(optimizers)} optimizers:"
                            " define training_step(batch, optimizers, fabric) to use them")
        return optimizers

    def _build_schedulers(self, optimizers: list[torch.optim.Optimizer]) -> list[torch.optim.lr_scheduler.LRScheduler]:
        """One scheduler per optimiser: cosine (per step, to 0 at `cfg.steps`), exponential (per epoch) or none."""
        cfg = self.cfg
        if cfg.scheduler == "cosine":
            total = cfg.steps

            def cosine(step: int) -> float:
                return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))

            return [torch.optim.lr_scheduler.LambdaLR(o, cosine) for o in optimizers]
        if cfg.scheduler == "exponential":
            return [torch.optim.lr_scheduler.ExponentialLR(o, gamma=cfg.lr_gamma) for o in optimizers]
        return []

    def _step(self, wrapped: nn.Module, batch: dict[str, torch.Tensor], optimizers: list, custom: bool) -> Output:
        """One optimisation step on `batch` (the model's own `training_step` if `custom`); returns its Output."""
        if custom:
            with self.fabric.autocast():
                return wrapped.training_step(batch, optimizers, self.fabric)
        (optimizer,) = optimizers
        optimizer.zero_grad(set_to_none=True)
        out = wrapped(batch)
        self.fabric.backward(out.loss)
        if self.cfg.grad_clip is not None:
            self.fabric.clip_gradients(wrapped, optimizer, max_norm=self.cfg.grad_clip, error_if_nonfinite=False)
        optimizer.step()
        return out

    def _mean_over_processes(self, scalars: list) -> list[float]:
        """Scalars (tensors or numbers) as floats averaged over all processes: one host sync."""
        if not scalars:
            return []
        values = torch.stack([torch.as_tensor(s, device=self.fabric.device).detach().float() for s in scalars])
        if self.fabric.world_size > 1:
            values = self.fabric.all_reduce(values, reduce_op="mean")
        return values.tolist()

    @staticmethod
    def _learning_rates(optimizers: list) -> dict[str, float]:
        """{"lr": lr of the first optimiser's first group, "lr_1": of the second optimiser, ...}."""
        return {("lr" if i == 0 else f"lr_{i}"): o.param_groups[0]["lr"] for i, o in enumerate(optimizers)}

    @contextlib.contextmanager
    def _evaluation(self, model: nn.Module, ema: EMA | None) -> Iterator[None]:
        """Eval mode, EMA weights swapped in, every RNG seeded with `cfg.seed`; all restored afterwards."""
        saved_rng, was_training = rng_states(), model.training
        model.eval()
        torch.manual_seed(self.cfg.seed)
        try:
            with ema.swapped(model) if ema is not None else contextlib.nullcontext():
                yield
        finally:
            model.train(was_training)
            set_rng_states(saved_rng)

    def _validate(self, wrapped: nn.Module, model: nn.Module, val_batches: BatchIterator, ema: EMA | None) -> float:
        """Mean loss per image over the validation set, over all processes."""
        total = torch.zeros(2, device=self.fabric.device)
        with self._evaluation(model, ema), torch.no_grad():
            for batch in val_batches.epoch(0):
                batch = self.fabric.to_device(batch)
                n = float(len(batch["x"]))
                total[0] += wrapped(batch).loss.detach().float() * n
                total[1] += n
        if self.fabric.world_size > 1:
            total = self.fabric.all_reduce(total, reduce_op="sum")
        return (total[0] / total[1]).item()

    def _run_hooks(self, hooks: Sequence[Callable[[TrainState], None]], model: nn.Module, ema: EMA | None,
                   pos: _Position) -> None:
        """Call every hook with a TrainState, on global rank 0 only."""
        if not hooks or not self.fabric.is_global_zero:
            return
        with self._evaluation(model, ema):
            state = TrainState(step=pos.step, epoch=pos.epoch, model=model, run_dir=self.run_dir, fabric=self.fabric)
            for hook in hooks:
                hook(state)

    def _save(self, pos: _Position, model: nn.Module, optimizers: list, schedulers: list, ema: EMA | None,
              run_config: dict) -> None:
        """Write `last.ckpt` (rank 0) after checking that every parameter is finite; no-op without a run folder."""
        if self.run_dir is None:
            return
        if not torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all():
            raise self._diverged("a parameter became nan or inf", pos.step)
        state = {
            "model": model.state_dict(),
            "optimizers": [o.state_dict() for o in optimizers],
            "schedulers": [s.state_dict() for s in schedulers],
            "ema": None if ema is None else ema.state_dict(),
            "rng": rng_states(),
            **dataclasses.asdict(pos),
            "config": run_config,
        }
        if self.fabric.is_global_zero:
            save_checkpoint(self.checkpoint_path, state)
        self.fabric.barrier()
        self._good_step = pos.step

    def _stop(self, pos: _Position, model: nn.Module, optimizers: list, schedulers: list, ema: EMA | None,
              run_config: dict, window: list, wall_before: float, start_time: float) -> None:
        """After a stop signal: check the losses since the last check, write the checkpoint at this
        step (every rank takes part) and raise `Preempted` with the resume hint."""
        losses = self._mean_over_processes(window)
        for i, loss in enumerate(losses):
            if not math.isfinite(loss):
                raise self._diverged(f"loss became {loss}", pos.step - len(window) + 1 + i)
        if losses:
            pos.last_loss = losses[-1]
        pos.wall_time_s = wall_before + time.perf_counter() - start_time
        self._save(pos, model, optimizers, schedulers, ema, run_config)
        if self.run_dir is None:
            raise preempted(f"step {pos.step} (no run folder, so nothing was saved)", "start the run again",
                            rank_zero=self.fabric.is_global_zero)
        raise preempted(f"writing the checkpoint at step {pos.step} ({self.checkpoint_path})",
                        "continue with the same command and --resume (or --resume auto)",
                        rank_zero=self.fabric.is_global_zero)

    def _restore(self, state: dict, run_config: dict, model: nn.Module, optimizers: list, schedulers: list,
                 ema: EMA | None, pos: _Position) -> None:
        """Load a checkpoint's state into the model, optimisers, schedulers, EMA, `pos` and the RNGs."""
        path = self.checkpoint_path
        missing = [k for k in CHECKPOINT_KEYS if k not in state]
        if missing:
            raise CheckpointError(
                f"checkpoint {path} is not a genrep training checkpoint (missing {', '.join(missing)})")
        differing = config_differences(state["config"], run_config)
        if differing:
            raise ConfigError(
                f"cannot resume from {path}: the configuration differs in {'; '.join(differing)};"
                f" resume with the stored values or start a new run"
                f" (only train.{', train.'.join(RESUME_CHANGEABLE_FIELDS)} may change)"
            )
        check_steps_reached(self.cfg.steps, state.get("step"), path)
        changes = resume_changes(state["config"], run_config)
        if len(state["optimizers"]) != len(optimizers) or len(state["schedulers"]) != len(schedulers):
            raise CheckpointError(
                f"checkpoint {path} has {len(state['optimizers'])} optimizers and {len(state['schedulers'])}"
                f" schedulers; the model uses {len(optimizers)} and {len(schedulers)}")
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise CheckpointError(f"checkpoint {path} does not match {type(model).__name__}: {one_line(err)}") from None
        # the base lr of each param group as built from the current config, before the restore overwrites it
        fresh_lrs = [[group.get("initial_lr", group["lr"]) for group in o.param_groups] for o in optimizers]
        for optimizer, saved in zip(optimizers, state["optimizers"]):
            optimizer.load_state_dict(saved)
        for scheduler, saved in zip(schedulers, state["schedulers"]):
            scheduler.load_state_dict(saved)
        _apply_base_lrs(optimizers, schedulers, fresh_lrs)
        if ema is not None:
            ema.load_state_dict(state["ema"])
        for field in dataclasses.fields(pos):
            setattr(pos, field.name, state[field.name])
        set_rng_states(state["rng"])
        self._good_step = pos.step
        if changes and self.run_dir is not None and self.fabric.is_global_zero:
            record_resume_changes(self.run_dir / "resume_changes.jsonl", pos.step, changes)

    def _diverged(self, what: str, step: int) -> TrainingDivergedError:
        """The error for a NaN/inf at `step`, naming the last good checkpoint."""
        if self._good_step is None:
            return TrainingDivergedError(f"{what} at step {step}; no checkpoint was written before it; start again"
                                         " with a lower train.lr or with train.grad_clip set (e.g. 1.0)")
        return TrainingDivergedError(
            f"{what} at step {step}; the last good checkpoint at step {self._good_step} is kept in"
            f" {self.checkpoint_path}; resume from it with a lower train.lr or with train.grad_clip set"
            " (e.g. 1.0): a resume may change both")


def distributed_parts(model: nn.Module, fabric: Fabric) -> dict[str, nn.Module]:
    """`model.distributed_modules()` checked for a run over several processes: each entry must be
    the model's own attribute of that name, the entries disjoint and together holding every
    trainable parameter, and the strategy DDP. ConfigError (one line) otherwise, or when the
    model has no such method."""
    name = type(model).__name__
    if not hasattr(model, "distributed_modules"):
        raise ConfigError(f"{name} has its own training_step but no distributed_modules() naming the networks to"
                          " wrap separately for DDP, so it runs in one process only: train it with --devices 1"
                          " --num-nodes 1")
    from lightning_fabric.strategies import DDPStrategy

    if not isinstance(fabric.strategy, DDPStrategy):
        raise ConfigError(f"{name} has its own training_step, which runs over several processes with the ddp strategy"
                          f" only, not {type(fabric.strategy).__name__}: set train.strategy to auto or ddp")
    parts = dict(model.distributed_modules())
    seen: set[int] = set()
    for attr, module in parts.items():
        if getattr(model, attr, None) is not module or not isinstance(module, nn.Module):
            raise ConfigError(f"{name}.distributed_modules(): {attr!r} must name a submodule attribute of the model")
        ids = {id(p) for p in module.parameters()}
        if ids & seen:
            raise ConfigError(f"{name}.distributed_modules(): {attr!r} shares parameters with another entry")
        seen |= ids
    outside = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if outside:
        raise ConfigError(f"{name}.distributed_modules() leaves trainable parameters out (e.g. {outside[0]}), whose"
                          " gradients DDP would not synchronise: name the submodules that hold them")
    return parts


class _SeparatelyWrapped:
    """What the loop drives for a model whose `distributed_modules` are DDP modules of their own:
    `training_step` runs with those attributes of the model pointing at the wrapped modules (the
    originals are put back after it, so `state_dict` keys never change); a call (validation, no
    gradients) runs the plain model."""

    def __init__(self, model: nn.Module, wrapped: dict[str, nn.Module]):
        self.model, self.wrapped = model, wrapped

    def __call__(self, batch):
        return self.model(batch)

    def training_step(self, batch, optimizers, fabric):
        originals = {name: getattr(self.model, name) for name in self.wrapped}
        try:
            for name, module in self.wrapped.items():
                setattr(self.model, name, module)
            return self.model.training_step(batch, optimizers, fabric)
        finally:
            for name, module in originals.items():
                setattr(self.model, name, module)


def _apply_base_lrs(optimizers: list, schedulers: list, fresh_lrs: list[list[float]]) -> None:
    """After a restore: where the base lr built from the current config (`fresh_lrs`, per optimiser
    and param group) differs from the restored one (a changed `train.lr`), scale the group's lr by
    fresh / restored, so the schedule's current factor is kept, and set the base lr of the group and
    of its scheduler to the fresh value."""
    for i, (optimizer, fresh) in enumerate(zip(optimizers, fresh_lrs)):
        scheduler = schedulers[i] if i < len(schedulers) else None
        for j, (group, new_base) in enumerate(zip(optimizer.param_groups, fresh)):
            old_base = group.get("initial_lr", group["lr"])
            if new_base == old_base:
                continue
            group["lr"] = group["lr"] * new_base / old_base if old_base else new_base
            if "initial_lr" in group:
                group["initial_lr"] = new_base
            if scheduler is not None:
                scheduler.base_lrs[j] = new_base
        if scheduler is not None:
            scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def check_steps_reached(steps: int, reached, path) -> None:
    """Refuse to resume checkpoint `path`, already at step `reached`, with fewer steps in total
    (`steps`): the run would do nothing and report no training loss."""
    if isinstance(reached, int) and not isinstance(reached, bool) and reached > steps:
        raise ConfigError(f"--steps {steps} (train.steps) is below the step the run has reached ({reached}, in "
                          f"{path}); pass a larger --steps")


def resume_changes(stored: dict, current: dict) -> list[tuple[str, object, object]]:
    """(key, stored value, current value) for each `train.<RESUME_CHANGEABLE_FIELDS>` setting that
    differs between a checkpoint's configuration and the current one."""
    old, new = _flatten(stored.get("train", {}), "train."), _flatten(current.get("train", {}), "train.")
    unset = "<unset>"
    return [(f"train.{name}", old.get(f"train.{name}", unset), new.get(f"train.{name}", unset))
            for name in RESUME_CHANGEABLE_FIELDS
            if old.get(f"train.{name}", unset) != new.get(f"train.{name}", unset)]


def record_resume_changes(path: Path, step: int, changes: list[tuple[str, object, object]]) -> None:
    """Append one JSON line per change {"step", "key", "old", "new", "time"} to `path`."""
    from genrep.utils.files import writing

    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = "".join(json.dumps({"step": step, "key": key, "old": old, "new": new, "time": stamp}) + "\n"
                    for key, old, new in changes)
    with writing(path), open(path, "a") as f:  # OSError -> OutputError naming the file
        f.write(lines)


def config_differences(stored: dict, current: dict) -> list[str]:
    """The keys (dotted, e.g. "model.latent_dim") whose values differ between two resolved
    configurations, as "key (stored → current)", ignoring `train.<RESUME_CHANGEABLE_FIELDS>`."""
    old, new = _flatten(stored), _flatten(current)
    ignored = {f"train.{name}" for name in RESUME_CHANGEABLE_FIELDS}
    unset = "<unset>"
    keys = sorted(k for k in old.keys() | new.keys() if k not in ignored and old.get(k, unset) != new.get(k, unset))
    return [f"{k} ({old.get(k, unset)!r} → {new.get(k, unset)!r})" for k in keys]


def _flatten(config: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} → {"a.b": 1}; tuples compare as lists."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat
