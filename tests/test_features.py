"""Feature extractors: LeNet (architecture, training on digits, cached weights), the FID Inception
(against the TorchScript it is read from) and wrapped user modules."""

import json

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from genrep.cli.main import main
from genrep.errors import CheckpointError, ConfigError, InputError
from genrep.metrics.features import LeNet, get_extractor, load_inception, load_lenet, train_lenet, wrap_module
from genrep.metrics.features.inception import FIDInception, package_weights, tf_resize
from genrep.metrics.features.lenet import weights_path

DIGITS_EPOCHS = 40


@pytest.fixture()
def genrep_data(tmp_path, monkeypatch):
    monkeypatch.setenv("GENREP_DATA", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def digits_lenet(tmp_path_factory):
    """(model, test accuracy, data folder) of a LeNet trained on digits into a temporary GENREP_DATA."""
    root = tmp_path_factory.mktemp("genrep_data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENREP_DATA", str(root))
        model, accuracy = train_lenet("digits", epochs=DIGITS_EPOCHS, seed=0, progress=False)
    return model, accuracy, root


def test_lenet_features_are_the_pre_relu_fc2_output():
    torch.manual_seed(0)
    net = LeNet().eval()
    assert [tuple(p.shape) for p in net.parameters()] == [
        (6, 1, 5, 5), (6,), (16, 6, 5, 5), (16,), (120, 256), (120,), (84, 120), (84,), (10, 84), (10,)]
    x = torch.rand(3, 1, 28, 28)
    h = F.max_pool2d(F.relu(net.conv1(x)), 2)
    h = F.max_pool2d(F.relu(net.conv2(h)), 2)
    fc2 = net.fc2(F.relu(net.fc1(h.flatten(1))))
    assert fc2.min() < 0  # pre-ReLU: negative values survive
    torch.testing.assert_close(net(x), fc2)
    torch.testing.assert_close(net.logits(x), net.fc3(F.relu(fc2)))
    assert net(torch.rand(2, 1, 8, 8)).shape == (2, 84)  # other sizes are resized to 28×28


def test_features_batches_match_forward():
    torch.manual_seed(0)
    net = LeNet()
    x = torch.rand(7, 1, 28, 28)
    out = net.features(x, batch_size=3, progress=False, kind=("features", "logits"))
    torch.testing.assert_close(out["features"], net.eval()(x))
    torch.testing.assert_close(out["logits"], net.logits(x))
    torch.testing.assert_close(net.features(x, batch_size=3, progress=False), out["features"])
    with pytest.raises(InputError, match="no spatial features"):
        net.spatial(x)
    with pytest.raises(InputError, match="unknown feature kind"):
        net.features(x, kind="pool", progress=False)


@pytest.mark.parametrize("bad, message", [
    (torch.rand(2, 1, 28, 28) * 2 - 1, r"must lie in \[0, 1\]"),
    (torch.rand(2, 3, 28, 28), "1 channels"),
    (torch.rand(1, 28, 28), "N×C×H×W"),
])
def test_lenet_rejects_bad_images(bad, message):
    with pytest.raises(InputError, match=message):
        LeNet()(bad)
    with pytest.raises(InputError, match=message):
        LeNet().features(bad, progress=False)


def test_training_on_digits_and_cached_weights(digits_lenet, monkeypatch):
    model, accuracy, root = digits_lenet
    assert accuracy > 0.90
    monkeypatch.setenv("GENREP_DATA", str(root))
    file = weights_path("digits")
    assert file.is_file() and file.parent == root / "features"
    info = json.loads(file.with_suffix(".json").read_text())
    assert info["test_accuracy"] == accuracy and info["epochs"] == DIGITS_EPOCHS and info["seed"] == 0
    loaded = get_extractor("lenet", dataset="digits")
    x = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(loaded(x), model(x))
    assert loaded.dim == 84 and not loaded.training


def test_missing_lenet_weights_name_the_command(genrep_data):
    with pytest.raises(CheckpointError, match="genrep features train --dataset mnist"):
        load_lenet("mnist")
    with pytest.raises(ConfigError, match="dataset="):
        get_extractor("lenet")
    with pytest.raises(ConfigError, match="lenet, inception"):
        get_extractor("vgg")


def test_cli_features_train_and_list(genrep_data, capsys):
    assert main(["features", "train", "--dataset", "digits", "--epochs", "2", "--no-progress"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["features", "list"]) == 0
    out = capsys.readouterr().out
    assert "lenet[digits]" in out and "inception" in out
    assert main(["features", "train", "--dataset", "cifar10"]) == 2  # not offline here, or not gray


def test_wrap_module():
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    extractor = wrap_module(encoder, "encoder", 5, channels=(1,))
    x = torch.rand(6, 1, 8, 8)
    torch.testing.assert_close(extractor.features(x, batch_size=4, progress=False), encoder(x).detach())
    with pytest.raises(InputError, match=r"must lie in \[0, 1\]"):
        extractor(x * 2 - 1)
    with pytest.raises(InputError, match="returned 5 features per image, but dim=4"):
        wrap_module(encoder, "encoder", 4)(x)
    with pytest.raises(InputError, match="no class logits"):
        extractor.logits(x)
    signed = wrap_module(encoder, "encoder", 5, input_range=(-1, 1), channels=(1,))
    assert signed(x * 2 - 1).shape == (6, 5)


needs_inception = pytest.mark.needs_source("inception")


@pytest.fixture(scope="module")
def inception():
    return load_inception()


@needs_inception
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_inception_features_match_the_torchscript_port(inception):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    port = torch.jit.load(str(package_weights()), map_location="cpu").eval()
    with torch.no_grad():
        expected = port(inception.preprocess(x))
    torch.testing.assert_close(inception(x), expected, rtol=1e-5, atol=1e-5)


@needs_inception
def test_inception_shapes_gray_and_determinism(inception):
    gray = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    features = inception(gray)
    assert features.shape == (2, 2048) and features.dtype == torch.float32
    torch.testing.assert_close(inception(gray.repeat(1, 3, 1, 1)), features, rtol=0, atol=0)
    both = inception.features(gray, batch_size=1, progress=False, kind=("features", "spatial"))
    torch.testing.assert_close(both["features"], features, rtol=1e-5, atol=1e-5)
    assert both["spatial"].shape == (2, 7 * 17 * 17)
    with pytest.raises(InputError, match="no 1008-way classifier head"):
        inception.logits(gray)
    with pytest.raises(InputError, match=r"must lie in \[0, 1\]"):
        inception(gray * 2 - 1)
    with pytest.raises(InputError, match="1 or 3 channels"):
        inception(torch.rand(1, 2, 28, 28))


@needs_inception
def test_inception_logits_with_an_output_head(inception, tmp_path):
    state = {k: v.contiguous() for k, v in inception.state_dict().items()}
    state["output.weight"] = torch.randn(1008, 2048, generator=torch.Generator().manual_seed(0)) * 0.01
    state["output.bias"] = torch.zeros(1008)
    safetensors.torch.save_file(state, tmp_path / "with_head.safetensors")
    model = load_inception(tmp_path / "with_head.safetensors")
    assert model.has_logits
    x = torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(model.logits(x), model(x) @ state["output.weight"].T, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- Inception input mapping (issue 14, item 9)
def tf1_resize_numpy(image, size=299):
    """TF1 `resize_bilinear` (align_corners=False, no half-pixel centres) of one C×H×W array, written
    out independently: source coordinate = destination · in/out, neighbours clamped at the edge."""
    import numpy as np

    _, h, w = image.shape
    ys, xs = np.arange(size) * h / size, np.arange(size) * w / size
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = image[:, y0][:, :, x0] * (1 - wx) + image[:, y0][:, :, x1] * wx
    bottom = image[:, y1][:, :, x0] * (1 - wx) + image[:, y1][:, :, x1] * wx
    return top * (1 - wy) + bottom * wy


def test_inception_torch_preprocessing_is_pytorch_fids():
    """resize="torch": F.interpolate(bilinear, align_corners=False, no antialias) to 299, then 2x − 1,
    gray repeated to RGB; and exactly that tensor reaches the first conv layer."""
    model = FIDInception(resize="torch").eval()
    gray = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    rgb = gray.repeat(1, 3, 1, 1)
    expected = 2 * F.interpolate(rgb, size=(299, 299), mode="bilinear", align_corners=False) - 1
    torch.testing.assert_close(model.preprocess(gray), expected, rtol=0, atol=0)
    assert float(model.preprocess(torch.ones(1, 1, 8, 8)).max()) == pytest.approx(1.0, abs=1e-6)  # [0, 1] -> [−1, 1]
    seen = []
    model.layers.conv.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        model.features(gray, batch_size=2, progress=False)
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=0)
    at_299 = torch.rand(1, 3, 299, 299, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(model.preprocess(at_299), 2 * at_299 - 1, rtol=0, atol=1e-7)


def test_inception_tf1_preprocessing_is_unchanged_and_the_default():
    model = FIDInception()
    assert model.resize == "tf1"
    x = torch.rand(2, 3, 11, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    expected = torch.stack([torch.from_numpy(tf1_resize_numpy(image.numpy())) for image in x]) * 255 / 128 - 1
    torch.testing.assert_close(model.preprocess(x), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(model.preprocess(x), tf_resize(x) * (255 / 128) - 1, rtol=0, atol=0)
    torch_mode = FIDInception(resize="torch").preprocess(x)
    assert (torch_mode - model.preprocess(x)).abs().max() > 0.01  # the two mappings differ


def test_inception_bad_resize_is_a_one_line_error():
    for call in (lambda: FIDInception(resize="pil"), lambda: load_inception(resize="TF1"),
                 lambda: get_extractor("inception", resize="bilinear")):
        with pytest.raises(InputError, match="inception resize must be one of 'tf1', 'torch'") as info:
            call()
        assert "\n" not in str(info.value)


@needs_inception
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_inception_torch_resize_features_match_the_port_on_pytorch_fid_input():
    model = get_extractor("inception", resize="torch")
    assert isinstance(model, FIDInception) and model.resize == "torch"
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    port = torch.jit.load(str(package_weights()), map_location="cpu").eval()
    with torch.no_grad():
        expected = port(2 * F.interpolate(x.repeat(1, 3, 1, 1), size=(299, 299), mode="bilinear",
                                          align_corners=False) - 1)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_inception_bad_weight_files(tmp_path, monkeypatch):
    (tmp_path / "garbage.pt").write_bytes(b"not a model" * 100)
    with pytest.raises(CheckpointError, match="garbage.pt are truncated, corrupted"):
        load_inception(tmp_path / "garbage.pt")
    safetensors.torch.save_file({"layers.conv.weight": torch.zeros(1)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="not the FID Inception"):
        load_inception(tmp_path / "other.safetensors")
    raw = (tmp_path / "other.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="corrupted"):
        load_inception(tmp_path / "cut.safetensors")
    monkeypatch.setenv("GENREP_INCEPTION", str(tmp_path / "absent.pt"))
    with pytest.raises(CheckpointError, match="absent.pt does not exist"):
        get_extractor("inception")
