"""Training genrep's own LeNet feature extractor per data set (METHODS.md §0, recipe (ref)):
cross-entropy, Adam lr 1e-3, ExponentialLR 0.95 per epoch, batch 64, on the "train" split;
accuracy on the "test" split. Weights are written atomically as safetensors with a JSON sidecar.
"""

from __future__ import annotations

import datetime
import math
import time

import torch
import torch.nn.functional as F

from genrep import __version__
from genrep.data import BatchIterator, ImageDataset, load_dataset
from genrep.data.transforms import resize
from genrep.errors import DataError
from genrep.metrics.features.lenet import SIZE, LeNet, size_metadata, weights_path
from genrep.runs import write_json

MIN_EPOCHS, MIN_STEPS = 10, 1500
LR, GAMMA, BATCH_SIZE = 1e-3, 0.95, 64


def default_epochs(n_train: int) -> int:
    """At least 10 epochs and at least 1,500 optimiser steps: 10 for MNIST-sized sets (938 steps
    per epoch), 63 for the 1,500 training images of digits (24 steps per epoch)."""
    return max(MIN_EPOCHS, math.ceil(MIN_STEPS / math.ceil(n_train / BATCH_SIZE)))


def _prepare(dataset: str, split: str) -> tuple[ImageDataset, tuple[int, int]]:
    """The split as 28×28 gray images in [0, 1] with labels, and the H×W of its own images; or
    DataError saying why not."""
    data = load_dataset(dataset, split)
    if data.labels is None:
        raise DataError(f"{dataset}: LeNet training needs class labels, and the {split} split has none")
    if data.image_shape[0] != 1:
        raise DataError(f"{dataset}: LeNet takes gray images (1 channel), got {data.image_shape[0]} channels;"
                        " use the inception extractor for RGB data")
    if data.value_range != (0.0, 1.0):
        raise DataError(f"{dataset}: expected images in [0, 1], got {data.value_range}")
    if data.num_classes > 10:
        raise DataError(f"{dataset}: LeNet has a 10-way head, the data set has {data.num_classes} classes")
    return resize(data, SIZE), tuple(data.image_shape[1:])


def accuracy(model: LeNet, data: ImageDataset, *, batch_size: int = 1000) -> float:
    """Top-1 accuracy of `model` on `data` (28×28 images in [0, 1] with labels)."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = data.batch(slice(start, start + batch_size))
            correct += int((model.classify(batch["x"]).argmax(1) == batch["y"]).sum())
    return correct / len(data)


def train_lenet(dataset: str, *, epochs: int | None = None, seed: int = 0, progress: bool = True,
                save: bool = True, threads: int | None = 1) -> tuple[LeNet, float]:
    """Train a LeNet on `load_dataset(dataset, "train")` and return (model in eval mode, test
    accuracy in [0, 1]). With `save`, write `weights_path(dataset)` and its JSON sidecar
    (test_accuracy, epochs, seed, date, seconds, genrep version), which `load_lenet` then finds.
    `epochs=None` takes `default_epochs(len(train))`. `threads`: torch's intra-op CPU threads during
    training (restored afterwards; None keeps the current setting). The default 1 is deliberate: on
    2 shared cores, 2 threads made these tiny batch-64 steps 20-30× slower (3 s -> 100 s for digits)."""
    from genrep.training.checkpoint import save_weights  # genrep.training imports Lightning: load lazily

    (train, size), (test, _) = _prepare(dataset, "train"), _prepare(dataset, "test")
    epochs = default_epochs(len(train)) if epochs is None else epochs
    if epochs < 1:
        raise DataError(f"epochs must be >= 1, got {epochs}")
    torch.manual_seed(seed)
    model = LeNet(name=f"lenet[{dataset}]", input_size=size)  # refuses images of another size
    batches = BatchIterator(train, min(BATCH_SIZE, len(train)), shuffle=True, drop_last=False, seed=seed)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        _fit(model, batches, epochs, dataset, progress)
        seconds = time.perf_counter() - started
        test_accuracy = accuracy(model, test)
    finally:
        torch.set_num_threads(previous_threads)
    if save:
        path = save_weights(weights_path(dataset), model, metadata=size_metadata(size))
        write_json(path.with_suffix(".json"), {
            "dataset": dataset, "test_accuracy": test_accuracy, "epochs": epochs, "seed": seed,
            "image_size": list(size),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "train_seconds": round(seconds, 1), "genrep_version": __version__,
        })
    return model.eval(), test_accuracy


def _fit(model: LeNet, batches: BatchIterator, epochs: int, dataset: str, progress: bool) -> None:
    """The reference recipe: cross-entropy, Adam 1e-3, ExponentialLR 0.95 stepped per epoch."""
    from tqdm.auto import tqdm

    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=GAMMA)
    with tqdm(total=epochs * len(batches), desc=f"LeNet on {dataset}", unit="step", disable=not progress) as bar:
        for epoch in range(epochs):
            model.train()
            for batch in batches.epoch(epoch):
                loss = F.cross_entropy(model.classify(batch["x"]), batch["y"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            scheduler.step()
