"""A classifier head on the pooled UNet representation z_t (thesis ch. 6.4–6.5), shared by the
joint diffusion model and the stand-alone / noisy UNet-encoder classifiers.

`ClassifierHead` g: Dropout(p) → BN(F) → Linear(F → F/2) → LeakyReLU(0.01) → Dropout(p) → BN(F/2) →
Linear(F/2 → K) (METHODS.md §3, the reference `Classifier`). `PooledClassifier` is the mixin that
feeds it: z = `UNet.pool_features(h, skips)` of `unet.encode(x_t, t)` (+ raw t with `append_t`),
and checks targets (int64 labels, −1 = unlabelled; or {0,1} attributes for a multi-label head).
A class using it sets `unet`, `head`, `append_t`, `head_classes`, `num_attributes`, `multi_label`
and optionally `augment` (a module applied to classifier inputs in training).
`LabelledBuffer` is the semi-supervised labelled buffer (App. 6.8.1).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from genrep.errors import InputError
from genrep.models.ddgm import to_model_range


class ClassifierHead(nn.Module):
    """g: z N×F → logits N×K: Dropout → BN → Linear(F→F/2) → LeakyReLU(0.01) → Dropout → BN → Linear."""

    def __init__(self, in_features: int, num_outputs: int, *, dropout: float = 0.7):
        super().__init__()
        hidden = max(in_features // 2, 1)
        self.net = nn.Sequential(nn.Dropout(dropout), nn.BatchNorm1d(in_features), nn.Linear(in_features, hidden),
                                 nn.LeakyReLU(0.01), nn.Dropout(dropout), nn.BatchNorm1d(hidden),
                                 nn.Linear(hidden, num_outputs))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class LabelledBuffer(nn.Module):
    """The semi-supervised labelled buffer (App. 6.8.1): `push(x, y)` appends labelled images and
    returns exactly `capacity` of them (oldest first) once that many are held, else None; the rest
    stay for the next push. The contents are buffers, so checkpoints and --resume keep them."""

    def __init__(self, capacity: int, image_shape, target_shape=(), target_dtype=torch.int64):
        super().__init__()
        self.capacity = int(capacity)
        self.register_buffer("x", torch.zeros(self.capacity, *image_shape))
        self.register_buffer("y", torch.zeros(self.capacity, *target_shape, dtype=target_dtype))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def push(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if len(x) > self.capacity:  # at once, not only when the backlog has grown past the capacity
            raise InputError(f"a batch of {len(x)} labelled images overflows the labelled buffer of {self.capacity};"
                             " set model.classifier.buffer_size >= the batch size")
        held = int(self.count)
        all_x = torch.cat([self.x[:held], x.detach().to(self.x.dtype)])
        all_y = torch.cat([self.y[:held], y.detach().to(self.y.dtype)])
        released = None
        if len(all_x) >= self.capacity:
            released = all_x[: self.capacity], all_y[: self.capacity]
            all_x, all_y = all_x[self.capacity:], all_y[self.capacity:]
        if len(all_x) > self.capacity:
            raise InputError(f"a batch of {len(x)} labelled images overflows the labelled buffer of {self.capacity};"
                             " set model.classifier.buffer_size >= the batch size")
        with torch.no_grad():
            self.x[: len(all_x)] = all_x
            self.y[: len(all_y)] = all_y
            self.count.fill_(len(all_x))
        return released


class PooledClassifier:
    """Classification through the pooled UNet representation (module docstring)."""

    # ----------------------------------------------------------------------- representations
    def head_input(self, h: torch.Tensor, skips, t: torch.Tensor) -> torch.Tensor:
        """z fed to the head: pooled (h, skips) N×F, plus raw t as one more column with `append_t`."""
        z = self.unet.pool_features(h, skips)
        if self.append_t:
            z = torch.cat([z, t.to(z.dtype).reshape(-1, 1)], dim=1)
        return z

    def classify_features(self, h: torch.Tensor, skips, t: torch.Tensor) -> torch.Tensor:
        """g(Z_t): logits N×K (or N×A) from the encoder tensors of x_t at timesteps t (N,)."""
        return self.head(self.head_input(h, skips, t))

    def representation(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The head's input z for model-range images x_t (N×C×H×W in [-1, 1]) at timesteps t (N,)."""
        h, skips = self.unet.encode(x_t, t)
        return self.head_input(h, skips, self._timesteps(t, x_t))

    def _timesteps(self, t, x: torch.Tensor) -> torch.Tensor:
        if isinstance(t, int):
            t = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        return t

    def logits_model_range(self, x_t: torch.Tensor, t) -> torch.Tensor:
        """Logits of g(e(x_t, t)) for x_t in [-1, 1]; t an int or (N,) timesteps."""
        t = self._timesteps(t, x_t)
        h, skips = self.unet.encode(x_t, t)
        return self.classify_features(h, skips, t)

    def classify(self, x: torch.Tensor, t: int = 0) -> torch.Tensor:
        """Logits for images x (N×C×H×W in `value_range`), encoded as they are at timestep t (the
        thesis' classifier uses the clean x_0 at t = 0). Uses the current train/eval mode."""
        x = self.check_batch({"x": x})
        return self.logits_model_range(to_model_range(x, self.value_range), t)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
        """Predicted labels (N,) int64 (or attributes N×A in {0, 1}) in eval mode, in batches."""
        with self.evaluating():
            logits = torch.cat([self.classify(x[i:i + batch_size].to(self.device)) for i in range(0, len(x), batch_size)])
        return (logits > 0).long() if self.multi_label else logits.argmax(1)

    @contextlib.contextmanager
    def evaluating(self):
        """Eval mode (BatchNorm running statistics, no dropout) for the block, then the mode before."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    # ----------------------------------------------------------------------- targets
    def targets(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(targets, labelled mask (N,) bool) of a batch: labels y ≥ 0 for a single-label head
        (−1 = unlabelled), attributes c in {0, 1} for a multi-label head (all labelled)."""
        n = batch["x"].shape[0]
        if self.multi_label:
            c = batch.get("c")
            if c is None or c.ndim != 2 or c.shape[1] != self.num_attributes:
                got = "none" if c is None else tuple(c.shape)
                raise InputError(f"this joint model has a multi-label head over {self.num_attributes} attributes: the"
                                 f" batch needs attributes 'c' of shape ({n}, {self.num_attributes}), got {got}")
            if not bool(((c == 0) | (c == 1)).all()):
                raise InputError("multi-label targets must be 0 or 1 (binary attributes)")
            return c.float(), torch.ones(n, dtype=torch.bool, device=c.device)
        y = batch.get("y")
        if y is None:
            raise InputError(f"a joint diffusion model with {self.head_classes} classes needs labels 'y' in the batch"
                             " (−1 marks an unlabelled image)")
        if y.is_floating_point() or y.ndim != 1:
            raise InputError(f"a multi-label target {tuple(y.shape)} was passed to a single-label head with"
                             f" {self.head_classes} classes: give int64 labels (N,), or train on attributes"
                             " (data with conditions 'c') for a multi-label head")
        if len(y) and (int(y.max()) >= self.head_classes or int(y.min()) < -1):
            raise InputError(f"labels must lie in [0, {self.head_classes - 1}] (−1 = unlabelled), got"
                             f" [{int(y.min())}, {int(y.max())}]")
        return y, y >= 0

    def check_target(self, cond: torch.Tensor, n: int) -> torch.Tensor:
        """Conditional-sampling targets: int64 classes (n,) in the head's range, or {0,1} attributes n×A."""
        if self.multi_label:
            if not isinstance(cond, torch.Tensor) or tuple(cond.shape) != (n, self.num_attributes):
                raise InputError(f"targets of this multi-label head must be {n}×{self.num_attributes} attributes")
            return cond.to(self.device, torch.float32)
        if not isinstance(cond, torch.Tensor) or cond.shape != (n,) or cond.is_floating_point():
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise InputError(f"cond must be int64 class labels of shape ({n},), got {got}")
        if n and (int(cond.min()) < 0 or int(cond.max()) >= self.head_classes):
            raise InputError(f"class ids must lie in [0, {self.head_classes - 1}] (the head's classes), got"
                             f" [{int(cond.min())}, {int(cond.max())}]")
        return cond.to(self.device, torch.long)

    def class_loss(self, x0: torch.Tensor, target: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """(mean CE (or BCE) of g(e(aug(x))) at timesteps t (default 0), logits) for model-range images."""
        x = self.augment(x0) if getattr(self, "augment", None) is not None else x0
        t = torch.zeros(len(x), dtype=torch.long, device=x.device) if t is None else t
        logits = self.logits_model_range(x, t)
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits, target), logits
        return F.cross_entropy(logits, target), logits
