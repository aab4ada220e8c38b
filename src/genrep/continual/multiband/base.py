"""Plumbing shared by the chapter-9 VAE learners: settings, networks for the scenario, seeded task streams,
the kept generative part(s), sampling by task id, the per-task bit prior, state and memory.

Every learner here is a generative `ContinualLearner` (kind "generator"): `sample(n, task)` draws n images
of a learned task (λ ~ N(0, I), bits ~ its prior), or of tasks drawn uniformly from those learned for
task=None (the thesis' generation, §9.3.2); sampling a task never learned is an InputError. Networks come
from `networks.build_networks` unless the caller injects an `encoder` / `conditioner` / `decoder` factory
(each a callable (image_shape, settings) → nn.Module), as pythae does with its encoder/decoder arguments.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from genrep.continual import distributed
from genrep.continual.learner import ContinualLearner, module_bytes
from genrep.continual.multiband.networks import build_networks, check_architecture, check_task_code
from genrep.continual.multiband.settings import VAESettings
from genrep.continual.multiband.vae import GenerativePart, TwoLatentVAE, gumbel_bits, gumbel_temperature, vae_loss
from genrep.continual.scenario import Scenario, Task
from genrep.continual.seeding import seeded, shuffled_batches, stream_seed
from genrep.errors import CheckpointError, ConfigError, DataError, InputError

NetworkFactory = Callable[[tuple[int, int, int], VAESettings], nn.Module]
_INIT, _TASK, _SAMPLE = 0, 1_000, 2_000  # stream offsets of the seeded RNG streams
BCE_DATA = ("mnist", "digits")  # recon_loss="auto": BCE for these data sets, MSE otherwise (the reference)


def make_settings(cls: type, owner: str, settings: Any, overrides: dict[str, Any]) -> Any:
    """`settings` (default `cls()`) with keyword `overrides`; ConfigError for unknown keys or another class."""
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"{owner}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    base = settings if settings is not None else cls()
    if not isinstance(base, cls):
        raise ConfigError(f"{owner} needs {cls.__name__}, got {type(base).__name__}")
    return dataclasses.replace(base, **overrides)


def freeze(module: nn.Module) -> nn.Module:
    """`module` in eval mode with gradients off (a frozen copy for replay)."""
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


class VAELearner(ContinualLearner):
    """Base of the chapter-9 learners. Subclasses implement `_learn(task, generator)` and keep their generative
    model(s) in `self.generatives` (one shared model: a list of one; separate models: one per task)."""

    kind = "generator"
    task_conditional = True
    Settings: type[VAESettings] = VAESettings

    def __init__(self, settings: VAESettings | None = None, *, encoder: NetworkFactory | None = None,
                 conditioner: NetworkFactory | None = None, decoder: NetworkFactory | None = None, **overrides: Any):
        self.settings = make_settings(self.Settings, type(self).__name__, settings, overrides)
        self.factories = {"encoder": encoder, "conditioner": conditioner, "decoder": decoder}
        self.scenario: Scenario | None = None
        self.encoder: nn.Module | None = None
        self.generatives: list[GenerativePart] = []
        self.tasks_learned = 0
        self.history: list[dict[str, Any]] = []  # per task: final losses, replaced targets, ...

    # -- networks ------------------------------------------------------------------------------------------
    def setup(self, scenario: Scenario) -> None:
        s = self.settings
        shape = tuple(scenario.image_shape)
        if not all(self.factories.values()):
            check_architecture(s.architecture, shape)
        check_task_code(scenario.num_tasks, s.code_bits, s.code_p)
        low, high = scenario.value_range
        if self.recon_kind(scenario) == "bce" and (low < 0 or high > 1):
            raise DataError(f"{scenario.name}: the BCE reconstruction loss needs images in [0, 1], the scenario's are"
                            f" in [{low:g}, {high:g}]; build it with value_range=(0, 1) or --set recon_loss=mse")
        self.scenario = scenario
        self.recon = self.recon_kind(scenario)
        self.encoder, generative = self.new_networks(_INIT)
        self.generatives = [generative]

    def recon_kind(self, scenario: Scenario) -> str:
        if self.settings.recon_loss != "auto":
            return self.settings.recon_loss
        name = scenario.tasks[0].train.name.lower()
        return "bce" if any(name.startswith(d) for d in BCE_DATA) else "mse"

    def new_networks(self, stream: int) -> tuple[nn.Module, GenerativePart]:
        """A fresh (encoder, generative part) for the scenario, initialised from seeded stream `stream`."""
        s, shape = self.settings, tuple(self.scenario.image_shape)
        with seeded(stream_seed(s.seed, stream)):
            built = {}
            if not all(self.factories.values()):
                built = dict(zip(("encoder", "conditioner", "decoder"), build_networks(
                    s.architecture, shape, latent=s.latent, bits=s.binary_units, width=s.width,
                    code_bits=s.code_bits, code_p=s.code_p, translator=s.translator)))
            parts = {name: factory(shape, s) if factory else built[name] for name, factory in self.factories.items()}
        generative = GenerativePart(parts["conditioner"], parts["decoder"], s.latent, s.binary_units)
        return parts["encoder"].to(s.device), generative.to(s.device)

    def check_ready(self) -> None:
        if self.scenario is None:
            raise ConfigError(f"{type(self).__name__}: call setup(scenario) before training or sampling")

    # -- training ------------------------------------------------------------------------------------------
    def learn(self, task: Task) -> None:
        self.check_ready()
        if task.index != self.tasks_learned:
            raise InputError(f"{type(self).__name__}: task {task.index} given after {self.tasks_learned} learned tasks"
                             f"; tasks must come in order")
        seed = stream_seed(self.settings.seed, _TASK + task.index)
        with seeded(seed):
            self._learn(task, torch.Generator().manual_seed(seed))
        self.tasks_learned += 1

    def _learn(self, task: Task, generator: torch.Generator) -> None:
        raise NotImplementedError

    def images(self, task: Task) -> torch.Tensor:
        return task.train.images.to(self.settings.device, torch.float32)

    def optimizer(self, parameters, lr: float, gamma: float, weight_decay: float | None = None
                  ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.ExponentialLR]:
        """Adam (fused where this torch build has it: half the step time of the FC VAE on a CPU) + ExponentialLR."""
        wd = self.settings.weight_decay if weight_decay is None else weight_decay
        parameters = list(parameters)
        try:
            optimizer = torch.optim.Adam(parameters, lr=lr, weight_decay=wd, fused=True)
        except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device / dtype / torch version
            optimizer = torch.optim.Adam(parameters, lr=lr, weight_decay=wd)
        return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)

    def epochs_bar(self, epochs: int, label: str) -> Iterator[int]:
        return iter(tqdm(range(epochs), desc=label, unit="epoch", disable=not self.settings.progress, leave=False))

    def train_vae(self, vae: TwoLatentVAE, x: torch.Tensor, tasks: int | torch.Tensor, epochs: int,
                  generator: torch.Generator, *, phases: list[tuple[int, list[nn.Parameter], float, float]],
                  replay: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None,
                  penalty: Callable[[], torch.Tensor] | None = None,
                  on_step: Callable[[str], None] | None = None, label: str = "") -> torch.Tensor:
        """Train `vae` on images x of task `tasks` (an int, or one task id per row) for `epochs` epochs of
        shuffled batches; return the bit frequencies of the last epoch, row k for task k (the per-task prior,
        REFERENCE_CODE.md §5.2; rows of tasks absent from x are 0).

        Loss per batch: `vae_loss` (−ELBO per image) over the batch plus, with `replay(n) -> (images, tasks)`,
        the replayed rows joined to it, plus `penalty()`. `phases`: (first epoch, parameters, lr, γ) — a new
        Adam + ExponentialLR from that epoch on (the reference's encoder-only start). `on_step("before" |
        "after")` brackets each optimiser step, with the penalty's gradient added in between (SI)."""
        s = self.settings
        if isinstance(tasks, int):
            tasks = torch.full((len(x),), tasks, dtype=torch.long)
        tasks = tasks.to(x.device)
        n_tasks = int(tasks.max()) + 1
        frequencies = torch.zeros(n_tasks, vae.generative.bits, device=x.device)
        counts = torch.zeros(n_tasks, 1, device=x.device)
        vae.train()
        optimizer = scheduler = None
        parameters: list[nn.Parameter] = []
        split = distributed.world()[1] > 1  # data parallel (genrep.continual.distributed): this rank's rows
        noise_base, step = (int(torch.randint(1 << 62, ())) if split else 0), 0  # the same draw on every rank
        for epoch in self.epochs_bar(epochs, label):
            starts = [phase for phase in phases if phase[0] == epoch]
            if starts:
                _, parameters, lr, gamma = starts[-1]
                optimizer, scheduler = self.optimizer(parameters, lr, gamma)
            tau = gumbel_temperature(epoch, epochs)
            for index in shuffled_batches(len(x), s.batch_size, generator):
                batch, batch_tasks, n_new = x[index], tasks[index], len(index)
                if replay is not None:
                    old, old_tasks = replay(n_new)
                    batch, batch_tasks = torch.cat([batch, old]), torch.cat([batch_tasks, old_tasks])
                if split:  # this rank's share of the batch loss: its rows' −ELBO sum over the full batch size
                    rows = torch.cat([distributed.rows_of_rank(0, n_new), distributed.rows_of_rank(n_new, len(batch))])
                    with distributed.rank_noise(noise_base, step):
                        recon, mu, log_var, bits = vae(batch[rows], batch_tasks[rows], tau)
                    loss = vae_loss(recon, batch[rows], mu, log_var, kind=self.recon, scale=s.recon_scale) * (
                        len(rows) / len(batch))
                    new_rows = rows < n_new
                else:
                    recon, mu, log_var, bits = vae(batch, batch_tasks, tau)
                    loss = vae_loss(recon, batch, mu, log_var, kind=self.recon, scale=s.recon_scale)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if split:
                    distributed.all_reduce_gradients(vae)
                    step += 1
                if on_step is not None:
                    on_step("before")
                if penalty is not None:
                    penalty().backward()
                torch.nn.utils.clip_grad_value_(parameters, s.clip_value)
                optimizer.step()
                if on_step is not None:
                    on_step("after")
                if epoch == epochs - 1:
                    mine = rows[new_rows] if split else slice(None)  # this rank's new rows (all in 1 process)
                    own_bits = bits[new_rows] if split else bits[:n_new]
                    frequencies.index_add_(0, tasks[index][mine], (own_bits.detach() > 0).float())
                    counts.index_add_(0, tasks[index][mine], torch.ones(len(own_bits), 1, device=x.device))
            scheduler.step()
        if split:
            frequencies, counts = distributed.sum_over_ranks(frequencies), distributed.sum_over_ranks(counts)
            distributed.broadcast_buffers(vae)
        return frequencies / counts.clamp(min=1)

    def task_phases(self, vae: TwoLatentVAE, task: int) -> list[tuple[int, list[nn.Parameter], float, float]]:
        """One Adam over all parameters: ExponentialLR `first_task_gamma` on task 0, `gamma` after."""
        s = self.settings
        return [(0, list(vae.parameters()), s.lr, s.first_task_gamma if task == 0 else s.gamma)]

    def task_epochs(self, task: int) -> int:
        s = self.settings
        return s.first_task_epochs if task == 0 and s.first_task_epochs else s.epochs

    # -- sampling ------------------------------------------------------------------------------------------
    def generative_for(self, task: int) -> GenerativePart:
        """The generative part that draws task `task` (shared by all tasks unless overridden)."""
        return self.generatives[0]

    def sample(self, n: int, task: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images of learned task `task` (None: tasks drawn uniformly from those learned), on the CPU, in the
        scenario's value range (decoder outputs clamped to it)."""
        self.check_ready()
        if self.tasks_learned == 0:
            raise InputError(f"{type(self).__name__} has learned no task yet; nothing to sample")
        if task is not None and not 0 <= task < self.tasks_learned:
            raise InputError(f"cannot sample task {task}: {type(self).__name__} has learned tasks "
                             f"0..{self.tasks_learned - 1}")
        if task is None:
            tasks = torch.randint(self.tasks_learned, (n,), generator=generator)
        else:
            tasks = torch.full((n,), task, dtype=torch.long)
        out = torch.empty(n, *self.scenario.image_shape)
        with torch.no_grad():
            for t in tasks.unique().tolist():
                rows = (tasks == t).nonzero().squeeze(1)
                model = self.generative_for(t)
                was_training = model.training
                model.eval()
                out[rows] = model.sample(torch.full((len(rows),), t, dtype=torch.long), generator).cpu()
                model.train(was_training)
        low, high = self.scenario.value_range
        return out.clamp(low, high)

    def encode_bits(self, logits: torch.Tensor, rule: str = "gumbel") -> torch.Tensor:
        """±1 bits of an encoding: a hard Gumbel sample (p = sigmoid(2l)) or Bernoulli(sigmoid(l)) ("logits",
        the reference's global training)."""
        if not logits.shape[1]:
            return logits
        if rule == "logits":
            return torch.bernoulli(torch.sigmoid(logits)) * 2 - 1
        return gumbel_bits(logits, None)

    # -- state ---------------------------------------------------------------------------------------------
    def memory_bytes(self) -> int:
        """Bytes kept between tasks to generate: the generative part(s) (translator + decoder, §9.4.3)."""
        return module_bytes(*self.generatives) if self.generatives else 0

    def state_dict(self) -> dict[str, Any]:
        self.check_ready()
        return {"encoder": copy.deepcopy(self.encoder.state_dict()),
                "generatives": [copy.deepcopy(g.state_dict()) for g in self.generatives],
                "tasks_learned": self.tasks_learned, "history": copy.deepcopy(self.history), **self.extra_state()}

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_ready()
        missing = sorted({"encoder", "generatives", "tasks_learned"} - set(state))
        if missing:
            raise CheckpointError(f"{type(self).__name__} state lacks {', '.join(missing)}; was it saved by another "
                                  f"learner?")
        while len(self.generatives) < len(state["generatives"]):
            self.generatives.append(self.new_networks(_INIT + len(self.generatives))[1])
        self.generatives = self.generatives[: len(state["generatives"])]
        try:
            self.encoder.load_state_dict(state["encoder"])
            for model, saved in zip(self.generatives, state["generatives"]):
                model.bit_prior = saved["bit_prior"].clone()
                model.load_state_dict(saved)
        except RuntimeError as error:
            raise CheckpointError(f"{type(self).__name__}: the saved VAE does not match these settings "
                                  f"({str(error).splitlines()[0]})") from None
        self.tasks_learned = int(state["tasks_learned"])
        self.history = list(state.get("history", []))
        self.load_extra_state(state)

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what `extra_state` saved."""

    def diagnostics(self) -> dict[str, Any]:
        return {"per_task": self.history}
