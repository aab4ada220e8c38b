"""The base classifier of the continual-learning experiments and its training loop.

Thesis §8.4 (BinPlay): "Our classifier is based on the LeNet architecture with 3 convolutional layers
followed by two fully connected ones. We use batch normalisation and dropout." — i.e. LeNet-5
(LeCun et al. 1998): C1 6 maps 5×5, pool, C3 16 maps 5×5, pool, C5 120 maps, F6 84 units, output.
The released code is not available here, so the remaining details are ours: ReLU activations, batch
norm after every hidden layer, "same" padding in C1/C3 (LeNet pads 28×28 MNIST to 32×32 for the same
reason) and a C5 kernel that covers the whole remaining map (as LeNet's C5 does), which makes one
definition serve 8×8, 28×28 and 32×32 inputs (for CIFAR-10 the thesis "only adjusts the LeNet
architecture to the image size"), dropout 0.25 before the output layer.

Training (METHODS.md §4, reference): Adam 2e-3, 15 epochs per task, batch 120, loss = MSE between the
softmax outputs and the (one-hot or soft) targets.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from genrep.continual.seeding import shuffled_batches
from genrep.errors import InputError, TrainingDivergedError

LOSSES = ("mse-softmax", "ce")


class BaseClassifier(nn.Module):
    """LeNet-5 with batch norm and dropout (see the module docstring); channel counts scale with
    `width`. images N×C×H×W (H, W >= 4) → logits N×num_classes."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, *, width: int = 1,
                 dropout: float = 0.25):
        super().__init__()
        channels, height, width_px = (int(s) for s in image_shape)
        if min(height, width_px) < 4 or num_classes < 2 or width < 1 or not 0 <= dropout < 1:
            raise InputError(f"BaseClassifier needs images of side >= 4, num_classes >= 2, width >= 1 and "
                             f"0 <= dropout < 1; got image_shape={tuple(image_shape)}, num_classes={num_classes}, "
                             f"width={width}, dropout={dropout}")
        self.image_shape = (channels, height, width_px)
        self.num_classes = num_classes
        c1, c3, c5, f6 = 6 * width, 16 * width, 120 * width, 84 * width
        self.features = nn.Sequential(
            nn.Conv2d(channels, c1, 5, padding=2), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c3, 5, padding=2), nn.BatchNorm2d(c3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c3, c5, (height // 4, width_px // 4)), nn.BatchNorm2d(c5), nn.ReLU(), nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Linear(c5, f6), nn.BatchNorm1d(f6), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(f6, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise InputError(f"BaseClassifier expects images N×{'×'.join(map(str, self.image_shape))}, "
                             f"got {tuple(x.shape)}")
        return self.head(self.features(x))


def _target_matrix(targets: torch.Tensor, n: int, num_classes: int) -> torch.Tensor:
    """int64 labels (N,) → one-hot N×K; float N×K probabilities pass through (checked)."""
    if targets.ndim == 1 and not targets.is_floating_point():
        if len(targets) != n:
            raise InputError(f"fit_classifier: {len(targets)} labels for {n} images")
        if len(targets) and (targets.min() < 0 or targets.max() >= num_classes):
            raise InputError(f"fit_classifier: labels must lie in [0, {num_classes}), got "
                             f"[{int(targets.min())}, {int(targets.max())}]")
        return F.one_hot(targets.long(), num_classes).float()
    if targets.ndim == 2 and targets.is_floating_point() and tuple(targets.shape) == (n, num_classes):
        return targets.float()
    raise InputError(f"fit_classifier: targets must be int64 labels ({n},) or float probabilities ({n}, "
                     f"{num_classes}); got {tuple(targets.shape)} {targets.dtype}")


def fit_classifier(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, epochs: int = 15,
                   batch_size: int = 120, lr: float = 2e-3, loss: str = "mse-softmax",
                   weights: torch.Tensor | None = None, generator: torch.Generator | None = None,
                   replay: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None,
                   replay_ratio: float | None = 0.5, progress: bool = False) -> list[float]:
    """Train `model` (images → logits N×K, K = `model.num_classes`) with a fresh Adam(`lr`) for `epochs`
    passes in shuffled mini-batches (shuffling drawn from `generator`).

    targets: int64 labels (N,) or soft targets N×K (rows are probability vectors, e.g. a frozen
    teacher's softmax, Hinton et al. 2015). loss "mse-softmax": mean_k (softmax(f(x))_k − y_k)²
    (BinPlay reference); "ce": −Σ_k y_k log softmax(f(x))_k. weights (N,): per-sample loss factors;
    a batch's loss is mean_i w_i·ℓ_i (weights of 1 = unweighted).
    replay(n): called for every batch of n new samples, returns (images, targets) of past samples (labels
    or N×K probabilities; may be empty) that join the batch with loss (1 − ρ)·ℓ_new + ρ·ℓ_replay,
    ρ = `replay_ratio` (Shin et al. 2017, Eq. 1 with r = 1 − ρ), or the plain mean over the joined batch
    for ρ = None (experience replay, Chaudhry et al. 2019). Returns the mean loss of each epoch.
    """
    if loss not in LOSSES:
        raise InputError(f"fit_classifier: loss must be one of {', '.join(LOSSES)}; got {loss!r}")
    if images.ndim != 4 or not images.is_floating_point():
        raise InputError(f"fit_classifier: images must be a float tensor N×C×H×W, got {tuple(images.shape)}")
    n = len(images)
    if n < 2 or epochs < 0 or batch_size < 2:
        raise InputError(f"fit_classifier needs >= 2 images, epochs >= 0 and batch_size >= 2; got {n} images, "
                         f"epochs={epochs}, batch_size={batch_size}")
    y = _target_matrix(targets, n, model.num_classes)
    if weights is not None and (weights.ndim != 1 or len(weights) != n):
        raise InputError(f"fit_classifier: weights must have shape ({n},), got {tuple(weights.shape)}")
    if replay_ratio is not None and not 0 <= replay_ratio <= 1:
        raise InputError(f"fit_classifier: replay_ratio must lie in [0, 1], got {replay_ratio}")
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    history = []
    for epoch in tqdm(range(epochs), desc="classifier", unit="epoch", disable=not progress, leave=False):
        total = 0.0
        for index in shuffled_batches(n, batch_size, generator):
            x, target = images[index].to(device), y[index].to(device)
            past_x, past_y = replay(len(index)) if replay is not None else (x[:0], target[:0])
            if len(past_x):
                past_y = _target_matrix(past_y, len(past_x), model.num_classes).to(device)
                x, target = torch.cat([x, past_x.to(device)]), torch.cat([target, past_y])
            logits = model(x)
            if loss == "mse-softmax":
                per_sample = (logits.softmax(1) - target).pow(2).mean(1)
            else:
                per_sample = -(target * logits.log_softmax(1)).sum(1)
            if weights is not None:
                per_sample = torch.cat([per_sample[:len(index)] * weights[index].to(device), per_sample[len(index):]])
            new, past = per_sample[:len(index)], per_sample[len(index):]
            if not len(past) or replay_ratio is None:
                batch_loss = per_sample.mean()
            else:
                batch_loss = (1 - replay_ratio) * new.mean() + replay_ratio * past.mean()
            if not math.isfinite(batch_loss.item()):
                raise TrainingDivergedError(f"fit_classifier: loss became {batch_loss.item()} in epoch {epoch}; "
                                            f"lower lr (now {lr})")
            optimizer.zero_grad(set_to_none=True)
            batch_loss.backward()
            optimizer.step()
            total += batch_loss.item() * len(index)
        history.append(total / n)
    return history


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits of `images` in eval mode (batch norm running statistics, no dropout), on images' device;
    the model's training mode is restored afterwards."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = [model(chunk.to(device)).to(images.device) for chunk in images.split(batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, model.num_classes, device=images.device)
