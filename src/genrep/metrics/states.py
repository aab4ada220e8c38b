"""Shared glue of the distribution-metric classes (FID, KID, IS, PRD, improved P&R).

Every class takes feature batches through `update(*, real=None, fake=None)`: N×D arrays, or images
when the metric was built with a `feature_extractor` (an `nn.Module` mapping a batch to N×D
features, called under `torch.no_grad()`). Batches are checked with `as_features` (2-D, finite)
and against the dimension of earlier updates; states are float64.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from genrep.errors import InputError
from genrep.metrics.checks import as_features, same_dim


def feature_pair(real, fake) -> tuple[torch.Tensor, torch.Tensor]:
    """`real` (N×D) and `fake` (M×D) as checked float64 tensors of the same dimension D."""
    real, fake = as_features(real, name="real"), as_features(fake, name="fake")
    same_dim(real, fake)
    return real, fake


def extract_features(x, *, name: str, feature_extractor: nn.Module | None) -> torch.Tensor:
    """float64 N×D features of one batch: `x` itself, or `feature_extractor(x)` under no_grad.

    With an extractor `x` is whatever it accepts (e.g. images N×C×H×W in its documented range) and
    its output must be N×D; without one `x` must already be N×D. Raises InputError otherwise."""
    if feature_extractor is not None:
        with torch.no_grad():
            x = feature_extractor(x)
        name = f"{name} features returned by feature_extractor"
    return as_features(x, name=name, min_rows=1)


class PairedFeatureMetric(Metric):
    """Base of the metrics that compare feature sets: `update(*, real=None, fake=None)`.

    Subclasses set `sets` (the names `update` accepts), register their states, and implement
    `_dim()` (the feature dimension the states hold, None before the first update) and
    `_add(which, features)` (fold an N×D float64 batch into the states of set `which`)."""

    is_differentiable = False
    full_state_update = False
    sets: tuple[str, ...] = ("real", "fake")

    def __init__(self, *, feature_extractor: nn.Module | None = None, **kwargs):
        super().__init__(**kwargs)
        self.feature_extractor = feature_extractor

    def update(self, *, real=None, fake=None) -> None:
        """Add a batch of real and/or generated samples (N×D features, or extractor inputs)."""
        given = {which: x for which, x in (("real", real), ("fake", fake)) if x is not None}
        if not given:
            raise InputError(f"{type(self).__name__}.update() needs " + " and/or ".join(f"{s}=" for s in self.sets))
        for which in given:
            if which not in self.sets:
                raise InputError(f"{type(self).__name__} takes only {', '.join(s + '=' for s in self.sets)}; "
                                 f"got {which}=")
        feats = {which: extract_features(x, name=which, feature_extractor=self.feature_extractor)
                 for which, x in given.items()}
        if len(feats) == 2:
            same_dim(feats["real"], feats["fake"])
        dim = self._dim()
        for which, f in feats.items():
            if dim is not None and f.shape[1] != dim:
                raise InputError(f"{type(self).__name__}: {which} features have dimension {f.shape[1]}, "
                                 f"but the metric holds dimension {dim}")
        for which, f in feats.items():
            self._add(which, f)

    @abstractmethod
    def _dim(self) -> int | None:
        """The feature dimension held by the states; None before the first update."""

    @abstractmethod
    def _add(self, which: str, features: torch.Tensor) -> None:
        """Fold an N×D float64 batch into the states of set `which`."""

    def _missing(self, which: str) -> InputError:
        return InputError(f"{type(self).__name__}.compute() has no {which} samples: call update({which}=...) first")


class FeatureListMetric(PairedFeatureMetric):
    """A paired metric that keeps every feature row (states `real`, `fake`: lists of N×D float64
    tensors, concatenated across processes with `dist_reduce_fx="cat"`)."""

    def __init__(self, *, feature_extractor: nn.Module | None = None, **kwargs):
        super().__init__(feature_extractor=feature_extractor, **kwargs)
        for which in self.sets:
            self.add_state(which, default=[], dist_reduce_fx="cat")

    def _dim(self) -> int | None:
        for which in self.sets:
            state = getattr(self, which)
            if len(state):
                return state[0].shape[-1]
        return None

    def _add(self, which: str, features: torch.Tensor) -> None:
        getattr(self, which).append(features)

    def features(self, which: str) -> torch.Tensor:
        """All rows of set `which` seen so far (after a sync: from every process), N×D float64."""
        state = getattr(self, which)
        if isinstance(state, list) and not state:
            raise self._missing(which)
        return dim_zero_cat(state)
