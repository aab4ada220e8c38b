"""Encoder/decoder arch families: output shapes at exactly the input size, the reference layer
shapes, condition concatenation, size errors, the logits → value-range mapping."""

import pytest
import torch
from torch import nn

from genrep.errors import ConfigError
from genrep.models import VAEConfig
from genrep.models.networks import ARCHS, Decoder, Encoder, to_value_range
from genrep.models.vae import VAE

CASES = [  # arch, image shape, width (wae64 narrowed to keep the test fast)
    ("mlp", (1, 8, 8), 1.0),
    ("conv", (1, 8, 8), 1.0),
    ("mnist", (1, 28, 28), 1.0),
    ("mnist", (1, 32, 32), 1.0),
    ("calo", (1, 44, 44), 1.0),
    ("wae64", (3, 64, 64), 0.125),
    ("wae64", (3, 32, 32), 0.125),
]


def nets(arch, shape, width=1.0, *, latent=6, cond_dim=0):
    kw = dict(arch=arch, hidden=[32], channels=[8, 16], cond_dim=cond_dim, width=width)
    return Encoder(shape, latent, **kw), Decoder(shape, latent, **kw)


def conv_outputs(module: nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
    """C×H×W after every (transposed) convolution of `module` on input x."""
    shapes, hooks = [], []
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            hooks.append(m.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[1:]))))
    module(x)
    for h in hooks:
        h.remove()
    return shapes


def test_arch_names():
    assert ARCHS == ("mlp", "conv", "mnist", "calo", "wae64")


@pytest.mark.parametrize("arch,shape,width", CASES)
def test_encoder_and_decoder_shapes(arch, shape, width):
    torch.manual_seed(0)
    enc, dec = nets(arch, shape, width)
    x = torch.rand(3, *shape)
    z = enc(x)
    assert z.shape == (3, 6)
    logits = dec(z)
    assert logits.shape == (3, *shape), "the decoder must return exactly the input size"
    assert torch.isfinite(logits).all()


def test_mnist_arch_matches_the_reference_layers():
    enc, dec = nets("mnist", (1, 28, 28), latent=16)
    assert conv_outputs(enc, torch.rand(2, 1, 28, 28)) == [(64, 14, 14), (64, 7, 7), (64, 3, 3)]
    assert enc.head.in_features == 576 and enc.head.out_features == 16
    assert conv_outputs(dec, torch.randn(2, 16)) == [(256, 6, 6), (128, 12, 12), (64, 13, 13), (1, 28, 28)]
    assert dec.head[0].in_features == 16 and dec.head[0].out_features == 256
    enc32, dec32 = nets("mnist", (1, 32, 32))
    assert conv_outputs(enc32, torch.rand(2, 1, 32, 32))[-1] == (64, 4, 4)
    assert conv_outputs(dec32, torch.randn(2, 6)) == [(256, 8, 8), (128, 16, 16), (64, 16, 16), (1, 32, 32)]


def test_calo_arch_layers():
    enc, dec = nets("calo", (1, 44, 44))
    assert conv_outputs(enc, torch.rand(2, 1, 44, 44)) == [(32, 22, 22), (64, 11, 11), (128, 6, 6)]
    assert conv_outputs(dec, torch.randn(2, 6)) == [(64, 11, 11), (32, 22, 22), (1, 44, 44)]


def test_wae64_arch_layers_and_width():
    enc, dec = nets("wae64", (3, 64, 64), width=0.125)
    assert conv_outputs(enc, torch.rand(2, 3, 64, 64)) == [(16, 32, 32), (32, 16, 16), (64, 8, 8), (128, 4, 4)]
    assert conv_outputs(dec, torch.randn(2, 6)) == [(64, 16, 16), (32, 32, 32), (16, 64, 64), (3, 64, 64)]
    assert dec.head[0].out_features == 128 * 8 * 8
    full = Encoder((3, 64, 64), 64, arch="wae64", hidden=[], channels=[])
    convs = [m for m in full.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.out_channels, m.kernel_size, m.stride) for m in convs] == [
        (n, (5, 5), (2, 2)) for n in (128, 256, 512, 1024)]
    assert full.head.in_features == 1024 * 4 * 4


@pytest.mark.parametrize("arch,shape,width", CASES)
def test_condition_is_concatenated_and_changes_the_output(arch, shape, width):
    torch.manual_seed(0)
    enc, dec = nets(arch, shape, width, cond_dim=3)
    enc.eval(), dec.eval()
    x = torch.rand(1, *shape).expand(2, *shape)  # the same image twice, with two conditions
    c = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    z = enc(x, c)
    assert not torch.allclose(z[0], z[1]), "the encoder output must depend on the condition"
    z_same = z[:1].expand(2, -1)
    out = dec(z_same, c)
    assert out.shape == (2, *shape)
    assert not torch.allclose(out[0], out[1]), "the decoder output must depend on the condition"


@pytest.mark.parametrize("arch,shape,match", [
    ("mnist", (1, 44, 44), r"'mnist' needs 28×28 or 32×32 images, got 44×44"),
    ("mnist", (1, 8, 8), "28×28 or 32×32"),
    ("calo", (1, 28, 28), r"'calo' needs 44×44 images, got 28×28"),
    ("wae64", (3, 28, 28), "divisible by 16"),
    ("wae64", (3, 8, 8), "divisible by 16"),
    ("resnet", (1, 28, 28), "unknown model.arch 'resnet'; valid: mlp, conv, mnist, calo, wae64"),
])
def test_sizes_that_do_not_fit_raise_config_error(arch, shape, match):
    with pytest.raises(ConfigError, match=match):
        Encoder(shape, 4, arch=arch, hidden=[], channels=[])
    with pytest.raises(ConfigError, match=match):
        Decoder(shape, 4, arch=arch, hidden=[], channels=[])


def test_vae_accepts_the_new_archs():
    VAEConfig(arch="calo")
    with pytest.raises(ConfigError, match="must be one of mlp, conv, mnist, calo, wae64"):
        VAEConfig(arch="dcgan")
    torch.manual_seed(0)
    model = VAE(VAEConfig(arch="mnist", latent_dim=8), image_shape=(1, 28, 28))
    out = model({"x": torch.rand(4, 1, 28, 28)})
    assert torch.isfinite(out.loss)
    assert model.sample(2).shape == (2, 1, 28, 28)


def test_logits_map_into_the_value_range():
    logits = torch.tensor([-50.0, 0.0, 50.0])
    for output in ("sigmoid", "tanh"):
        y = to_value_range(logits, (-1.0, 3.0), output)
        assert torch.allclose(y, torch.tensor([-1.0, 1.0, 3.0]), atol=1e-5)
    assert torch.allclose(to_value_range(torch.tensor([0.3]), (0.0, 1.0), "tanh"),
                          (torch.tanh(torch.tensor([0.3])) + 1) / 2)
    with pytest.raises(ConfigError, match="sigmoid, tanh"):
        to_value_range(logits, (0.0, 1.0), "relu")
