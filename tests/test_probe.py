"""Linear probes of pooled UNet features per diffusion timestep (thesis Sec. 6.4.2, Fig. 6.4.2b):
the features, the timesteps, the regressions (single-label accuracy/AUC, multi-label AUC), the
plot/JSON and `genrep analyze probe`."""

import json
import math
import types

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, run_cli
from PIL import Image

from genrep.analysis import probe as P
from genrep.data import ImageDataset, load_dataset
from genrep.errors import InputError
from genrep.models import DDGM, DDGMConfig, UNetSettings

TINY = UNetSettings(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(),
                    middle_attention=False, dropout=0.0)


def tiny_ddgm(steps=100, unet=TINY, **kw) -> DDGM:
    """A fresh tiny DDGM whose zero-initialised layers (the last conv of every ResBlock, the output
    conv) get small random weights: a fresh UNet's ResBlocks are identities, so its features would
    not depend on t (nor on dropout) at all; a trained one's do."""
    torch.manual_seed(0)
    model = DDGM(DDGMConfig(steps=steps, unet=unet), image_shape=(1, 8, 8), **kw)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.unet.parameters():
            if not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return model


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train"), load_dataset("digits", "test")


@pytest.fixture(scope="module")
def long_model():
    """An untrained tiny UNet under a long linear schedule: ᾱ_{T−1} ≈ 4e-5, so x_{T−1} keeps
    √ᾱ ≈ 0.006 of the image against unit noise (no class information left), while x_0 is the image
    itself up to noise of std 0.01, and even random convolutions keep its statistics (measured
    accuracy 0.85 at t = 0, 0.08 at t = 999, chance 0.10)."""
    return tiny_ddgm(steps=1000)


def manual_features(model, x01, t, noise):
    """z_t by hand: x in [0, 1] → [-1, 1], x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε, encode, average every skip
    and h over H×W, concatenate (skips first, h last)."""
    ab = model.diffusion.alphas_cumprod[t].float().reshape(-1, 1, 1, 1)
    x_t = ab.sqrt() * (x01 * 2 - 1) + (1 - ab).sqrt() * noise
    training = model.training
    with torch.no_grad():
        h, skips = model.eval().unet.encode(x_t, t)  # eval: no dropout
    model.train(training)
    return torch.cat([s.mean(dim=(2, 3)) for s in skips] + [h.mean(dim=(2, 3))], dim=1).numpy()


def test_probe_timesteps():
    assert P.probe_timesteps(1000) == [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]
    assert P.probe_timesteps(50, 3) == [0, 24, 49]
    assert P.probe_timesteps(5, 10) == [0, 1, 2, 3, 4]  # n > T: every step once
    assert P.probe_timesteps(7, 1) == [0]
    assert P.check_timesteps([5, 0, 5], 10) == [0, 5]


def test_features_are_the_pooled_encoder_output_of_x_t(digits):
    dropout = UNetSettings(**{**TINY.__dict__, "dropout": 0.5})
    model = tiny_ddgm(unet=dropout).train()  # eval mode (no dropout) inside, the mode restored after
    x = digits[0].images[:20]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    for t in (37, torch.arange(20) * 5):
        t_vec = t if isinstance(t, torch.Tensor) else torch.full((20,), t)
        z = P.diffusion_features(model, x, t, noise=noise, batch_size=7, progress=False)
        assert z.dtype == np.float32 and z.shape == (20, model.unet.feature_dim)
        np.testing.assert_allclose(z, manual_features(model, x, t_vec, noise), rtol=1e-5, atol=1e-5)
    assert model.training
    # the UNet sees t: the same x_t encoded at another step gives other features
    x_t = model.diffusion.q_sample(x * 2 - 1, torch.full((20,), 37), noise)
    with torch.no_grad():
        assert not torch.allclose(model.unet.pool_features(*model.unet.eval().encode(x_t, 37)),
                                  model.unet.pool_features(*model.unet.encode(x_t, 0)), atol=1e-4)
    model.train()
    # `generator` draws the same ε (one batch); another t gives other features
    drawn = P.diffusion_features(model, x, 37, generator=torch.Generator().manual_seed(3), progress=False)
    np.testing.assert_allclose(drawn, manual_features(model, x, torch.full((20,), 37), noise), rtol=1e-5, atol=1e-5)
    other = P.diffusion_features(model, x, 38, generator=torch.Generator().manual_seed(3), progress=False)
    assert not np.allclose(drawn, other)
    with_t = P.diffusion_features(model, x, 37, noise=noise, append_t=True, progress=False)
    assert with_t.shape == (20, model.unet.feature_dim + 1) and (with_t[:, -1] == 37).all()


