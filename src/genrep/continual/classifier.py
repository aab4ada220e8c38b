"""The base classifiers of the continual-learning experiments, chosen by name (`CLASSIFIERS`), and their
training loop.

- "lenetg" (`LeNetG`): the BinPlay reference's classifier (REFERENCE_CODE.md §4.3: the authors'
  `continual_benchmark/models/lenet.py::LeNetG`, the same file as in the lab's `multiband_vae` fork):
  three Conv(k4, s2, p1, no bias) → BatchNorm → LeakyReLU(0.01) → Dropout(0.6) blocks with 64, 128,
  256 maps (side 28 → 14 → 7 → 3, 32 → 16 → 8 → 4: ⌊side/8⌋), flatten, Linear(→ 84) → LeakyReLU →
  Dropout(0.6) → Linear(84 → K). 851,750 parameters for 1×28×28 and 10 classes, 1,004,326 for
  3×32×32. The reference's `--base_dropout_rate 0.4` flag is ignored by it: dropout is 0.6.
- "lenet5" (`BaseClassifier`): ours, the thesis text's description (§8.4: "based on the LeNet
  architecture with 3 convolutional layers followed by two fully connected ones. We use batch
  normalisation and dropout") read as LeNet-5 (LeCun et al. 1998): C1 6 maps 5×5, pool, C3 16 maps
  5×5, pool, C5 120 maps, F6 84 units, output; ReLU, batch norm after every hidden layer, "same"
  padding in C1/C3 and a C5 kernel covering the whole remaining map (one definition for 8×8, 28×28
  and 32×32 inputs), dropout 0.25 before the output layer. 108,238 parameters for MNIST and about 6×
  cheaper per training step than LeNetG on a CPU (benchmarks/RESULTS.md), which is why the `smoke` and
  `cpu` scales keep it; `paper` uses LeNetG for every method (`experiments/continual.py`).
- "mlp" (`MLPClassifier`): the "solver" of van de Ven & Tolias (2019; their code's `Classifier` with
  `--fc-layers=3 --fc-units=400`): flatten, 784 → 400 → 400 → K with ReLU, no batch norm, no dropout,
  PyTorch's default `nn.Linear` init (theirs: U(±1/√fan_in), the same distribution). 478,410 parameters
  for MNIST and 10 classes. The `--protocol van-de-ven` preset picks it (`experiments/continual.py`).

Training (METHODS.md §4, reference): Adam 2e-3, 15 epochs per task, batch 120, loss = MSE between the
softmax outputs and the (one-hot or soft) targets; `sample_losses` defines both losses and the
distillation temperature of soft replay targets. `fit_classifier` also runs van de Ven & Tolias'
schedule: a fixed number of full batches (`iterations`), the loss restricted to the `active_classes`
output units, and an optimiser the caller keeps across tasks (`optimizer`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from genrep.continual import distributed
from genrep.continual.seeding import full_batches, shuffled_batches
from genrep.errors import CheckpointError, InputError, TrainingDivergedError

LOSSES = ("mse-softmax", "ce")


class _ImageClassifier(nn.Module):
    """images N×C×H×W of `image_shape` → `head(features(x))`, logits N×num_classes; subclasses build both."""

    def _check_arguments(self, image_shape, num_classes: int, width: int, *, min_side: int, **extra) -> tuple:
        """InputError unless image_shape is C×H×W with H, W >= min_side, num_classes >= 2, width >= 1 and every
        `extra` check (name → (value, ok)) holds; sets image_shape / num_classes and returns (C, H, W)."""
        shape = tuple(int(s) for s in image_shape)
        problems = {name: value for name, (value, ok) in extra.items() if not ok}
        if len(shape) != 3 or shape[0] < 1 or min(shape[1:]) < min_side or num_classes < 2 or width < 1 or problems:
            shown = "".join(f", {name}={value}" for name, (value, _) in extra.items())
            raise InputError(f"{type(self).__name__} needs images C×H×W of side >= {min_side}, num_classes >= 2 and "
                             f"width >= 1{' and valid ' + ', '.join(problems) if problems else ''}; got "
                             f"image_shape={tuple(image_shape)}, num_classes={num_classes}, width={width}{shown}")
        self.image_shape, self.num_classes = shape, num_classes
        return shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise InputError(f"{type(self).__name__} expects images N×{'×'.join(map(str, self.image_shape))}, "
                             f"got {tuple(x.shape)}")
        return self.head(self.features(x))


class BaseClassifier(_ImageClassifier):
    """LeNet-5 with batch norm and dropout ("lenet5", ours; see the module docstring); channel counts
    scale with `width`. images N×C×H×W (H, W >= 4) → logits N×num_classes."""

    arch = "lenet5"

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, *, width: int = 1,
                 dropout: float = 0.25):
        super().__init__()
        channels, height, width_px = self._check_arguments(image_shape, num_classes, width, min_side=4,
                                                           dropout=(dropout, 0 <= dropout < 1))
        c1, c3, c5, f6 = 6 * width, 16 * width, 120 * width, 84 * width
        self.features = nn.Sequential(
            nn.Conv2d(channels, c1, 5, padding=2), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c3, 5, padding=2), nn.BatchNorm2d(c3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c3, c5, (height // 4, width_px // 4)), nn.BatchNorm2d(c5), nn.ReLU(), nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Linear(c5, f6), nn.BatchNorm1d(f6), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(f6, num_classes))


class LeNetG(_ImageClassifier):
    """The BinPlay reference classifier ("lenetg", see the module docstring): `width` × (64, 128, 256)
    maps, dropout `dropout` (reference 0.6) after every block and after the 84-unit layer, LeakyReLU with
    slope `negative_slope` (F.leaky_relu's default, as the reference). images N×C×H×W (H, W >= 8) →
    logits N×num_classes; the last map is ⌊H/8⌋×⌊W/8⌋ (3×3 for 28 px, 4×4 for 32 px)."""

    arch = "lenetg"

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, *, width: int = 1,
                 dropout: float = 0.6, negative_slope: float = 0.01):
        super().__init__()
        channels, height, width_px = self._check_arguments(image_shape, num_classes, width, min_side=8,
                                                           dropout=(dropout, 0 <= dropout < 1))
        maps = [channels, 64 * width, 128 * width, 256 * width]
        blocks = []
        for c_in, c_out in itertools.pairwise(maps):  # each halves the side: ⌊(s + 2 − 4)/2⌋ + 1 = ⌊s/2⌋
            blocks += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.LeakyReLU(negative_slope), nn.Dropout(dropout)]
        self.features = nn.Sequential(*blocks, nn.Flatten())
        flat = maps[-1] * (height // 8) * (width_px // 8)
        self.head = nn.Sequential(nn.Linear(flat, 84), nn.LeakyReLU(negative_slope), nn.Dropout(dropout),
                                  nn.Linear(84, num_classes))


class MLPClassifier(_ImageClassifier):
    """van de Ven & Tolias' MLP solver ("mlp", see the module docstring): flatten, D → 400·`width` →
    400·`width` → num_classes, ReLU, no batch norm, no dropout. images N×C×H×W → logits N×num_classes."""

    arch = "mlp"

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, *, width: int = 1, hidden: int = 400):
        super().__init__()
        self._check_arguments(image_shape, num_classes, width, min_side=1, hidden=(hidden, hidden >= 1))
        units, inputs = hidden * width, math.prod(self.image_shape)
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(inputs, units), nn.ReLU(), nn.Linear(units, units),
                                      nn.ReLU())
        self.head = nn.Linear(units, num_classes)


CLASSIFIERS: dict[str, type[nn.Module]] = {"lenet5": BaseClassifier, "lenetg": LeNetG,
                                           "mlp": MLPClassifier}  # the one place naming them
LEGACY_CLASSIFIER = "lenet5"  # the classifier of learner states saved before they recorded one


def check_classifier_name(owner: str, stored: str, current: str) -> None:
    """CheckpointError unless a saved learner state's classifier `stored` is this learner's `current` one."""
    if stored != current:
        raise CheckpointError(f"{owner}: the saved state holds a {stored!r} classifier, these settings build "
                              f"{current!r}; resume with --set classifier={stored} or start a new run")


def build_classifier(name: str, image_shape: tuple[int, int, int], num_classes: int, *, width: int = 1) -> nn.Module:
    """The base classifier `name` (a key of `CLASSIFIERS`) for images of `image_shape` and `num_classes`
    classes, with its own default dropout; the module's `arch` attribute is `name`."""
    if name not in CLASSIFIERS:
        raise InputError(f"unknown classifier {name!r}; valid: {', '.join(CLASSIFIERS)}")
    return CLASSIFIERS[name](image_shape, num_classes, width=width)


def sample_losses(logits: torch.Tensor, targets: torch.Tensor, loss: str = "mse-softmax", *,
                  temperature: float = 1.0) -> torch.Tensor:
    """Per-sample loss (N,) of logits N×K against target probabilities N×K (one-hot labels or a teacher's
    softmax already taken at `temperature`).

    "ce": T²·(−Σ_k y_k log softmax(z/T)_k), the distillation loss of Hinton et al. (2015) as van de Ven &
    Tolias use it; its gradient T·(softmax(z/T) − y) equals T² × the gradient of KL(y ‖ softmax(z/T)).
    "mse-softmax": T²·mean_k (softmax(z/T)_k − y_k)² (BinPlay's loss; with T the student's softmax is
    taken at the teacher's temperature, and T² keeps the gradient's scale for large T as it does for "ce":
    both gradients shrink as 1/T² when the logits are small against T). T = 1: the plain losses.
    """
    if loss not in LOSSES:
        raise InputError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
    if not temperature > 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    scaled = logits / temperature if temperature != 1 else logits
    if loss == "mse-softmax":
        per_sample = (scaled.softmax(1) - targets).pow(2).mean(1)
    else:
        per_sample = -(targets * scaled.log_softmax(1)).sum(1)
    return per_sample * temperature**2 if temperature != 1 else per_sample


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


def _passes(n: int, batch_size: int, epochs: int, iterations: int | None,
            generator: torch.Generator | None) -> Iterator[list[torch.Tensor]]:
    """The index batches of each pass over n rows: `epochs` passes of `shuffled_batches`, or (`iterations`
    set) `full_batches` cut into passes of ⌊n / batch_size⌋ batches (the last pass may be shorter)."""
    if iterations is None:
        for _ in range(epochs):
            yield shuffled_batches(n, batch_size, generator)
        return
    per_pass, stream = n // batch_size, full_batches(n, batch_size, iterations, generator)
    for start in range(0, iterations, per_pass):
        yield [next(stream) for _ in range(min(per_pass, iterations - start))]


def _active_columns(active_classes: Sequence[int] | None, num_classes: int) -> torch.Tensor | None:
    """The sorted output units of `active_classes` as an index tensor (None: all units); InputError if one is
    not a class of the model."""
    if active_classes is None:
        return None
    columns = sorted({int(c) for c in active_classes})
    if not columns or columns[0] < 0 or columns[-1] >= num_classes:
        raise InputError(f"fit_classifier: active_classes must be classes in [0, {num_classes}), got "
                         f"{list(active_classes)}")
    return torch.tensor(columns)


def _restrict(logits: torch.Tensor, target: torch.Tensor, columns: torch.Tensor | None):
    """(logits, targets) cut to the active output units; InputError if a target puts mass elsewhere."""
    if columns is None:
        return logits, target
    columns = columns.to(logits.device)
    kept = target.index_select(1, columns)
    if (target.sum(1) - kept.sum(1)).abs().max() > 1e-6:
        raise InputError(f"fit_classifier: targets put probability on classes outside active_classes "
                         f"{columns.tolist()}")
    return logits.index_select(1, columns), kept


def fit_classifier(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, epochs: int = 15,
                   batch_size: int = 120, lr: float = 2e-3, loss: str = "mse-softmax",
                   weights: torch.Tensor | None = None, generator: torch.Generator | None = None,
                   replay: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None,
                   replay_ratio: float | None = 0.5, replay_temperature: float = 1.0,
                   iterations: int | None = None, active_classes: Sequence[int] | None = None,
                   optimizer: torch.optim.Optimizer | None = None, progress: bool = False) -> list[float]:
    """Train `model` (images → logits N×K, K = `model.num_classes`) with a fresh Adam(`lr`) for `epochs`
    passes in shuffled mini-batches (shuffling drawn from `generator`).

    iterations: train exactly this many mini-batches of `batch_size` instead (`epochs` is ignored): full
    batches only, the rows reshuffled whenever a pass runs out (`seeding.full_batches`; van de Ven &
    Tolias' `DataLoader(shuffle=True, drop_last=True)` remade when exhausted); needs n >= batch_size.
    active_classes: the output units the loss sees (class-IL "active classes" of van de Ven & Tolias: all
    classes seen so far, the current task's included): the logits and targets of new and replayed rows
    alike are cut to these columns, so the other units get no gradient; targets must put no mass outside
    them. None: all K units. optimizer: a caller-kept optimiser over `model`'s parameters, stepped
    instead of a fresh Adam(`lr`) (its state carries over between calls; `lr` is then unused).

    targets: int64 labels (N,) or soft targets N×K (rows are probability vectors, e.g. a frozen
    teacher's softmax, Hinton et al. 2015). loss "mse-softmax": mean_k (softmax(f(x))_k − y_k)²
    (BinPlay reference); "ce": −Σ_k y_k log softmax(f(x))_k (`sample_losses`). weights (N,): per-sample
    loss factors; a batch's loss is mean_i w_i·ℓ_i (weights of 1 = unweighted).
    replay(n): called for every batch of n new samples, returns (images, targets) of past samples (labels
    or N×K probabilities; may be empty) that join the batch with loss (1 − ρ)·ℓ_new + ρ·ℓ_replay,
    ρ = `replay_ratio` (Shin et al. 2017, Eq. 1 with r = 1 − ρ), or the plain mean over the joined batch
    for ρ = None (experience replay, Chaudhry et al. 2019). `replay_temperature` T: the replayed samples'
    loss is `sample_losses(..., temperature=T)` (student softmax at T, × T²; their targets must be the
    teacher's softmax at the same T), the new samples' stays at T = 1. Returns the mean loss of each epoch
    (with `iterations`: of each pass of ⌊n / batch_size⌋ batches, the last possibly shorter).
    """
    if loss not in LOSSES:
        raise InputError(f"fit_classifier: loss must be one of {', '.join(LOSSES)}; got {loss!r}")
    if images.ndim != 4 or not images.is_floating_point():
        raise InputError(f"fit_classifier: images must be a float tensor N×C×H×W, got {tuple(images.shape)}")
    n = len(images)
    if n < 2 or epochs < 0 or batch_size < 2:
        raise InputError(f"fit_classifier needs >= 2 images, epochs >= 0 and batch_size >= 2; got {n} images, "
                         f"epochs={epochs}, batch_size={batch_size}")
    if iterations is not None and (iterations < 0 or n < batch_size):
        raise InputError(f"fit_classifier: iterations must be >= 0 and need >= batch_size images (full batches "
                         f"only); got iterations={iterations}, {n} images, batch_size={batch_size}")
    y = _target_matrix(targets, n, model.num_classes)
    if weights is not None and (weights.ndim != 1 or len(weights) != n):
        raise InputError(f"fit_classifier: weights must have shape ({n},), got {tuple(weights.shape)}")
    if replay_ratio is not None and not 0 <= replay_ratio <= 1:
        raise InputError(f"fit_classifier: replay_ratio must lie in [0, 1], got {replay_ratio}")
    if not replay_temperature > 0:
        raise InputError(f"fit_classifier: replay_temperature must be > 0, got {replay_temperature}")
    device = next(model.parameters()).device
    columns = _active_columns(active_classes, model.num_classes)
    optimizer = optimizer if optimizer is not None else torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    history = []
    passes = _passes(n, batch_size, epochs, iterations, generator)
    total_passes = epochs if iterations is None else -(-iterations // max(n // batch_size, 1))
    split = distributed.world()[1] > 1  # data parallel: this rank's rows of every batch (genrep.continual.distributed)
    noise_base = int(torch.randint(1 << 62, ())) if split else 0  # the same draw on every rank
    step = 0
    for epoch, batches in tqdm(enumerate(passes), total=total_passes, desc="classifier", unit="epoch",
                               disable=not (progress and distributed.is_main()), leave=False):
        total = 0.0
        for index in batches:
            x, target = images[index].to(device), y[index].to(device)
            past_x, past_y = replay(len(index)) if replay is not None else (x[:0], target[:0])
            if len(past_x):
                past_y = _target_matrix(past_y, len(past_x), model.num_classes).to(device)
                x, target = torch.cat([x, past_x.to(device)]), torch.cat([target, past_y])
            w = None if weights is None else weights[index].to(device)
            if split:
                rows = torch.cat([distributed.rows_of_rank(0, len(index)), distributed.rows_of_rank(len(index), len(x))])
                with distributed.rank_noise(noise_base, step):
                    batch_loss = _batch_loss(model, x[rows], target[rows], int((rows < len(index)).sum()), columns, loss,
                                             replay_temperature, None if w is None else w[rows[rows < len(index)]],
                                             replay_ratio, counts=(len(index), len(x) - len(index)))
                shown = distributed.sum_over_ranks(batch_loss)
            else:
                batch_loss = shown = _batch_loss(model, x, target, len(index), columns, loss, replay_temperature, w,
                                                 replay_ratio)
            if not math.isfinite(shown.item()):
                raise TrainingDivergedError(f"fit_classifier: loss became {shown.item()} in epoch {epoch}; "
                                            f"lower lr (now {lr})")
            optimizer.zero_grad(set_to_none=True)
            batch_loss.backward()
            if split:
                distributed.all_reduce_gradients(model)
            optimizer.step()
            total += shown.item() * len(index)
            step += 1
        history.append(total / sum(len(index) for index in batches))
    if split:
        distributed.broadcast_buffers(model)
    return history


def _batch_loss(model: nn.Module, x: torch.Tensor, target: torch.Tensor, k: int, columns, loss: str,
                temperature: float, weights: torch.Tensor | None, ratio: float | None, *,
                counts: tuple[int, int] | None = None) -> torch.Tensor:
    """The loss of one batch: rows [0, k) new (weighted by `weights`), the rest replayed (at
    `temperature`); mean over all rows when nothing is replayed or `ratio` is None, else
    (1 − ρ)·mean(new) + ρ·mean(replayed). With `counts` = (new, replayed) rows of the full batch
    (data parallel, `x` being one rank's rows) the means become sums over these rows divided by
    the full counts: this rank's share, the ranks' shares adding up to the full batch's loss."""
    logits, target = _restrict(model(x), target, columns)
    if temperature == 1 or len(x) == k:
        per_sample = sample_losses(logits, target, loss)
    else:  # the replayed rows at the distillation temperature
        per_sample = torch.cat([sample_losses(logits[:k], target[:k], loss),
                                sample_losses(logits[k:], target[k:], loss, temperature=temperature)])
    if weights is not None:
        per_sample = torch.cat([per_sample[:k] * weights, per_sample[k:]])
    new, past = per_sample[:k], per_sample[k:]
    if counts is None:
        if not len(past) or ratio is None:
            return per_sample.mean()
        return (1 - ratio) * new.mean() + ratio * past.mean()
    n_new, n_past = counts
    if not n_past or ratio is None:
        return per_sample.sum() / (n_new + n_past)
    return (1 - ratio) * new.sum() / n_new + ratio * past.sum() / n_past


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
