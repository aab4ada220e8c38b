"""The contract between a continual learner and the scenario runner.

The runner calls, for every task in order: `begin_task(task)`, `learn(task)`, `end_task(task)`,
then evaluates. A classifier learner answers `predict(x)` (logits N×num_classes for images N×C×H×W
in the scenario's value range); a generative learner answers `sample(n, task)` (n images of the
given task, or of all tasks so far for task None). `state_dict` / `load_state_dict` must capture
everything `learn` changes (networks, optimisers, buffers, RNG-independent counters) so that the
runner can resume after any finished task. `memory_bytes()` is what the learner keeps between
tasks (networks + stored data), for the memory-footprint column of Table 8.4.2.
"""

from __future__ import annotations

import abc
from typing import Any

import torch

from genrep.continual.scenario import Scenario, Task


class ContinualLearner(abc.ABC):
    """Base class of every continual learner. Subclasses set `kind` ("classifier" | "generator")."""

    kind: str = "classifier"

    def setup(self, scenario: Scenario) -> None:
        """Called once before the first task (build networks for the scenario's shapes/classes)."""

    def begin_task(self, task: Task) -> None:
        """Called before `learn(task)`."""

    @abc.abstractmethod
    def learn(self, task: Task) -> None:
        """Train on the task's training view (and whatever the learner replays)."""

    def end_task(self, task: Task) -> None:
        """Called after `learn(task)`, before evaluation (freeze copies, fill buffers, ...)."""

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} is not a classifier")

    def sample(self, n: int, task: int | None = None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} is not a generative learner")

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue after the last finished task."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` (after `setup(scenario)` on the same scenario)."""

    def diagnostics(self) -> dict[str, Any]:
        """JSON-ready facts about the training so far (e.g. one value per learned task) that the runner
        writes into results.json under "diagnostics"; none by default."""
        return {}

    def memory_bytes(self) -> int:
        """Bytes kept between tasks (parameters and buffers of kept networks, stored samples)."""
        return 0


def module_bytes(*modules: torch.nn.Module) -> int:
    """Bytes of the parameters and buffers of `modules` (shared tensors counted once)."""
    seen, total = set(), 0
    for module in modules:
        for tensor in list(module.parameters()) + list(module.buffers()):
            if tensor.data_ptr() not in seen:
                seen.add(tensor.data_ptr())
                total += tensor.numel() * tensor.element_size()
    return total
