"""Parameter-importance penalties of the generative continual-learning baselines EWC and SI (thesis ch.9).

Both keep the network from moving the parameters that mattered for earlier tasks: with an importance
Ω_i ≥ 0 per parameter and an anchor θ*_i, the penalty added to the task loss is a weighted squared
distance Σ_i Ω_i (θ_i − θ*_i)². Applied to a VAE, the task loss is the negative ELBO.

- EWC (Kirkpatrick et al. 2017): Ω is the diagonal Fisher F_i = E_x[(∂ℓ(x)/∂θ_i)²] of the per-sample
  loss ℓ (`diagonal_fisher`), estimated after each task; `EWCPenalty` keeps one anchor per task, or one
  running anchor in the online variant (Schwarz et al. 2018).
- SI (Zenke et al. 2017): Ω is the path integral of the loss change along the training trajectory,
  accumulated during the task (`SIImportance`).

Only parameters with requires_grad take part; tensors are keyed by `model.named_parameters()` names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from genrep.errors import CheckpointError, ConfigError, InputError

Tensors = dict[str, torch.Tensor]


def _trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _detached(tensors: Tensors) -> Tensors:
    return {name: t.detach().clone() for name, t in tensors.items()}


def _copy(tensors: Tensors | None) -> Tensors | None:
    return None if tensors is None else _detached(tensors)


def _matching(model: nn.Module, tensors: Tensors, what: str) -> dict[str, nn.Parameter]:
    """The model's trainable parameters; InputError unless `tensors` has exactly their names and shapes."""
    params = _trainable(model)
    if tensors.keys() != params.keys():
        diff = sorted(tensors.keys() ^ params.keys())
        raise InputError(f"{what} does not match the model's trainable parameters (names differ: {', '.join(diff)})")
    for name, p in params.items():
        if tensors[name].shape != p.shape:
            raise InputError(f"{what}[{name!r}] has shape {tuple(tensors[name].shape)}, the parameter {tuple(p.shape)}")
    return params


def _weighted_distance(params: dict[str, nn.Parameter], weight: Tensors, anchor: Tensors) -> torch.Tensor:
    """Σ_i w_i (θ_i − θ*_i)² (stored tensors moved to the parameters' device and dtype)."""
    return sum(((weight[n].to(p) * (p - anchor[n].to(p)).pow(2)).sum() for n, p in params.items()),
               start=_zero(params))


def _zero(params: dict[str, nn.Parameter]) -> torch.Tensor:
    """0 on the parameters' device; a leaf that requires grad, so that `penalty(model).backward()` always works."""
    device = next(iter(params.values())).device if params else None
    return torch.zeros((), device=device, requires_grad=True)


