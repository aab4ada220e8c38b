"""Latent pictures: codes from any encoder (tuple or tensor results, conditional or not), PCA/t-SNE
projections, the scatter plot, the per-run picture and `genrep analyze latent`."""

import numpy as np
import pytest
import torch
from PIL import Image
from threadpoolctl import threadpool_limits
from torch import nn

from genrep.analysis.latent import latent_codes, plot_latents, project
from genrep.cli.main import main
from genrep.data import load_dataset
from genrep.errors import InputError
from genrep.models.networks import ConditionEmbedding
from genrep.models.vae import VAE, VAEConfig


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "test")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("latent") / "vae"
    assert main(["train", "vae", "--dataset", "digits", "--steps", "20", "--out", str(out), "--no-progress",
                 "--set", "model.hidden=[32]", "--set", "model.latent_dim=4", "--set", "train.log_every=10",
                 "--set", "train.checkpoint_every=1000"]) == 0
    return out


class TensorEncoder(nn.Module):
    """A stand-in for an encoder returning one tensor z, like the e2e Sinkhorn autoencoder."""

    condition = None

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(64, 3)

    def encode(self, x):
        return self.linear(x.flatten(1))


def test_vae_codes_are_posterior_means(digits):
    torch.manual_seed(0)
    model = VAE(VAEConfig(hidden=[16], latent_dim=5), image_shape=(1, 8, 8))
    codes, labels = latent_codes(model, digits, n=100, batch_size=32)
    assert codes.shape == (100, 5) and codes.dtype == np.float32
    assert labels.shape == (100,) and labels.dtype == np.int64
    rows = torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))[:100].sort().values
    np.testing.assert_array_equal(labels, digits.labels[rows].numpy())
    with torch.no_grad():
        np.testing.assert_allclose(codes, model.encode(digits.images[rows])[0].numpy(), atol=1e-6)
    all_codes, _ = latent_codes(model, digits, n=10_000)
    assert len(all_codes) == len(digits)


def test_conditional_vae_gets_its_condition(digits):
    torch.manual_seed(0)
    model = VAE(VAEConfig(hidden=[16], latent_dim=3), image_shape=(1, 8, 8),
                condition=ConditionEmbedding(num_classes=10))
    codes, _ = latent_codes(model, digits, n=40)
    batch = digits.batch(slice(None))
    with torch.no_grad():
        full = model.encode(batch["x"], model.condition(batch))[0]
    rows = torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))[:40].sort().values
    np.testing.assert_allclose(codes, full[rows].numpy(), atol=1e-6)


def test_encoders_returning_a_tensor_work(digits):
    torch.manual_seed(0)
    model = TensorEncoder()
    codes, labels = latent_codes(model, digits, n=50)
    assert codes.shape == (50, 3) and labels is not None
    assert project(codes).shape == (50, 2)
    model.condition = ConditionEmbedding(num_classes=10)  # conditional e2e SAE: encode(x) never sees y
    np.testing.assert_array_equal(latent_codes(model, digits, n=50)[0], codes)


def test_bad_inputs_are_refused(digits):
    with pytest.raises(InputError, match="encode"):
        latent_codes(nn.Linear(2, 2), digits)
    model = VAE(VAEConfig(hidden=[16], latent_dim=2), image_shape=(1, 8, 8), value_range=(-1, 1))
    with pytest.raises(InputError, match="value_range"):
        latent_codes(model, digits)
    with pytest.raises(InputError, match="pca, tsne"):
        project(np.zeros((5, 2)), "umap")


def test_projections_are_deterministic():
    codes = np.random.default_rng(0).normal(size=(60, 6)) * np.arange(1, 7)
    xy = project(codes, "pca")
    assert xy.shape == (60, 2)
    np.testing.assert_array_equal(xy, project(codes, "pca"))
    assert xy[:, 0].var() >= xy[:, 1].var()
    assert project(codes[:, :1], "pca").shape == (60, 2)
    with threadpool_limits(1):  # t-SNE's OpenMP threads crawl on a busy machine; the result is the same
        tsne = project(codes, "tsne", seed=1)
        assert tsne.shape == (60, 2) and np.isfinite(tsne).all()
        np.testing.assert_array_equal(tsne, project(codes, "tsne", seed=1))


def test_plot_latents_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    panels = {"e2e SAE": (rng.normal(size=(80, 2)), rng.integers(0, 10, 80)),
              "cVAE": (rng.normal(size=(80, 2)), rng.integers(0, 10, 80)),
              "no labels": (rng.normal(size=(30, 2)), None)}
    path = plot_latents(panels, tmp_path / "l.png", class_names=[f"digit {k}" for k in range(10)])
    assert Image.open(path).size[0] > 800


def test_run_picture_and_cli(run, tmp_path, capsys):
    assert main(["analyze", "latent", str(run), "--n", "200"]) == 0
    assert (run / "latent_pca.png").is_file()
    out = tmp_path / "two.png"
    assert main(["analyze", "latent", str(run), str(run), "--dataset", "digits", "--n", "100", "-o", str(out)]) == 0
    assert out.is_file() and "encoded 100 images" in capsys.readouterr().out
    assert main(["analyze", "latent", str(run), str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("genrep: error:") == 1 and "-o" in err
    with pytest.raises(SystemExit):
        main(["analyze"])
