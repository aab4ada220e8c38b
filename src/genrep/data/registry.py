"""One registry of data sources and `load_dataset`, the entry point of the data layer.

A source is a function `load(split, **options) -> ImageDataset` returning images in [0, 1],
plus a `status()` line for `genrep data list`. `load_dataset` applies the common transforms
(value range, padding/resizing, subsetting, validation holdout) on top.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

from genrep.data.dataset import ImageDataset
from genrep.errors import DataError


@dataclasses.dataclass(frozen=True)
class Source:
    name: str
    load: Callable[..., ImageDataset]
    status: Callable[[], str]
    description: str
    splits: tuple[str, ...] = ("train", "test")


_SOURCES: dict[str, Source] = {}


def register_source(name: str, *, load, status, description: str, splits=("train", "test"),
                    replace: bool = False) -> None:
    """Add data source `name` beside the built-in ones (which are loaded first, so they are never
    hidden); an existing name is refused unless `replace=True`."""
    _ensure_builtin_sources()
    if name in _SOURCES and not replace:
        raise DataError(f"data set {name!r} is already registered; choose another name or pass replace=True")
    _SOURCES[name] = Source(name, load, status, description, tuple(splits))


def _ensure_builtin_sources() -> None:
    from genrep.data import sources  # noqa: F401  (registers the built-in sources)


def dataset_names() -> list[str]:
    _ensure_builtin_sources()
    return sorted(_SOURCES)


def get_source(name: str) -> Source:
    _ensure_builtin_sources()
    if name not in _SOURCES:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(_SOURCES))}")
    return _SOURCES[name]


def load_dataset(
    name: str,
    split: str = "train",
    *,
    value_range: tuple[float, float] | str = (0.0, 1.0),
    image_size: int | None = None,
    pad_to: int | None = None,
    limit: int | None = None,
    validation_fraction: float = 0.0,
    seed: int = 0,
    **options,
) -> ImageDataset:
    """Load data set `name` ("digits", "mnist", ...; see `dataset_names()`).

    split: a split of the source ("train"/"test"), or "val" for a seeded holdout of
        `validation_fraction` of "train" (then "train" is the rest).
    value_range: (0, 1) (default), (-1, 1), or the strings "01" / "-11".
    image_size: bilinear resize to a square side; pad_to: zero-pad (in the [0,1] black) to a side.
    limit: keep a seeded random subset of this many images.
    options: passed to the source (e.g. `path=` for local files, `download=True`).
    """
    from genrep.data import transforms

    source = get_source(name)
    base_split = "train" if split == "val" else split
    if base_split not in source.splits:
        raise DataError(f"dataset {name!r} has no split {split!r}; valid: {', '.join(source.splits + ('val',))}")
    if not 0 <= validation_fraction < 1:  # also refuses NaN
        raise DataError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
    if split == "val" and not 0 < validation_fraction < 1:
        raise DataError("split='val' needs 0 < validation_fraction < 1 (e.g. validation_fraction=0.1)")
    _check_options(source, options)
    data = source.load(base_split, **options)
    transforms.check_finite(data)
    if base_split == "train" and validation_fraction > 0:
        train, val = transforms.holdout(data, validation_fraction, seed=seed)
        data = val if split == "val" else train
    if limit is not None:
        data = transforms.random_subset(data, limit, seed=seed)
    if pad_to is not None:
        data = transforms.pad_to(data, pad_to)
    if image_size is not None:
        data = transforms.resize(data, image_size)
    return transforms.to_range(data, value_range)


def _check_options(source: Source, options: dict) -> None:
    """Refuse options `source.load` does not take (e.g. `path=` for the embedded digits), naming the
    option and the source, before anything is loaded."""
    if not options:
        return
    try:
        params = inspect.signature(source.load).parameters
    except (TypeError, ValueError):  # a builtin or C callable without a signature: let it decide
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    taken = [n for n, p in params.items() if p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                        inspect.Parameter.POSITIONAL_OR_KEYWORD)][1:]
    unknown = [n for n in options if n not in taken]
    if unknown:
        valid = ", ".join(taken) if taken else "none"
        raise DataError(f"dataset {source.name!r} does not take the option {unknown[0]}={options[unknown[0]]!r} "
                        f"(options it takes: {valid})")
