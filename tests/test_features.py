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
from genrep.metrics.features.inception import package_weights
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
