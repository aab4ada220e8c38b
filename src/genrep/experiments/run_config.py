"""`RunConfig`: everything one training run needs (model name and config, data, training)."""

from __future__ import annotations

import dataclasses
from typing import Any

from genrep.config import from_dict, load_yaml, merge, to_dict
from genrep.errors import ConfigError
from genrep.models.registry import get_model_spec
from genrep.training.config import TrainConfig


@dataclasses.dataclass
class DataConfig:
    """The training data. name / path: the source (`genrep data list`); value_range "01" | "-11";
    image_size: resize; pad_to: zero-pad; limit: a seeded subset; validation_fraction: held out of
    train. Semi-supervised training (thesis Sec. 6.6.4, `genrep.data.labels`): labelled_share keeps
    that share of the train labels (class-balanced unless labelled_balanced is false, the reference
    code's draw), the rest get −1; drop_unlabelled keeps only the labelled images. unlabelled: a
    second data set whose train images (resized like these) are appended with label −1 (the
    reference code's simultaneous domain adaptation)."""

    name: str = "digits"
    value_range: str = "01"
    image_size: int | None = None
    pad_to: int | None = None
    limit: int | None = None
    validation_fraction: float = 0.1
    path: str | None = None
    labelled_share: float = 1.0
    labelled_balanced: bool = True
    drop_unlabelled: bool = False
    unlabelled: str | None = None

    def __post_init__(self) -> None:
        for name in ("image_size", "pad_to", "limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"data.{name} must be an integer >= 1 or null, got {value!r}")
        fraction = self.validation_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
            raise ConfigError(f"data.validation_fraction must be a number in [0, 1), got {fraction!r}")
        share = self.labelled_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise ConfigError(f"data.labelled_share must lie in (0, 1], got {share!r}")
        for name in ("labelled_balanced", "drop_unlabelled"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"data.{name} must be true or false, got {getattr(self, name)!r}")
        if self.unlabelled is not None and not isinstance(self.unlabelled, str):
            raise ConfigError(f"data.unlabelled must be a data set name or null, got {self.unlabelled!r}")


@dataclasses.dataclass
class RunConfig:
    model_name: str
    model: Any
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


TOP_KEYS = ("model_name", "model", "data", "train")


def run_config_from_dict(raw: dict[str, Any]) -> RunConfig:
    """Strictly parse a nested dict (from YAML and/or --set) into a RunConfig."""
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"unknown config key {', '.join(unknown)}; valid top-level keys: {', '.join(TOP_KEYS)}")
    if not isinstance(raw.get("model_name"), str):
        raise ConfigError("config key model_name is missing: name the model (e.g. vae)")
    spec = get_model_spec(raw["model_name"])
    return RunConfig(
        model_name=raw["model_name"],
        model=from_dict(spec.config_cls, raw.get("model"), prefix="model."),
        data=from_dict(DataConfig, raw.get("data"), prefix="data."),
        train=from_dict(TrainConfig, raw.get("train"), prefix="train."),
    )


def resolve_run_config(model_name: str | None, *, config_file: str | None = None,
                       overrides: dict[str, Any] | None = None) -> RunConfig:
    """Defaults ← YAML file ← CLI values/overrides, in that order of precedence."""
    raw: dict[str, Any] = load_yaml(config_file) if config_file else {}
    if model_name is not None:
        if raw.get("model_name", model_name) != model_name:
            raise ConfigError(f"config file trains {raw['model_name']!r} but the command names {model_name!r}")
        raw["model_name"] = model_name
    raw = merge(raw, overrides or {})
    return run_config_from_dict(raw)


def run_config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    return to_dict(cfg)
