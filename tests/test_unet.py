import dataclasses
import math

import pytest
import torch

from genrep.config import from_dict, to_dict
from genrep.errors import ConfigError, InputError
from genrep.models.unet import (AttentionBlock, UNet, UNetConfig, level_sides, reference_attention_sides,
                                timestep_embedding)


def tiny(**kw) -> UNetConfig:
    base = dict(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, image_size=8, attention_resolutions=(4,),
                num_heads=2)
    base.update(kw)
    return UNetConfig(**base)


def perturb_(model: UNet, std: float = 0.05) -> UNet:
    """Replace the zero initialisation so that every block contributes and gradients flow."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if not p.abs().sum():
                p.normal_(0, std)
    return model


@pytest.mark.parametrize("size, mult, attention", [(8, (1, 2), (4,)), (28, (1, 2, 2), (7,)),
                                                   (28, (1, 2, 2, 2), (4,)), (32, (1, 2, 2), (16, 8))])
@pytest.mark.parametrize("learn_sigma, num_classes", [(False, None), (True, 10)])
def test_output_shape(size, mult, attention, learn_sigma, num_classes):
    torch.manual_seed(0)
    cfg = tiny(in_channels=3, channel_mult=mult, image_size=size, attention_resolutions=attention,
               learn_sigma=learn_sigma, num_classes=num_classes)
    model = perturb_(UNet(cfg))
    x = torch.randn(2, 3, size, size)
    y = torch.tensor([0, 9]) if num_classes else None
    out = model(x, torch.tensor([0, 17]), y)
    assert out.shape == (2, 6 if learn_sigma else 3, size, size)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    h, skips = model.encode(x, torch.tensor([0, 17]), y)
    assert len(skips) == len(model.skip_channels) == 1 + len(mult) * cfg.num_res_blocks + len(mult) - 1
    sides = level_sides(size, len(mult))
    assert h.shape == (2, model.middle_channels, sides[-1], sides[-1])
    assert [s.shape[1] for s in skips] == list(model.skip_channels)
    assert model.pool_features(h, skips).shape == (2, model.feature_dim)


def test_non_square_input_and_scalar_t():
    model = perturb_(UNet(tiny(channel_mult=(1, 2, 2), image_size=28, attention_resolutions=())))
    out = model(torch.randn(2, 1, 28, 20), 5)
    assert out.shape == (2, 1, 28, 20)


def test_out_channels_override():
    cfg = tiny(in_channels=3, out_channels=1, learn_sigma=True)
    assert UNet(cfg)(torch.randn(1, 3, 8, 8), torch.tensor([1])).shape == (1, 2, 8, 8)


def test_thesis_feature_dimensions():
    # thesis App. 6.8.1: 1856 pooled features at 28×28 (gray), 3712 at 32×32 (colour)
    assert UNet(UNetConfig(channel_mult=(1, 2, 2, 2), attention_resolutions=())).feature_dim == 1856
    assert UNet(UNetConfig(in_channels=3, model_channels=128, channel_mult=(1, 2, 2, 2), image_size=32,
                           attention_resolutions=())).feature_dim == 3712


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_decode_of_encode_equals_forward_and_editing_h_changes_output(dropout):
    torch.manual_seed(0)
    model = perturb_(UNet(tiny(channel_mult=(1, 2, 2), image_size=28, attention_resolutions=(7,), num_classes=3,
                               dropout=dropout)))
    x, t, y = torch.randn(3, 1, 28, 28), torch.tensor([1, 50, 400]), torch.tensor([0, 1, 2])
    for train in (False, True):
        model.train(train)
        torch.manual_seed(5)
        expected = model(x, t, y)
        torch.manual_seed(5)
        h, skips = model.encode(x, t, y)
        kept = [s.clone() for s in skips]
        out = model.decode(h, skips, t, y)
        assert torch.equal(out, expected)
        assert all(torch.equal(a, b) for a, b in zip(skips, kept))  # decode leaves skips alone
    model.eval()
    h, skips = model.encode(x, t, y)
    base = model.decode(h, skips, t, y)
    assert not torch.allclose(model.decode(h + 0.5 * torch.randn_like(h), skips, t, y), base)
    skips[0] = skips[0] + 1.0
    assert not torch.allclose(model.decode(h, skips, t, y), base)


def test_features_can_be_optimised():
    # joint diffusion sampling: gradient of a function of the pooled features w.r.t. h and the skips
    model = perturb_(UNet(tiny())).eval()
    h, skips = model.encode(torch.randn(2, 1, 8, 8), torch.tensor([3, 4]))
    h = h.detach().requires_grad_(True)
    skips = [s.detach().requires_grad_(True) for s in skips]
    model.pool_features(h, skips).square().sum().backward()
    assert h.grad is not None and all(s.grad is not None for s in skips)
    model.decode(h, skips, torch.tensor([3, 4])).sum().backward()


def test_output_is_exactly_zero_at_initialisation():
    torch.manual_seed(0)
    model = UNet(tiny(num_classes=2, learn_sigma=True))
    out = model(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 10, 99]), torch.tensor([0, 1, 0, 1]))
    assert torch.equal(out, torch.zeros_like(out))


def test_timestep_embedding_known_values():
    emb = timestep_embedding(torch.tensor([0, 1, 2, 500]), 8)
    assert emb.shape == (4, 8)
    assert torch.equal(emb[0, :4], torch.ones(4)) and torch.equal(emb[0, 4:], torch.zeros(4))
    freqs = torch.exp(-math.log(10000) * torch.arange(4) / 4)
    assert torch.allclose(emb[3], torch.cat([torch.cos(500 * freqs), torch.sin(500 * freqs)]), atol=1e-5)
    assert torch.allclose(emb[1, 0], torch.tensor(math.cos(1.0)))
    assert torch.allclose(emb[1, 4], torch.tensor(math.sin(1.0)))
    assert all(not torch.allclose(emb[i], emb[j]) for i in range(4) for j in range(i))
    odd = timestep_embedding(torch.tensor([3.5]), 7)
    assert odd.shape == (1, 7) and odd[0, -1] == 0


def test_output_depends_on_t_after_training():
    torch.manual_seed(0)
    model = UNet(tiny())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(8, 1, 8, 8)
    t = torch.arange(8) * 10
    target = torch.randn(8, 1, 8, 8)
    for _ in range(5):
        loss = (model(x, t) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        a, b = model(x[:1], torch.tensor([0])), model(x[:1], torch.tensor([70]))
    assert (a - b).abs().max() > 1e-6


def attention_sides(model: UNet, x: torch.Tensor) -> list[int]:
    sides = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: sides.append(inp[0].shape[-1]))
             for m in model.modules() if isinstance(m, AttentionBlock)]
    model(x, torch.zeros(len(x)))
    for hook in hooks:
        hook.remove()
    return sides


@pytest.mark.parametrize("size, mult, attention, expected", [
    (32, (1, 2, 2), (16,), [16] * 1 + [8] + [16] * 2),   # input level 1, middle, output level 1
    (32, (1, 2, 2), (16, 8), [16, 8, 8, 8, 8, 16, 16]),
    (28, (1, 2, 2), (7,), [7, 7, 7, 7]),
    (28, (1, 2, 2), (), [7]),                              # middle block only
    (28, (1, 2, 2), None, [28, 7, 28, 28]),                # the reference rule "16,8": full resolution
    (28, (1, 2, 2, 2), (4, 14), [14, 4, 4, 4, 4, 14, 14]),
])
def test_attention_is_placed_at_requested_resolutions(size, mult, attention, expected):
    model = UNet(tiny(channel_mult=mult, image_size=size, attention_resolutions=attention))
    assert sum(isinstance(m, AttentionBlock) for m in model.modules()) == len(expected)
    assert attention_sides(model, torch.randn(1, 1, size, size)) == expected


def test_middle_attention_can_be_switched_off():
    model = UNet(tiny(attention_resolutions=(), middle_attention=False))
    assert not any(isinstance(m, AttentionBlock) for m in model.modules())


def test_reference_attention_rule():
    assert reference_attention_sides(28, 3) == (28,)
    assert reference_attention_sides(32, 3) == (16, 8)
    assert reference_attention_sides(64, 4) == (16, 8)
    assert UNetConfig().attention_sides == (28,)
    assert level_sides(28, 4) == (28, 14, 7, 4)


def test_heads_and_head_channels():
    block = AttentionBlock(32, num_heads=4)
    assert block.num_heads == 4
    assert AttentionBlock(32, num_head_channels=8).num_heads == 4
    model = UNet(tiny(num_head_channels=8))
    assert all(m.num_heads == (2 if m.qkv.in_channels == 16 else 4)
               for m in model.modules() if isinstance(m, AttentionBlock))


@pytest.mark.parametrize("updown", [False, True])
def test_gradients_reach_every_parameter(updown):
    torch.manual_seed(0)
    model = perturb_(UNet(tiny(channel_mult=(1, 2, 2), image_size=28, attention_resolutions=(14,), num_classes=3,
                               learn_sigma=True, resblock_updown=updown, use_scale_shift_norm=not updown)))
    out = model(torch.randn(3, 1, 28, 28), torch.tensor([1, 2, 3]), torch.tensor([0, 1, 2]))
    (out * torch.randn_like(out)).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


@pytest.mark.parametrize("key, value", [
    ("model_channels", 0), ("channel_mult", ()), ("channel_mult", (1, 0)), ("num_res_blocks", 0),
    ("num_heads", 3), ("num_head_channels", 0), ("num_head_channels", 5), ("dropout", 1.0), ("dropout", -0.1),
    ("attention_resolutions", (16,)), ("autocast", "fp8"), ("norm_groups", 0), ("num_classes", 0),
    ("in_channels", 1.5), ("learn_sigma", 1), ("image_size", 0), ("out_channels", 0),
])
def test_bad_config_values_name_the_key(key, value):
    with pytest.raises(ConfigError, match=key.split("[")[0]):
        tiny(**{key: value})


def test_bad_attention_resolution_lists_the_sides():
    with pytest.raises(ConfigError, match=r"sides \[28, 14, 7\]"):
        UNetConfig(attention_resolutions=(16, 8))


def test_config_round_trip():
    cfg = tiny(num_classes=10, autocast="bf16")
    data = to_dict(cfg)
    assert from_dict(UNetConfig, data) == cfg
    assert from_dict(UNetConfig, {"channel_mult": [1, 2], "attention_resolutions": None}).channel_mult == (1, 2)
    with pytest.raises(ConfigError, match="num_res_blocks"):
        from_dict(UNetConfig, {"num_res_blocks": "three"})


def test_norm_groups_are_clamped_to_divide_channels():
    model = UNet(tiny(model_channels=24, norm_groups=32, channel_mult=(1, 2), num_heads=1))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert {(m.num_channels, m.num_groups) for m in norms} >= {(24, 24), (48, 24)}
    assert all(m.num_channels % m.num_groups == 0 for m in norms)


def test_bad_inputs_raise_input_error():
    model = UNet(tiny(num_classes=3))
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([1, 2]), torch.tensor([0, 2])
    with pytest.raises(InputError, match=r"N×1×H×W"):
        model(torch.randn(2, 3, 8, 8), t, y)
    with pytest.raises(InputError, match=r"N×1×H×W"):
        model(torch.randn(1, 8, 8), t, y)
    with pytest.raises(InputError, match=r"float"):
        model(torch.zeros(2, 1, 8, 8, dtype=torch.long), t, y)
    with pytest.raises(InputError, match=r"t must have shape \(2,\)"):
        model(x, torch.tensor([1, 2, 3]), y)
    with pytest.raises(InputError, match=r"t must have shape \(2,\)"):
        model(x, torch.ones(2, 1), y)
    with pytest.raises(InputError, match="class-conditional"):
        model(x, t)
    with pytest.raises(InputError, match=r"\[0, 3\)"):
        model(x, t, torch.tensor([0, 3]))
    with pytest.raises(InputError, match="int64"):
        model(x, t, torch.tensor([0.0, 1.0]))
    with pytest.raises(InputError, match="unconditional"):
        UNet(tiny())(x, t, y)
    h, skips = model.encode(x, t, y)
    with pytest.raises(InputError, match="skips must be the list of"):
        model.decode(h, skips[:-1], t, y)
    with pytest.raises(InputError, match=r"skips\[1\] must have shape 2×16×8×8"):
        model.decode(h, [skips[0], skips[3]] + skips[2:], t, y)  # wrong channels
    with pytest.raises(InputError, match=r"skips\[1\] must have shape 2×16×8×8"):
        model.decode(h, [skips[0], skips[2]] + skips[2:], t, y)  # wrong size
    with pytest.raises(InputError, match="spatial size 4×4"):
        model.decode(h[..., :3, :3], skips, t, y)
    with pytest.raises(InputError, match="h must have shape"):
        model.decode(skips[0], skips, t, y)


@pytest.mark.parametrize("how", ["config", "context"])
def test_bf16_autocast_forward_backward_is_close_to_fp32(how):
    torch.manual_seed(0)
    cfg = tiny(model_channels=32, channel_mult=(1, 2, 2), image_size=28, attention_resolutions=(7,), num_heads=4,
               num_classes=2)
    model = perturb_(UNet(cfg), std=0.02)
    fast = UNet(dataclasses.replace(cfg, autocast="bf16" if how == "config" else None))
    fast.load_state_dict(model.state_dict())
    x, t, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 10, 100, 499]), torch.tensor([0, 1, 0, 1])
    ref = model(x, t, y)
    if how == "config":
        out = fast(x, t, y)
    else:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fast(x, t, y)
    assert out.dtype == torch.float32
    assert (out - ref).norm() / ref.norm() < 0.05
    out.square().mean().backward()
    ref.square().mean().backward()
    for (name, p), q in zip(fast.named_parameters(), model.parameters()):
        assert p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), name
    g_fast = torch.cat([p.grad.flatten() for p in fast.parameters()])
    g_ref = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.nn.functional.cosine_similarity(g_fast, g_ref, dim=0) > 0.95