class _LossModule(nn.Module):
    """`loss_fn` as the forward of a module that holds `model`, so that `functional_call` can swap the
    model's parameters for the ones being differentiated while `loss_fn` keeps calling `model`."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(x)


def diagonal_fisher(model: nn.Module, batches: Iterable[torch.Tensor],
                    loss_fn: Callable[[torch.Tensor], torch.Tensor], *, per_sample: bool = True) -> Tensors:
    """Empirical diagonal Fisher of EWC at the current parameters θ:

        per_sample=True:   F_i = 1/N Σ_n (∂ℓ(x_n)/∂θ_i)²          over all N samples of all batches
        per_sample=False:  F_i = 1/M Σ_b (∂ℓ̄_b/∂θ_i)²,  ℓ̄_b = mean of ℓ over batch b,  over the M batches

    `loss_fn(x)` returns the per-sample losses ℓ (shape (B,), e.g. the negative ELBO of each image) of a
    batch x, calling `model`. The per-sample gradients come from torch.func (vmap of grad through
    functional_call), so `loss_fn` must be vmap-able: no `.item()` or Python branches on tensor values.
    The model is evaluated in eval mode (dropout off, batch norm on its running statistics), then every
    submodule's train/eval mode is restored; parameters' `.grad` are not touched. Random draws inside
    `loss_fn` (the VAE's reparameterisation) use the global RNG, which the caller seeds; per sample they
    are independent (vmap randomness="different"). Memory: B×|θ| for the per-sample gradients of a batch.
    Returns {name: F} for the parameters with requires_grad, detached, shaped like the parameters."""
    params = {name: p.detach() for name, p in _trainable(model).items()}
    wrapper = _LossModule(model, loss_fn)

    def losses(theta: Tensors, x: torch.Tensor) -> torch.Tensor:
        out = functional_call(wrapper, {f"model.{n}": t for n, t in theta.items()}, (x,))
        if not isinstance(out, torch.Tensor) or out.shape != (len(x),):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise InputError(f"loss_fn must return a vector of per-sample losses of shape ({len(x)},); got {shape}")
        return out

    sample_grads = vmap(grad(lambda theta, x: losses(theta, x[None])[0]), in_dims=(None, 0), randomness="different")
    batch_grad = grad(lambda theta, x: losses(theta, x).mean())
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    count = 0
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        for x in batches:
            if not isinstance(x, torch.Tensor) or x.ndim == 0 or len(x) == 0:
                raise InputError("diagonal_fisher needs non-empty batches of samples (tensors B×...)")
            if per_sample:
                for name, g in sample_grads(params, x).items():
                    total[name] += g.pow(2).sum(0)
                count += len(x)
            else:
                for name, g in batch_grad(params, x).items():
                    total[name] += g.pow(2)
                count += 1
    finally:
        for module, training in modes:
            module.training = training
    if count == 0:
        raise InputError("diagonal_fisher got no batches; pass at least one batch of the finished task")
    return {name: t / count for name, t in total.items()}


class EWCPenalty:
    """Elastic weight consolidation (Kirkpatrick et al. 2017) with strength λ:

        penalty(θ) = Σ_k λ/2 Σ_i F_{k,i} (θ_i − θ*_{k,i})²       one anchor (θ*_k, F_k) per finished task k

    Online EWC (Schwarz et al. 2018, online=True) keeps a single anchor: after task k,
    F ← γ F + F_k and θ* ← θ at the end of task k, so penalty(θ) = λ/2 Σ_i F_i (θ_i − θ*_i)².

    Use: after each task, `consolidate(model, diagonal_fisher(model, ...))`; during the next tasks
    minimise task_loss + `penalty(model)`."""

    def __init__(self, strength: float, *, online: bool = False, gamma: float = 1.0):
        if not 0 <= strength < math.inf:
            raise ConfigError(f"EWC strength must be a finite number >= 0; got {strength!r}")
        if not 0 < gamma <= 1:
            raise ConfigError(f"EWC gamma must be in (0, 1]; got {gamma!r}")
        if gamma != 1 and not online:
            raise ConfigError(f"EWC gamma applies to online EWC only; got gamma={gamma!r} with online=False")
        self.strength, self.online, self.gamma = float(strength), online, float(gamma)
        self._anchors: list[tuple[Tensors, Tensors]] = []  # (θ*_k, F_k); one entry when online
        self._tasks = 0

    def __len__(self) -> int:
        """The number of consolidated tasks."""
        return self._tasks

    def consolidate(self, model: nn.Module, fisher: Tensors) -> None:
        """After a task: store θ* = the model's current parameters and its Fisher `fisher` (detached copies)."""
        params = _matching(model, fisher, "fisher")
        anchor, fisher = _detached(params), _detached(fisher)
        if self.online and self._anchors:
            previous = self._anchors[0][1]
            fisher = {n: self.gamma * previous[n].to(f) + f for n, f in fisher.items()}
            self._anchors = []
        self._anchors.append((anchor, fisher))
        self._tasks += 1

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """λ/2 Σ_k Σ_i F_{k,i} (θ_i − θ*_{k,i})², differentiable in θ; a 0 tensor before any `consolidate`."""
        total = _zero(_trainable(model))
        for anchor, fisher in self._anchors:
            total = total + _weighted_distance(_matching(model, anchor, "EWC anchor"), fisher, anchor)
        return 0.5 * self.strength * total

    def state_dict(self) -> dict[str, Any]:
        return {"online": self.online, "tasks": self._tasks,
                "anchors": [{"params": _detached(a), "fisher": _detached(f)} for a, f in self._anchors]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["online"] != self.online:
            raise CheckpointError(f"EWC state is {'online' if state['online'] else 'offline'}, this penalty is not")
        self._anchors = [(_detached(a["params"]), _detached(a["fisher"])) for a in state["anchors"]]
        self._tasks = int(state["tasks"])


class SIImportance:
    """Synaptic Intelligence (Zenke et al. 2017) with strength c and damping ξ.

    During a task, every optimiser step adds to the path integral

        ω_i += −g_i · Δθ_i,    g = ∂L_task/∂θ before the step,  Δθ = θ(after step) − θ(before step),

    where g is the gradient of the *unregularised* task loss and Δθ the actual update (penalty included).
    At the end of the task, with Δ_i = θ_i(end) − θ_i(start of the task):

        Ω_i += ω_i / (Δ_i² + ξ),    ω ← 0,    θ* ← θ(end);     penalty(θ) = c Σ_i Ω_i (θ_i − θ*_i)².

    Call order (the penalty's gradient must not enter g, so it gets its own backward pass):

        si.begin_task(model)
        for each batch:
            optimizer.zero_grad(); task_loss(batch).backward()
            si.before_step(model)              # records g (the task loss's .grad) and θ
            si.penalty(model).backward()       # adds the penalty's gradient to .grad
            optimizer.step()
            si.after_step(model)               # ω += −g·Δθ
        si.end_task(model)

    `state_dict` holds Ω, θ*, the task count and, inside a task, θ(start) and ω (not a pending
    before_step snapshot: save between steps)."""

    def __init__(self, strength: float, *, damping: float = 0.1):
        if not 0 <= strength < math.inf:
            raise ConfigError(f"SI strength c must be a finite number >= 0; got {strength!r}")
        if not 0 < damping < math.inf:
            raise ConfigError(f"SI damping xi must be a finite number > 0; got {damping!r}")
        self.strength, self.damping = float(strength), float(damping)
        self.importance: Tensors | None = None  # Ω, after the first task
        self.anchor: Tensors | None = None  # θ* = θ at the end of the last task
        self.start: Tensors | None = None  # θ at the start of the current task
        self.omega: Tensors | None = None  # ω of the current task
        self._tasks = 0
        self._step: tuple[Tensors, Tensors] | None = None  # (θ, g) recorded by before_step

    def __len__(self) -> int:
        """The number of finished tasks."""
        return self._tasks

    def begin_task(self, model: nn.Module) -> None:
        """Record θ(start of the task) and set ω = 0."""
        self.start = _detached(_trainable(model))
        self.omega = {n: torch.zeros_like(t) for n, t in self.start.items()}

    def before_step(self, model: nn.Module) -> None:
        """After the task loss's backward, before the penalty's: record θ and g = the current `.grad`
        (None, a parameter the loss does not use, counts as 0)."""
        if self.omega is None:
            raise RuntimeError("SIImportance.before_step called outside a task; call begin_task(model) first")
        params = _matching(model, self.omega, "SI path integral")
        if all(p.grad is None for p in params.values()):
            raise RuntimeError("SIImportance.before_step found no gradients; call it after task_loss.backward()")
        grads = {n: torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for n, p in params.items()}
        self._step = (_detached(params), grads)

    def after_step(self, model: nn.Module) -> None:
        """After optimizer.step(): ω_i += −g_i (θ_i − θ_i(before step))."""
        if self._step is None:
            raise RuntimeError("SIImportance.after_step needs before_step(model) before the optimiser step")
        before, grads = self._step
        for name, p in _matching(model, self.omega, "SI path integral").items():
            self.omega[name] -= grads[name] * (p.detach() - before[name])
        self._step = None

    def end_task(self, model: nn.Module) -> None:
        """Ω_i += ω_i / ((θ_i(end) − θ_i(start))² + ξ); θ* = θ(end); ω is cleared."""
        if self.omega is None:
            raise RuntimeError("SIImportance.end_task called outside a task; call begin_task(model) first")
        end = _detached(_matching(model, self.omega, "SI path integral"))
        added = {n: self.omega[n] / ((end[n] - self.start[n]).pow(2) + self.damping) for n in end}
        self.importance = added if self.importance is None else {n: self.importance[n] + added[n] for n in added}
        self.anchor, self.start, self.omega, self._step = end, None, None, None
        self._tasks += 1

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """c Σ_i Ω_i (θ_i − θ*_i)², differentiable in θ; a 0 tensor before the first `end_task`."""
        if self.importance is None:
            return _zero(_trainable(model))
        params = _matching(model, self.anchor, "SI anchor")
        return self.strength * _weighted_distance(params, self.importance, self.anchor)

    def state_dict(self) -> dict[str, Any]:
        return {"tasks": self._tasks, "importance": _copy(self.importance), "anchor": _copy(self.anchor),
                "start": _copy(self.start), "omega": _copy(self.omega)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.importance, self.anchor = _copy(state["importance"]), _copy(state["anchor"])
        self.start, self.omega = _copy(state["start"]), _copy(state["omega"])
        self._tasks, self._step = int(state["tasks"]), None
