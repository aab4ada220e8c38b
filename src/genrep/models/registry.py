"""Model registry: CLI names → (model class, config dataclass, builder)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from genrep.data.dataset import ImageDataset
from genrep.errors import ConfigError
from genrep.models.base import GenerativeModel
from genrep.models.networks import ConditionEmbedding


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    config_cls: type
    build: Callable[..., GenerativeModel]
    description: str
    conditional: bool = False


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, *, config_cls: type, build, description: str, conditional: bool = False) -> None:
    _MODELS[name] = ModelSpec(name, config_cls, build, description, conditional)


def _ensure_builtin_models() -> None:
    if not _MODELS:
        from genrep.models import builtin  # noqa: F401


def model_names() -> list[str]:
    _ensure_builtin_models()
    return sorted(_MODELS)


def get_model_spec(name: str) -> ModelSpec:
    _ensure_builtin_models()
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; valid names: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def condition_for(data: ImageDataset, *, prefer: str = "labels") -> ConditionEmbedding:
    """Condition embedding matching a data set: labels (one-hot) if it has them, else its conditions."""
    if data.conditions is not None and (prefer == "conditions" or data.labels is None):
        c = data.conditions
        return ConditionEmbedding(cond_dim=c.shape[1], cond_mean=c.mean(0), cond_std=c.std(0))
    if data.labels is not None:
        return ConditionEmbedding(num_classes=data.num_classes)
    raise ConfigError(f"a conditional model needs labels or conditions, but {data.name} has neither")


def build_model(name: str, config, data: ImageDataset) -> GenerativeModel:
    """Instantiate model `name` with its config for images shaped/ranged like `data`."""
    spec = get_model_spec(name)
    if not isinstance(config, spec.config_cls):
        raise ConfigError(f"model {name!r} takes a {spec.config_cls.__name__}, got {type(config).__name__}")
    return spec.build(config, data)
