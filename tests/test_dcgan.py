"""(c)DCGAN: generator/discriminator shapes for the supported image sizes, one training step through
a real Lightning Fabric, a short training run through the Trainer, conditions and config checks."""

import math

import pytest
import torch

from genrep.data import DataSpec, ImageDataset, load_dataset
from genrep.errors import ConfigError, InputError
from genrep.models import build_model
from genrep.models.dcgan import DCGAN, DCGANConfig, upsampling_plan
from genrep.models.networks import ConditionEmbedding
from genrep.training import TrainConfig, Trainer, launch_fabric

SMALL = DCGANConfig(noise_dim=16, g_channels=8, d_channels=8)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", value_range="-11", limit=512)


@pytest.mark.parametrize("size,plan", [(8, (1, 4, 4)), (28, (2, 7, 7)), (32, (3, 4, 4)), (44, (2, 11, 11)),
                                       (64, (4, 4, 4)), (27, (2, 7, 7))])
def test_upsampling_plan(size, plan):
    assert upsampling_plan(size, size) == plan


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (1, 32, 32), (1, 44, 44), (3, 64, 64), (1, 27, 27)])
@pytest.mark.parametrize("conditional", [False, True])
def test_shapes_for_the_supported_sizes(shape, conditional):
    torch.manual_seed(0)
    condition = ConditionEmbedding(num_classes=10) if conditional else None
    model = DCGAN(SMALL, image_shape=shape, value_range=(-1.0, 1.0), condition=condition)
    cond = torch.eye(10)[:5] if conditional else None
    logits = model.generator(torch.randn(5, 16), cond)
    assert logits.shape == (5, *shape)
    assert model.discriminator(torch.rand(5, *shape) * 2 - 1, cond).shape == (5,)
    samples = model.sample(5)
    assert samples.shape == (5, *shape)
    assert samples.min() >= -1 and samples.max() <= 1
    batch = {"x": torch.rand(5, *shape) * 2 - 1, **({"y": torch.arange(5)} if conditional else {})}
    out = model(batch)
    assert set(out.parts) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert torch.allclose(out.loss, out.parts["d_loss"] + out.parts["g_loss"])


def test_dcgan_64_has_the_radford_widths():
    model = DCGAN(DCGANConfig(), image_shape=(3, 64, 64))
    convs_g = [m for m in model.generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in convs_g] == [(512, 256), (256, 128), (128, 64), (64, 3)]
    convs_d = [m for m in model.discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.out_channels for m in convs_d] == [64, 128, 256, 512]
    assert model.discriminator.head.in_features == 512 * 4 * 4


def test_one_training_step_updates_both_networks(digits):
    cfg = TrainConfig(steps=1, progress=False)
    fabric = launch_fabric(cfg)
    torch.manual_seed(0)
    model = build_model("cdcgan", SMALL, DataSpec.of(digits), digits)
    optimizers = model.configure_optimizers(cfg)
    assert [type(o).__name__ for o in optimizers] == ["Adam", "Adam"]
    assert all(o.defaults["lr"] == 2e-4 and o.defaults["betas"] == (0.5, 0.999) for o in optimizers)
    wrapped, *optimizers = fabric.setup(model, *optimizers)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = wrapped.training_step(fabric.to_device(digits.batch(slice(0, 32))), optimizers, fabric)
    after = model.state_dict()
    for prefix in ("generator.", "discriminator."):
        changed = [k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])]
        assert any(k.endswith("weight") for k in changed), f"no {prefix} weight changed"
    assert all(p.requires_grad for p in model.parameters()), "D must be unfrozen after the G step"
    assert set(out.parts) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert all(math.isfinite(float(v)) for v in out.parts.values())


def test_short_training_through_the_trainer(digits):
    torch.manual_seed(0)
    model = build_model("cdcgan", SMALL, DataSpec.of(digits), digits)
    cfg = TrainConfig(steps=100, batch_size=32, progress=False, log_every=50)
    result = Trainer(cfg, fabric=launch_fabric(cfg), run_dir=None).fit(model, digits)
    assert result.steps == 100 and math.isfinite(result.final_loss)
    torch.manual_seed(1)
    with torch.no_grad():
        out = model(digits.batch(slice(0, 256)))
    assert out.parts["d_real"] > out.parts["d_fake"], "a trained D must score real digits above fakes"
    samples = model.eval().sample(20, torch.arange(20) % 10)
    assert samples.shape == (20, 1, 8, 8)
    assert torch.isfinite(samples).all() and samples.min() >= -1 and samples.max() <= 1


def test_conditional_sampling_needs_labels_or_conditions():
    data = ImageDataset(torch.rand(16, 1, 8, 8), conditions=torch.randn(16, 3))
    model = build_model("cdcgan", SMALL, DataSpec.of(data), data)
    with pytest.raises(InputError, match="needs conditions"):
        model.sample(4)
    assert model.sample(4, torch.randn(4, 3)).shape == (4, 1, 8, 8)
    with pytest.raises(InputError, match="conditional"):
        model({"x": data.images[:4]})
    assert torch.isfinite(model({"x": data.images[:4], "c": data.conditions[:4]}).loss)

    labelled = ImageDataset(torch.rand(16, 1, 8, 8), labels=torch.arange(16) % 10)
    model = build_model("cdcgan", SMALL, DataSpec.of(labelled), labelled)
    with pytest.raises(InputError, match="2 rows but n=4"):
        model.sample(4, torch.tensor([1, 2]))
    torch.manual_seed(0)
    eps = torch.randn(1, 16).expand(2, 16)
    a, b = model.eval().generate(eps, model.condition({"y": torch.tensor([0, 1])}))
    assert not torch.allclose(a, b), "the generator must depend on the label"
    plain = build_model("dcgan", SMALL, DataSpec.of(labelled))
    with pytest.raises(InputError, match="unconditional"):
        plain.sample(2, torch.tensor([0, 1]))


def test_config_is_checked():
    with pytest.raises(ConfigError, match="model.output must be one of sigmoid, tanh"):
        DCGANConfig(output="relu")
    with pytest.raises(ConfigError, match="betas"):
        DCGANConfig(betas=(0.5, 1.5))
    with pytest.raises(ConfigError, match="at least 4×4"):
        DCGAN(SMALL, image_shape=(1, 3, 3))
