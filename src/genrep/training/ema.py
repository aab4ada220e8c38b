"""Exponential moving average (EMA) of a model's parameters, with buffers copied as they are."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from genrep.errors import CheckpointError


class EMA:
    """Keeps `shadow = decay * shadow + (1 - decay) * param` for every floating-point parameter of
    `model` (updated by `update(model)` after each optimiser step) and a copy of its floating-point
    buffers (e.g. BatchNorm statistics), which are copied rather than averaged.

    `swapped(model)` temporarily loads the averaged weights into `model` (for sampling/evaluation);
    `copy_to(model)` loads them for good. The shadow tensors live on the model's device.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = float(decay)
        self.params = {n: p.detach().clone() for n, p in model.named_parameters() if p.is_floating_point()}
        self.buffers = {n: b.detach().clone() for n, b in model.named_buffers() if b.is_floating_point()}

    def _targets(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Model tensors in the order of `self.params` and `self.buffers`."""
        params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
        return [params[n] for n in self.params], [buffers[n] for n in self.buffers]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step from the current parameters of `model`; its buffers are copied."""
        params, buffers = self._targets(model)
        torch._foreach_lerp_(list(self.params.values()), [p.detach() for p in params], 1.0 - self.decay)
        for shadow, b in zip(self.buffers.values(), buffers):
            shadow.copy_(b)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the parameters and buffers of `model` with the averaged ones."""
        params, buffers = self._targets(model)
        for shadow, target in zip([*self.params.values(), *self.buffers.values()], [*params, *buffers]):
            target.copy_(shadow)

    @contextlib.contextmanager
    def swapped(self, model: nn.Module) -> Iterator[nn.Module]:
        """Within the block `model` holds the averaged weights; its own are restored afterwards."""
        params, buffers = self._targets(model)
        saved = [t.detach().clone() for t in [*params, *buffers]]
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for target, value in zip([*params, *buffers], saved):
                    target.copy_(value)

    def state_dict(self) -> dict:
        """{"decay": float, "params": {name: tensor}, "buffers": {name: tensor}}."""
        return {"decay": self.decay, "params": dict(self.params), "buffers": dict(self.buffers)}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Copy the averaged tensors from `state` (names and shapes must match this EMA's)."""
        for key in ("params", "buffers"):
            mine, theirs = getattr(self, key), state[key]
            if set(mine) != set(theirs) or any(mine[n].shape != theirs[n].shape for n in mine):
                raise CheckpointError(f"the EMA {key} in the checkpoint do not match the model's {key}")
            for name, tensor in mine.items():
                tensor.copy_(theirs[name])
        self.decay = float(state["decay"])
