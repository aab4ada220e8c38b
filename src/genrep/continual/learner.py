"""The contract between a continual learner and the scenario runner.

The runner calls, for every task in order: `begin_task(task)`, `learn(task)`, `end_task(task)`,
then evaluates. A classifier learner answers `predict(x)` (logits N×num_classes for images N×C×H×W
in the scenario's value range); a generative learner answers `sample(n, task)` (n images of the
given task, or of all tasks so far for task None). `state_dict` / `load_state_dict` must capture
everything `learn` changes (networks, optimisers, buffers, RNG-independent counters) so that the
runner can resume after any finished task. `memory_bytes()` is the memory-footprint column of
Table 8.4.2, with its convention for every method: what the learner keeps *to replay* between tasks
(generator, buffer, stored data), not the classifier that every method has.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import numbers
import types
import typing
from typing import Any

import torch

from genrep.continual.scenario import Scenario, Task
from genrep.errors import ConfigError


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

    def config(self) -> dict[str, Any]:
        """JSON-ready settings that define the run (the `settings` dataclass, if the learner has one): the
        runner stores them in the checkpoint and refuses to resume with different ones; {} by default."""
        settings = getattr(self, "settings", None)
        return settings_dict(settings) if dataclasses.is_dataclass(settings) else {}

    def diagnostics(self) -> dict[str, Any]:
        """JSON-ready facts about the training so far (e.g. one value per learned task) that the runner
        writes into results.json under "diagnostics"; none by default."""
        return {}

    def memory_bytes(self) -> int:
        """Bytes kept between tasks to replay (parameters and buffers of generators, stored samples);
        not the classifier (see the module docstring)."""
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


# -- learner settings: typed, bounded dataclass fields ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Range:
    """Allowed interval of a numeric setting (of every item for a tuple setting): `low` ≤ v (< v if
    `low_open`), v ≤ `high` (< if `high_open`); None: unbounded on that side."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return "any value"


def at_least(low: float) -> Range:
    return Range(low)


POSITIVE = Range(0, low_open=True)  # learning rates and other scales
DEVICE = "device"  # rule of a str setting naming a torch device
Rule = Range | tuple[str, ...] | str  # a Range, the allowed strings, or DEVICE


class SettingError(ConfigError):
    """A learner setting has a value of the wrong type or out of range. `key`, `value` and `allowed`
    (e.g. "an integer >= 1") let a caller reword it (the CLI: `--set key=value: must be ...`)."""

    def __init__(self, owner: str, key: str, value: Any, allowed: str, bound: Range | None = None):
        self.owner, self.key, self.value, self.allowed = owner, key, value, allowed
        if bound is not None:  # "need lr > 0 (a number), got -1.0"
            kind = allowed.replace(f" {bound}", "", 1)
            super().__init__(f"{owner}: need {key} {bound} ({kind}), got {value!r}")
        else:
            super().__init__(f"{owner}: {key} must be {allowed}; got {value!r}")


def _optional(hint) -> tuple[Any, bool]:
    """(the hint without None, whether None is allowed)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else hint), len(args) < len(typing.get_args(hint))
    return hint, False


def allowed_text(hint, rule: Rule | None = None) -> str:
    """What a setting of type `hint` with `rule` accepts, e.g. "an integer >= 1", "a number in (0, 1] or none"."""
    base, optional = _optional(hint)
    bound = f" {rule}" if isinstance(rule, Range) else ""
    if base is bool:
        text = "true or false"
    elif base is int:
        text = f"an integer{bound}"
    elif base is float:
        text = f"a number{bound}"
    elif typing.get_origin(base) is tuple:
        item = typing.get_args(base)[0]
        text = f"a list of {'integers' if item is int else 'numbers'}{bound} (e.g. [400,400])"
    elif isinstance(rule, tuple):
        text = f"one of {', '.join(rule)}"
    elif rule == DEVICE:
        text = "a torch device (cpu, cuda, cuda:1, mps)"
    else:
        text = "a string"
    return text + (" or none" if optional else "")


def _check_value(owner: str, key: str, value: Any, hint, rule: Rule | None) -> Any:
    """`value` normalised to `hint` (ints as float for float settings, lists as tuples); SettingError if
    its type or range is wrong."""
    base, optional = _optional(hint)
    scalar_range = rule if isinstance(rule, Range) and base in (int, float) else None
    fail = SettingError(owner, key, value, allowed_text(hint, rule), scalar_range)
    if value is None:
        if optional:
            return None
        raise fail

    def number(v, integer: bool):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise fail
        if integer and not isinstance(v, numbers.Integral):
            raise fail
        v = int(v) if integer else float(v)
        if not math.isfinite(v) or (isinstance(rule, Range) and v not in rule):
            raise fail
        return v

    if base is bool:
        if not isinstance(value, bool):
            raise fail
        return value
    if base in (int, float):
        return number(value, base is int)
    if typing.get_origin(base) is tuple:
        if not isinstance(value, (list, tuple)):
            raise fail
        return tuple(number(v, typing.get_args(base)[0] is int) for v in value)
    if not isinstance(value, str):
        raise fail
    if isinstance(rule, tuple) and value not in rule:
        raise fail
    if rule == DEVICE:
        try:
            device = torch.device(value)
        except (RuntimeError, ValueError):
            raise fail from None
        _check_device_available(device, value)
    return value


def _check_device_available(device: torch.device, value: str) -> None:
    """ConfigError when `device` (a cuda or mps device) does not exist on this machine: found when the
    settings are built, not as torch's AssertionError in the first step."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {value} is not available here (torch.cuda.is_available() is False); "
                              "use --set device=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {value} is not available here (torch.cuda.device_count() is "
                              f"{torch.cuda.device_count()}); use --set device=cuda:0 or device=cpu")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"device {value} is not available here (torch.backends.mps.is_available() is "
                              "False); use --set device=cpu")


