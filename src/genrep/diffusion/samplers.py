"""Timestep samplers for training (improved-diffusion's resample.py and the DAED samplers).

Every sampler draws t ~ p(t) over {0, …, T−1} and returns importance weights w_t = 1/(T·p_t), so that
E_{t~p}[w_t·L_t] = (1/T) Σ_t L_t: the weighted objective equals the uniform one in expectation and only
its variance changes. Use it as `t, w = sampler.sample(B, device); loss = (losses["loss"] * w).mean()`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from genrep.errors import ConfigError, InputError


def _num_steps(T_or_diffusion) -> int:
    T = getattr(T_or_diffusion, "num_timesteps", T_or_diffusion)
    if isinstance(T, bool) or int(T) != T or int(T) < 1:
        raise ConfigError(f"the number of timesteps must be a positive integer, got {T!r}")
    return int(T)


class TimestepSampler(ABC):
    """A distribution p(t) ∝ weights() over the T timesteps."""

    num_timesteps: int

    @abstractmethod
    def weights(self) -> np.ndarray:
        """Unnormalised positive weights, float64 (T,)."""

    def probabilities(self) -> np.ndarray:
        """p(t), float64 (T,), sums to 1."""
        w = np.asarray(self.weights(), dtype=np.float64)
        return w / w.sum()

    def sample(self, batch_size: int, device=None, generator: torch.Generator | None = None):
        """Draw batch_size timesteps. Returns (t int64 (B,), weights float32 (B,) = 1/(T·p_t)).

        `generator` is a CPU torch.Generator for reproducible draws.
        """
        p = torch.from_numpy(self.probabilities())
        t = torch.multinomial(p, int(batch_size), replacement=True, generator=generator)
        weights = 1.0 / (len(p) * p[t])
        return t.to(device), weights.to(device=device, dtype=torch.float32)


class UniformSampler(TimestepSampler):
    """p(t) = 1/T (Ho et al.); all weights 1. Takes T or a diffusion."""

    def __init__(self, T):
        self.num_timesteps = _num_steps(T)

    def weights(self) -> np.ndarray:
        return np.ones(self.num_timesteps, dtype=np.float64)


class BetaProportionalSampler(TimestepSampler):
    """p(t) ∝ β_t: the DAED sampler as the thesis describes it (ch. 5.9.5). Takes betas (T,) or a diffusion."""

    def __init__(self, betas):
        betas = getattr(betas, "betas", betas)
        b = betas.detach().cpu().double().numpy() if isinstance(betas, torch.Tensor) else np.asarray(betas, np.float64)
        if b.ndim != 1 or not (b > 0).all():
            raise ConfigError("BetaProportionalSampler needs a 1-D array of positive betas")
        self._weights = b.copy()
        self.num_timesteps = len(b)

    def weights(self) -> np.ndarray:
        return self._weights


class FirstStepWeightedSampler(TimestepSampler):
    """The reference code's DAED sampler ("dae_uniform"): weight β_1·T on t = 0 (the DAE step) and 1 on
    every other step, normalised. T is the (shortened) process length T′ the sampler draws from."""

    def __init__(self, T, beta1: float):
        self.num_timesteps = _num_steps(T)
        beta1 = float(beta1)
        if not 0 < beta1 < 1:
            raise ConfigError(f"beta1 must lie in (0, 1), got {beta1!r}")
        self._weights = np.ones(self.num_timesteps, dtype=np.float64)
        self._weights[0] = beta1 * self.num_timesteps

    def weights(self) -> np.ndarray:
        return self._weights


class LossAwareSampler(TimestepSampler):
    """improved-diffusion's LossSecondMomentResampler: p(t) ∝ √E[L_t²] over the last `history_per_term`
    losses of each step, mixed with `uniform_prob` of the uniform distribution; uniform until every step
    has a full history. Feed it with `update(t, losses)` after each training step (all ranks call
    `update_with_local_losses` under torch.distributed)."""

    def __init__(self, T, history_per_term: int = 10, uniform_prob: float = 1e-3):
        self.num_timesteps = _num_steps(T)
        self.history_per_term = int(history_per_term)
        self.uniform_prob = float(uniform_prob)
        self._loss_history = np.zeros((self.num_timesteps, self.history_per_term), dtype=np.float64)
        self._loss_counts = np.zeros(self.num_timesteps, dtype=np.int64)

    def warmed_up(self) -> bool:
        return bool((self._loss_counts == self.history_per_term).all())

    def weights(self) -> np.ndarray:
        if not self.warmed_up():
            return np.ones(self.num_timesteps, dtype=np.float64)
        w = np.sqrt(np.mean(self._loss_history**2, axis=-1))
        w = w / w.sum()
        return w * (1 - self.uniform_prob) + self.uniform_prob / self.num_timesteps

    def update(self, ts, losses) -> None:
        """Record per-sample losses (any shape-(B,) sequences or tensors) at their timesteps."""
        ts = ts.detach().cpu().tolist() if isinstance(ts, torch.Tensor) else list(ts)
        losses = losses.detach().cpu().double().tolist() if isinstance(losses, torch.Tensor) else list(losses)
        if len(ts) != len(losses):
            raise InputError(f"got {len(ts)} timesteps but {len(losses)} losses")
        for t, loss in zip(ts, losses):
            t = int(t)
            if self._loss_counts[t] == self.history_per_term:
                self._loss_history[t, :-1] = self._loss_history[t, 1:]
                self._loss_history[t, -1] = loss
            else:
                self._loss_history[t, self._loss_counts[t]] = loss
                self._loss_counts[t] += 1

    update_with_all_losses = update

    def update_with_local_losses(self, local_ts: torch.Tensor, local_losses: torch.Tensor) -> None:
        """Gather every rank's (t, loss) pairs so all ranks keep identical histories, then `update`."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            self.update(local_ts, local_losses)
            return
        world = dist.get_world_size()
        sizes = [torch.zeros(1, dtype=torch.long, device=local_ts.device) for _ in range(world)]
        dist.all_gather(sizes, torch.tensor([len(local_ts)], dtype=torch.long, device=local_ts.device))
        sizes = [int(s.item()) for s in sizes]
        max_size = max(sizes)
        t_pad = torch.zeros(max_size, dtype=local_ts.dtype, device=local_ts.device)
        l_pad = torch.zeros(max_size, dtype=local_losses.dtype, device=local_losses.device)
        t_pad[: len(local_ts)] = local_ts
        l_pad[: len(local_losses)] = local_losses.detach()
        t_all = [torch.zeros_like(t_pad) for _ in range(world)]
        l_all = [torch.zeros_like(l_pad) for _ in range(world)]
        dist.all_gather(t_all, t_pad)
        dist.all_gather(l_all, l_pad)
        ts = [x for y, n in zip(t_all, sizes) for x in y[:n].tolist()]
        losses = [x for y, n in zip(l_all, sizes) for x in y[:n].tolist()]
        self.update(ts, losses)


LossSecondMomentResampler = LossAwareSampler

SAMPLERS = ("uniform", "loss-second-moment", "beta-proportional", "first-step-weighted")


def create_sampler(name: str, diffusion, *, beta1: float | None = None) -> TimestepSampler:
    """A sampler by name: "uniform", "loss-second-moment", "beta-proportional" (thesis DAED),
    "first-step-weighted" (reference DAED, "dae_uniform"; needs beta1)."""
    key = name.replace("_", "-").lower()
    if key == "uniform":
        return UniformSampler(diffusion)
    if key in ("loss-second-moment", "loss-aware"):
        return LossAwareSampler(diffusion)
    if key in ("beta-proportional", "beta"):
        return BetaProportionalSampler(diffusion.betas)
    if key in ("first-step-weighted", "dae-uniform"):
        if beta1 is None:
            raise ConfigError("the first-step-weighted (DAED) sampler needs beta1")
        return FirstStepWeightedSampler(diffusion, beta1)
    raise ConfigError(f"unknown timestep sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