def test_representation_method_is_used_when_present(digits):
    class Joint(DDGM):
        def representation(self, x_t, t):
            self.seen.append(int(t[0]))
            return x_t.flatten(1)[:, :5]

    torch.manual_seed(0)
    model = Joint(DDGMConfig(steps=100, unet=TINY), image_shape=(1, 8, 8))
    model.seen = []
    x = digits[0].images[:4]
    noise = torch.randn(x.shape)
    z = P.diffusion_features(model, x, 9, noise=noise, progress=False)
    expected = model.diffusion.q_sample(x * 2 - 1, torch.full((4,), 9), noise).flatten(1)[:, :5]
    np.testing.assert_allclose(z, expected.numpy(), rtol=1e-6)
    assert model.seen == [9]


def test_bad_timesteps_and_models_raise(digits):
    model = tiny_ddgm(steps=100)
    x = digits[0].images[:4]
    for t in (100, -1, torch.tensor([0, 1, 2, 100])):
        with pytest.raises(InputError, match=r"probing timesteps must lie in \[0, T\)"):
            P.diffusion_features(model, x, t, progress=False)
    with pytest.raises(InputError, match=r"probing timesteps must lie in \[0, T\)"):
        P.probe(model, *digits, timesteps=[0, 100], progress=False)
    stub = types.SimpleNamespace(diffusion=model.diffusion, value_range=(0.0, 1.0))
    with pytest.raises(InputError, match="no diffusion UNet"):
        P.diffusion_features(stub, x, 0, progress=False)
    with pytest.raises(InputError, match="no diffusion UNet"):
        P.probe(types.SimpleNamespace(), *digits, progress=False)
    with pytest.raises(InputError, match="class-conditional"):
        P.diffusion_features(tiny_ddgm(num_classes=10), x, 0, progress=False)
    with pytest.raises(InputError, match="value range"):
        P.probe(model, load_dataset("digits", value_range=(-1.0, 1.0)), digits[1], timesteps=[0], progress=False)


def test_classes_are_decodable_at_t0_and_not_at_the_last_step(long_model, digits):
    train, test = digits
    result = P.probe(long_model, train, test, timesteps=[0, 999], max_train=600, seed=1, progress=False)
    assert result.kind == "classes" and result.timesteps == [0, 999] and result.names == [str(k) for k in range(10)]
    assert result.auc.shape == (2, 10) and result.n_train == 600 and result.n_test == len(test)
    assert result.chance_accuracy == pytest.approx(0.1, abs=0.03)
    assert result.accuracy[0] > 0.6 and result.mean_auc[0] > 0.9  # measured 0.85 / 0.97
    assert result.accuracy[1] < 0.2 and abs(result.mean_auc[1] - 0.5) < 0.1  # chance
    # the same numbers from the documented recipe by hand: features of train and test with the
    # same noise seed, a scaler fitted on train, regressions fitted on train and scored on test
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from genrep.data.transforms import random_subset

    sub = random_subset(train, 600, seed=1)
    ytr, yte = sub.labels.numpy(), test.labels.numpy()
    for i, t in enumerate(result.timesteps):
        ztr = P.diffusion_features(long_model, sub.images, t, generator=P.noise_generator(1, t), progress=False)
        zte = P.diffusion_features(long_model, test.images, t, generator=P.noise_generator(1, t), progress=False)
        scaler = StandardScaler().fit(ztr)
        a, b = scaler.transform(ztr), scaler.transform(zte)
        assert result.accuracy[i] == pytest.approx(LogisticRegression(max_iter=1000).fit(a, ytr).score(b, yte))
        three = LogisticRegression(max_iter=1000).fit(a, ytr == 3)
        assert result.auc_of("3")[i] == pytest.approx(roc_auc_score(yte == 3, three.decision_function(b)))
    again = P.probe(long_model, train, test, timesteps=[0], max_train=600, seed=1, progress=False)
    np.testing.assert_array_equal(again.auc[0], result.auc[0])


def test_binary_attributes_get_one_auc_each(long_model, digits):
    def with_attributes(data):
        y = data.labels
        c = torch.stack([y % 2 == 0, y >= 5, y == 0, torch.zeros_like(y, dtype=torch.bool)], dim=1).float()
        return ImageDataset(data.images, conditions=c, name="digit-attributes", split=data.split,
                            condition_names=["even", "5 or more", "zero", "never"])

    train, test = (with_attributes(d) for d in digits)
    result = P.probe(long_model, train, test, timesteps=[0, 999], max_train=600, progress=False)
    assert result.kind == "attributes" and result.accuracy is None and result.chance_accuracy is None
    assert result.names == ["even", "5 or more", "zero", "never"] and result.auc.shape == (2, 4)
    assert (result.auc[0, :3] > 0.8).all() and result.auc[0, 2] > 0.95  # measured 0.96, 0.92, 1.00
    assert np.isnan(result.auc[:, 3]).all()  # a constant attribute has no AUC
    assert abs(result.mean_auc[1] - 0.5) < 0.1
    assert result.mean_auc[0] == pytest.approx(result.auc[0, :3].mean())
    assert "never" in result.to_dict()["auc"] and result.to_dict()["auc"]["never"] == [None, None]
    continuous = ImageDataset(train.images, conditions=torch.rand(len(train), 2), name="cont")
    with pytest.raises(InputError, match="binary conditions"):
        P.probe(long_model, continuous, continuous, timesteps=[0], progress=False)