def check_settings(settings: Any) -> None:
    """Check (and normalise in place) every field of a settings dataclass against its type hint and
    its rule in the class's `RULES` mapping (field → `Range` | allowed strings | `DEVICE`); call it
    from `__post_init__`. Raises SettingError naming the field, the value and what is allowed."""
    cls = type(settings)
    hints = typing.get_type_hints(cls)
    rules = getattr(cls, "RULES", {})
    for field in dataclasses.fields(settings):
        value = _check_value(cls.__name__, field.name, getattr(settings, field.name), hints[field.name],
                             rules.get(field.name))
        object.__setattr__(settings, field.name, value)


_TRUE, _FALSE, _NONE = ("true", "yes", "on", "1"), ("false", "no", "off", "0"), ("none", "null")


def _coerce_scalar(base, value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if base is bool:
            return True if text.lower() in _TRUE else False if text.lower() in _FALSE else value
        if base in (int, float):
            try:
                value = float(text)
            except ValueError:
                return value
        else:
            return value
    if isinstance(value, bool):
        return value
    if base is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if base is bool and isinstance(value, int) and value in (0, 1):
        return bool(value)
    if base is str and isinstance(value, (int, float)):
        return str(value)
    return value


def coerce_setting(settings_cls: type, key: str, value: Any) -> Any:
    """A `--set key=value` value (a string, or already parsed from JSON) converted to the type of field
    `key` of `settings_cls` where that is unambiguous: "3"/3.0 → 3 for int, "1e-3" → 0.001 for float,
    "yes"/"false"/0/1 → bool, "none"/"null" → None for optional fields, "400,400" or 400 → (400, 400) /
    (400,) for tuples. Anything else is returned unchanged, for the dataclass's check to refuse it."""
    base, optional = _optional(typing.get_type_hints(settings_cls)[key])
    if optional and isinstance(value, str) and value.strip().lower() in _NONE:
        return None
    if typing.get_origin(base) is tuple:
        item = typing.get_args(base)[0]
        if isinstance(value, str):
            value = [p for p in value.strip().strip("[]()").split(",") if p.strip()]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, (list, tuple)):
            return tuple(_coerce_scalar(item, v) for v in value)
        return value
    return _coerce_scalar(base, value)


def settings_dict(settings: Any) -> dict[str, Any]:
    """A settings dataclass as a JSON-ready dict (tuples as lists)."""
    return {f.name: list(v) if isinstance(v := getattr(settings, f.name), tuple) else v
            for f in dataclasses.fields(settings)}


# settings added after runs were stored, with the value every earlier run had implicitly: a stored record
# that lacks one reads as that value (so older run folders and checkpoints still resume); "protocol" is a key
# of the run record (`experiments.continual.run_record`), the others are learner settings
ADDED_SETTINGS: dict[str, Any] = {"classifier": "lenet5", "distill_temperature": 1.0, "iterations": None,
                                  "active_classes": "all", "reset_optimizer": True, "protocol": "shared"}


def with_added_settings(stored: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """`stored` plus the `ADDED_SETTINGS` values of keys that `current` has and `stored` lacks."""
    return {**{k: v for k, v in ADDED_SETTINGS.items() if k in current and k not in stored}, **stored}


def settings_differences(stored: dict[str, Any], current: dict[str, Any], *,
                         ignore: tuple[str, ...] = ()) -> list[str]:
    """The keys whose values differ between two settings dicts, as "key (stored → current)"; a key of
    `ADDED_SETTINGS` missing from `stored` counts as its value there."""
    stored, unset = with_added_settings(stored, current), "<unset>"
    keys = sorted(k for k in stored.keys() | current.keys()
                  if k not in ignore and stored.get(k, unset) != current.get(k, unset))
    return [f"{k} ({stored.get(k, unset)!r} → {current.get(k, unset)!r})" for k in keys]
