"""Model registry: CLI names → (model class, config dataclass, builder)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from genrep.data.dataset import ImageDataset
from genrep.data.spec import DataSpec
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
    generative: bool = True  # False: a classifier (no `sample`, no sample grids)


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, *, config_cls: type, build, description: str, conditional: bool = False,
                   generative: bool = True, replace: bool = False) -> None:
    """Add model `name` beside the built-in ones (which are loaded first, so they are never hidden);
    an existing name is refused unless `replace=True`."""
    _ensure_builtin_models()
    if name in _MODELS and not replace:
        raise ConfigError(f"model {name!r} is already registered; choose another name or pass replace=True")
    _MODELS[name] = ModelSpec(name, config_cls, build, description, conditional, generative)


def _ensure_builtin_models() -> None:
    from genrep.models import builtin  # noqa: F401


def model_names() -> list[str]:
    _ensure_builtin_models()
    return sorted(_MODELS)


def get_model_spec(name: str) -> ModelSpec:
    _ensure_builtin_models()
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; valid names: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def condition_for(spec: DataSpec, data: ImageDataset | None = None) -> ConditionEmbedding:
    """Condition embedding for a data set: its condition vectors if it has them (e.g. the 9 particle
    attributes of the calorimeter data, standardised with the statistics of `data` when given; a model
    loaded from weights restores them), otherwise one-hot class labels."""
    if spec.cond_dim is not None:
        c = data.conditions if data is not None else None
        return ConditionEmbedding(cond_dim=spec.cond_dim, cond_mean=None if c is None else c.mean(0),
                                  cond_std=None if c is None else c.std(0))
    if spec.num_classes is not None:
        return ConditionEmbedding(num_classes=spec.num_classes)
    raise ConfigError(f"a conditional model needs labels or conditions, but {spec.name} has neither")


def build_model(name: str, config, spec: DataSpec, data: ImageDataset | None = None) -> GenerativeModel:
    """Instantiate model `name` with its config for images described by `spec`; `data` (the training
    set) supplies data-dependent initial values such as condition statistics."""
    model_spec = get_model_spec(name)
    if not isinstance(config, model_spec.config_cls):
        raise ConfigError(f"model {name!r} takes a {model_spec.config_cls.__name__}, got {type(config).__name__}")
    return model_spec.build(config, spec, data)