def test_plot_and_json(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"attr{k}" for k in range(14)]
    auc = 0.5 + 0.4 * rng.random((10, 14))
    auc[:, 13] = np.linspace(0.5, 0.99, 10)  # the largest change over t
    auc[3, 0] = np.nan
    result = P.ProbeResult(kind="attributes", timesteps=P.probe_timesteps(1000), num_timesteps=1000, names=names,
                           auc=auc, mean_auc=np.nanmean(auc, axis=1), accuracy=None, chance_accuracy=None,
                           positive_rate=np.full(14, 0.3), n_train=100, n_test=50, feature_dim=112)
    chosen = P.labelled_names(result)
    assert len(chosen) == P.MAX_LABELLED and 13 in chosen
    assert P.labelled_names(result, ["attr2", 5]) == [2, 5]
    with pytest.raises(InputError, match="unknown class/attribute"):
        P.labelled_names(result, ["Necklace"])
    path = P.plot_probe(result, tmp_path / "sub" / "probe.png")
    assert Image.open(path).size[0] > 800
    P.write_probe_json(result, tmp_path / "probe.json", info={"run": "x"})
    saved = json.loads((tmp_path / "probe.json").read_text())
    assert saved["run"] == "x" and saved["timesteps"][-1] == 999 and saved["auc"]["attr0"][3] is None
    classes = P.ProbeResult(kind="classes", timesteps=[0, 50], num_timesteps=100, names=["a", "b"],
                            auc=np.array([[0.9, 0.8], [0.5, 0.5]]), mean_auc=np.array([0.85, 0.5]),
                            accuracy=np.array([0.8, 0.5]), chance_accuracy=0.5, positive_rate=np.array([0.5, 0.5]),
                            n_train=10, n_test=10, feature_dim=3)
    assert Image.open(P.plot_probe(classes, tmp_path / "c.png")).size[0] > 800
    assert classes.table()[1].split() == ["0", "0.800", "0.850"]


@pytest.fixture(scope="module")
def ddgm_run(tmp_path_factory):
    from genrep.cli.main import main

    out = tmp_path_factory.mktemp("probe") / "ddgm"
    assert main(["train", "ddgm", "--dataset", "digits", "--out", str(out), "--steps", "3", "--no-progress",
                 "--set", "model.steps=50", "--set", "model.unet.model_channels=16",
                 "--set", "model.unet.channel_mult=[1,2]", "--set", "model.unet.num_res_blocks=1",
                 "--set", "model.unet.middle_attention=false", "--set", "data.limit=300",
                 "--set", "train.batch_size=16", "--set", "train.checkpoint_every=0",
                 "--set", "train.log_every=1"]) == 0
    return out


def test_cli_probe(ddgm_run, tmp_path, capsys):
    code, text, err = run_cli(capsys, "analyze", "probe", ddgm_run, "--out", tmp_path / "p", "--num-timesteps", "3",
                              "--max-train", "200", "--max-test", "150", "--no-progress")
    assert code == 0, err
    saved = json.loads((tmp_path / "p" / "probe.json").read_text())
    assert saved["timesteps"] == [0, 24, 49] and saved["T"] == 50 and saved["model_name"] == "ddgm"
    assert saved["n_train"] == 200 and saved["n_test"] == 150 and len(saved["auc"]) == 10
    assert (tmp_path / "p" / "probe.png").is_file()
    lines = text.splitlines()
    assert lines[0].split() == ["t", "accuracy", "mean", "AUC"] and lines[1].split()[0] == "0"
    assert all(math.isfinite(a) for a in saved["accuracy"])
    code, _, err = run_cli(capsys, "analyze", "probe", ddgm_run, "--out", tmp_path / "q", "--timesteps", "0,50")
    assert_one_line_error(code, err, "[0, T) = [0, 50)")
    code, _, err = run_cli(capsys, "analyze", "probe", ddgm_run, "--out", tmp_path / "q", "--attributes", "ten")
    assert_one_line_error(code, err, "unknown class/attribute 'ten'")


def test_cli_probe_refuses_a_model_without_unet(tmp_path, capsys):
    from genrep.cli.main import main

    run = tmp_path / "vae"
    assert main(["train", "vae", "--dataset", "digits", "--out", str(run), "--steps", "2", "--no-progress",
                 "--set", "data.limit=100", "--set", "train.batch_size=16",
                 "--set", "train.checkpoint_every=0"]) == 0
    capsys.readouterr()
    code, _, err = run_cli(capsys, "analyze", "probe", run, "--out", tmp_path / "p")
    assert_one_line_error(code, err, "'vae'", "no diffusion UNet")
