"""The LeNet feature extractor of METHODS.md §0, trained by genrep per data set.

Architecture (exactly the reference): Conv(1→6, k5) - ReLU - MaxPool2 - Conv(6→16, k5) - ReLU -
MaxPool2 - FC(256→120) - ReLU - FC(120→84) - ReLU - FC(84→10). Features are the FC(120→84)
output *before* its ReLU (84-d); `logits()` is the 10-way FC(84→10) output.

Input: N×1×H×W gray images in [0, 1]. 28×28 is used as is; any other size (8×8 digits, 32×32)
is resized to 28×28 bilinearly (antialiased when shrinking, as `genrep.data.transforms.resize`),
both in training and in extraction, so the network always sees 28×28. A LeNet trained on one data
set knows the H×W of its training images (`input_size`, e.g. 8×8 for digits) and refuses images
of another size: a digits LeNet fed 28×28 MNIST would return numbers that mean nothing.

Weights live in `$GENREP_DATA/features/lenet_<dataset>.safetensors` (default `~/.cache/genrep`;
the training image size in its metadata, key `input_size`, e.g. "8x8") with a JSON sidecar
`lenet_<dataset>.json` (test accuracy, epochs, seed, date, image_size); they are made by
`genrep features train --dataset <dataset>` (see `genrep.metrics.features.training`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genrep.data.download import data_root
from genrep.errors import CheckpointError, GenrepError
from genrep.metrics.features.base import FeatureExtractor

SIZE = 28
SIZE_KEY = "input_size"  # safetensors metadata: the H×W of the training images, "8x8"


class LeNet(FeatureExtractor):
    """LeNet: images N×1×H×W in [0, 1] -> features N×84 (pre-ReLU FC2); `logits()` N×10."""

    dim = 84
    channels = (1,)

    def __init__(self, name: str = "lenet", input_size: tuple[int, int] | None = None):
        """`input_size`: the H×W of the training images; other sizes are refused (None: any)."""
        super().__init__()
        self.name = name
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    @staticmethod
    def resize(images: torch.Tensor) -> torch.Tensor:
        """N×1×H×W -> N×1×28×28 (bilinear, antialiased when shrinking; unchanged if already 28×28)."""
        if images.shape[-2:] == (SIZE, SIZE):
            return images
        return F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True)

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(self.resize(images))), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """Unchecked logits N×10 from images already on the model's device (training loop)."""
        return self.fc3(F.relu(self.extract(images)))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """images N×1×H×W in [0, 1] -> class logits N×10 (FC(84→10) output)."""
        self.check(images)
        return self.classify(images.to(self.device, torch.float32))


def weights_path(dataset: str) -> Path:
    """`$GENREP_DATA/features/lenet_<dataset>.safetensors` (sidecar: same name, `.json`)."""
    return data_root() / "features" / f"lenet_{dataset}.safetensors"


def train_command(dataset: str) -> str:
    return f"genrep features train --dataset {dataset}"


def load_lenet(dataset: str, *, path: str | Path | None = None) -> LeNet:
    """The LeNet trained on `dataset` (from `path`, else `weights_path(dataset)`), in eval mode.
    Raises CheckpointError with the training command when the weights are missing."""
    from genrep.training.checkpoint import load_weights  # genrep.training imports Lightning: load lazily

    file = Path(path).expanduser() if path is not None else weights_path(dataset)
    if not file.is_file():
        raise CheckpointError(f"no LeNet weights for {dataset} at {file}: train them with"
                              f" `{train_command(dataset)}` (seconds for digits, ~2-3 min for MNIST)")
    model = load_weights(file, LeNet(name=f"lenet[{dataset}]"))
    model.input_size = trained_size(file, dataset)
    return model.eval()


def size_metadata(size: tuple[int, int]) -> dict[str, str]:
    """The safetensors metadata that records the training image size: {"input_size": "8x8"}."""
    return {SIZE_KEY: f"{int(size[0])}x{int(size[1])}"}


def trained_size(file: Path, dataset: str) -> tuple[int, int] | None:
    """The H×W of the images the LeNet in `file` was trained on: from the file's metadata, else
    from its JSON sidecar, else (weights made before genrep recorded it) the size of the images of
    `dataset`; None when none of these is known."""
    import safetensors

    try:
        with safetensors.safe_open(str(file), "pt") as f:
            text = (f.metadata() or {}).get(SIZE_KEY)
        if text:
            h, w = (int(v) for v in text.split("x"))
            return h, w
    except (OSError, ValueError, safetensors.SafetensorError):
        pass
    sidecar = file.with_suffix(".json")
    try:
        size = json.loads(sidecar.read_text()).get("image_size") if sidecar.is_file() else None
        if isinstance(size, list) and len(size) == 2:
            return int(size[0]), int(size[1])
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    try:
        from genrep.data import load_dataset

        h, w = load_dataset(dataset, "test").image_shape[1:]
        return int(h), int(w)
    except GenrepError:
        return None


def lenet_info(dataset: str) -> dict | None:
    """The JSON sidecar of the cached LeNet weights of `dataset`, or None when there is none."""
    sidecar = weights_path(dataset).with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        return json.loads(sidecar.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{sidecar} is unreadable ({err}); retrain with `{train_command(dataset)}`") from None


def cached_lenets() -> list[str]:
    """Data set names that have cached LeNet weights, sorted."""
    folder = weights_path("x").parent
    return sorted(p.stem.removeprefix("lenet_") for p in folder.glob("lenet_*.safetensors"))
