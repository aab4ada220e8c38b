"""The feature-extractor contract shared by LeNet, Inception and user networks.

A `FeatureExtractor` is an `nn.Module` whose `forward(images)` maps a batch N×C×H×W of float
images in `input_range` (genrep's convention: [0, 1]) to N×`dim` float features. It checks its
input first, so images in [-1, 1] (the known pitfall, METHODS.md §0) fail loudly instead of
silently changing FID. `features()` runs it in batches under `torch.no_grad()` with a progress bar.
`spatial()` (sFID) and `logits()` (IS) are optional; the default raises an InputError naming the
extractor and what it lacks.
"""

from __future__ import annotations

import torch
from torch import nn

from genrep.errors import InputError
from genrep.utils.checks import check_images

KINDS = ("features", "spatial", "logits")


class FeatureExtractor(nn.Module):
    """Base class: subclasses set `name`, `dim`, `channels` (allowed channel counts), optionally
    `input_size` (the H×W the network was trained on; None: any size) and implement
    `extract(images)` on checked images."""

    name: str = "features"
    dim: int = 0
    input_range: tuple[float, float] = (0.0, 1.0)
    channels: tuple[int, ...] = (1, 3)
    input_size: tuple[int, int] | None = None

    def check(self, images: torch.Tensor) -> None:
        """Raise InputError unless `images` is a finite float N×C×H×W batch in `input_range` with
        one of the allowed channel counts and, when `input_size` is set, of that H×W."""
        check_images(images, value_range=self.input_range, name=f"{self.name} input images")
        if images.shape[1] not in self.channels:
            allowed = " or ".join(map(str, self.channels))
            raise InputError(f"{self.name} takes images with {allowed} channels, got {tuple(images.shape)}")
        if self.input_size is not None and tuple(images.shape[-2:]) != tuple(self.input_size):
            trained, given = "×".join(map(str, self.input_size)), "×".join(map(str, images.shape[-2:]))
            raise InputError(f"{self.name} was trained on {trained} images but got {given} images: its features"
                             f" would mean nothing; use a feature extractor trained on {given} images of this"
                             " data (e.g. `genrep features train --dataset NAME`) or the inception extractor")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images N×C×H×W in `input_range` -> features N×dim (float32)."""
        self.check(images)
        return self.extract(images.to(self.device, torch.float32))

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        tensor = next(iter(self.parameters()), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    def spatial(self, images: torch.Tensor) -> torch.Tensor:
        """Spatial features for sFID, N×D; only some extractors provide them."""
        raise InputError(f"the {self.name} feature extractor provides no spatial features (sFID needs the"
                         " Inception extractor: get_extractor('inception'))")

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits for the Inception Score, N×K; only some extractors provide them."""
        raise InputError(f"the {self.name} feature extractor provides no class logits (the Inception Score"
                         " needs an extractor with a classifier head)")

    def outputs(self, images: torch.Tensor, kinds: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Several kinds ("features", "spatial", "logits") of one checked batch; subclasses whose
        kinds share a trunk override this to run it once."""
        methods = {"features": self.forward, "spatial": self.spatial, "logits": self.logits}
        return {kind: methods[kind](images) for kind in kinds}

    def features(self, images: torch.Tensor, *, batch_size: int = 50, progress: bool = True,
                 kind: str | tuple[str, ...] = "features") -> torch.Tensor | dict[str, torch.Tensor]:
        """Batched extraction without gradients, in eval mode. images N×C×H×W in `input_range` ->
        CPU float32 N×dim. `kind` may be "spatial" or "logits" instead, or a tuple of kinds, which
        returns a dict kind -> N×D computed in one pass (e.g. ("features", "spatial") for FID+sFID)."""
        from tqdm.auto import tqdm

        kinds = (kind,) if isinstance(kind, str) else tuple(kind)
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise InputError(f"unknown feature kind {unknown or kind!r}; valid: {', '.join(KINDS)}")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.check(images)
        if not len(images):
            raise InputError(f"{self.name}: no images to extract features from")
        was_training = self.training
        self.eval()
        chunks: dict[str, list[torch.Tensor]] = {k: [] for k in kinds}
        try:
            with torch.no_grad(), tqdm(total=len(images), desc=f"{self.name} {'+'.join(kinds)}", unit="img",
                                       disable=not progress) as bar:
                for start in range(0, len(images), batch_size):
                    batch = images[start:start + batch_size]
                    for k, out in self.outputs(batch, kinds).items():
                        chunks[k].append(out.float().cpu())
                    bar.update(len(batch))
        finally:
            self.train(was_training)
        result = {k: torch.cat(parts) for k, parts in chunks.items()}
        return result[kind] if isinstance(kind, str) else result


class WrappedModule(FeatureExtractor):
    """Any `nn.Module` mapping N×C×H×W images in `input_range` to N×dim (or N×dim×1×1...)
    features, under the extractor contract (input checks, batched `features()`)."""

    def __init__(self, module: nn.Module, name: str, dim: int, input_range: tuple[float, float] = (0.0, 1.0),
                 channels: tuple[int, ...] = (1, 3), input_size: tuple[int, int] | None = None):
        super().__init__()
        lo, hi = (float(v) for v in input_range)
        if not hi > lo:
            raise InputError(f"input_range must have lo < hi, got {input_range}")
        if dim < 1:
            raise InputError(f"dim must be >= 1, got {dim}")
        self.module, self.name, self.dim = module, name, int(dim)
        self.input_range, self.channels = (lo, hi), tuple(channels)
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        out = self.module(images).flatten(1)
        if out.shape[1] != self.dim:
            raise InputError(f"{self.name} returned {out.shape[1]} features per image, but dim={self.dim}")
        return out


def wrap_module(module: nn.Module, name: str, dim: int, input_range: tuple[float, float] = (0.0, 1.0), *,
                channels: tuple[int, ...] = (1, 3), input_size: tuple[int, int] | None = None) -> WrappedModule:
    """Use your own network as a feature extractor: `module(images)` must map N×C×H×W images in
    `input_range` (with C in `channels`, and H×W = `input_size` when given) to N×`dim` features
    (trailing 1×1 dims are flattened). Example: `wrap_module(my_encoder, "encoder", 64)`. The
    module is put in eval mode."""
    return WrappedModule(module, name, dim, input_range, channels, input_size).eval()
