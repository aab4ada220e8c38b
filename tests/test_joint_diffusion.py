"""Joint diffusion models (thesis ch. 6): representation, head, joint loss, noisy classifiers, the
semi-supervised buffer, conditional sampling by optimised representations (Alg. 1), domain-adaptation
freezing, the UNet-encoder classifiers and the classifier report. Tiny models (8×8, 16 channels)."""

import io
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genrep.data import load_dataset
from genrep.diffusion.guidance import OptimisedRepresentations, classification_loss_sum, classifier_guidance
from genrep.errors import ConfigError, InputError
from genrep.experiments import classifier_report
from genrep.models.ddgm import DDGM, DDGMConfig, UNetSettings, to_model_range
from genrep.models.joint_diffusion import ClassifierSettings, JointDiffusion, JointDiffusionConfig
from genrep.models.pooled_classifier import LabelledBuffer
from genrep.models.unet import UNet, UNetConfig
from genrep.models.unet_classifier import UNetClassifier, UNetClassifierConfig

TINY = UNetSettings(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(),
                    middle_attention=False, dropout=0.0)
SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", limit=256)


def tiny_joint(*, num_classes: int = 10, steps: int = 30, seed: int = 0, perturb: bool = True, config=None,
               **classifier) -> JointDiffusion:
    """A tiny joint model; classifier settings default to no augmentation and no dropout, so that
    runs under the same seed are exactly comparable. `perturb` replaces the UNet's zero-initialised
    output layer, so that gradients reach the decoder and encoder through the diffusion loss."""
    classifier.setdefault("augmentation", False)
    classifier.setdefault("dropout", 0.0)
    torch.manual_seed(seed)
    cfg = JointDiffusionConfig(steps=steps, unet=TINY, classifier=ClassifierSettings(**classifier), **(config or {}))
    model = JointDiffusion(cfg, image_shape=SHAPE, num_classes=num_classes)
    if perturb:
        with torch.no_grad():
            for p in model.unet.parameters():
                if not p.abs().sum():
                    p.normal_(0, 0.05)
    return model


def spy(monkeypatch, obj, name: str, record=None) -> list:
    """Wrap obj.name so every call's (args, kwargs, result) is appended to the returned list."""
    calls = []
    original = getattr(obj, name)

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append((args, kwargs, result))
        return result

    monkeypatch.setattr(obj, name, wrapper)
    return calls


def logits_calls(model, monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(x_t, t) of every `logits_model_range` call of `model` (t as an (N,) tensor)."""
    calls = []
    original = model.logits_model_range

    def wrapper(x_t, t):
        calls.append((x_t.detach().clone(), model._timesteps(t, x_t).clone()))
        return original(x_t, t)

    monkeypatch.setattr(model, "logits_model_range", wrapper)
    return calls


def one_line(err) -> str:
    message = str(err.value)
    assert message and "\n" not in message, message
    return message


# ------------------------------------------------------------------------------------ representation

def test_representation_is_the_pooled_skips_then_middle_block():
    model = tiny_joint()
    outputs = {}
    handles = [block.register_forward_hook(lambda m, a, out, i=i: outputs.__setitem__(i, out))
               for i, block in enumerate(model.unet.input_blocks)]
    handles.append(model.unet.middle_block.register_forward_hook(lambda m, a, out: outputs.__setitem__("mid", out)))
    x_t = torch.randn(5, *SHAPE)
    t = torch.tensor([0, 3, 10, 20, 29])
    z = model.representation(x_t, t)
    expected = torch.cat([outputs[i].mean(dim=(2, 3)) for i in range(len(model.unet.input_blocks))]
                         + [outputs["mid"].mean(dim=(2, 3))], dim=1)
    for h in handles:
        h.remove()
    channels = [outputs[i].shape[1] for i in range(len(model.unet.input_blocks))] + [outputs["mid"].shape[1]]
    assert model.unet.feature_dim == sum(channels) == z.shape[1]
    assert z.shape == expected.shape and torch.allclose(z, expected, atol=1e-6, rtol=1e-6)
    assert model.head.net[1].num_features == model.unet.feature_dim


def test_append_t_adds_the_raw_timestep_as_last_feature():
    model = tiny_joint(append_t=True)
    x_t = torch.randn(4, *SHAPE)
    t = torch.tensor([0, 7, 15, 29])
    z = model.representation(x_t, t)
    assert z.shape == (4, model.unet.feature_dim + 1)
    assert torch.equal(z[:, -1], t.float())
    h, skips = model.unet.encode(x_t, t)
    assert torch.allclose(z[:, :-1], model.unet.pool_features(h, skips))
    assert model.head.net[1].num_features == model.unet.feature_dim + 1
    assert torch.equal(model.representation(x_t, 11)[:, -1], torch.full((4,), 11.0))


@pytest.mark.parametrize("size, mult, expected", [(28, (1, 2, 2), 1344), (32, (1, 2, 2, 2), 1856)])
def test_feature_dim_of_the_reference_networks(size, mult, expected):
    unet = UNet(UNetConfig(in_channels=1, image_size=size, model_channels=64, channel_mult=mult, num_res_blocks=3,
                           attention_resolutions=(), middle_attention=False, encoder_only=True))
    assert unet.feature_dim == expected
    with torch.no_grad():
        h, skips = unet.encode(torch.zeros(1, 1, size, size), torch.tensor([0]))
    assert unet.pool_features(h, skips).shape == (1, expected)


def test_head_layout():
    model = tiny_joint(num_classes=7, dropout=0.7)
    f = model.unet.feature_dim
    layers = list(model.head.net)
    assert [type(m) for m in layers] == [nn.Dropout, nn.BatchNorm1d, nn.Linear, nn.LeakyReLU, nn.Dropout,
                                         nn.BatchNorm1d, nn.Linear]
    assert layers[0].p == 0.7 and layers[4].p == 0.7
    assert layers[1].num_features == f
    assert (layers[2].in_features, layers[2].out_features) == (f, f // 2)
    assert layers[3].negative_slope == 0.01
    assert layers[5].num_features == f // 2
    assert (layers[6].in_features, layers[6].out_features) == (f // 2, 7)
    assert ClassifierSettings().dropout == 0.7
    default = JointDiffusion(JointDiffusionConfig(steps=30, unet=TINY), image_shape=SHAPE, num_classes=3)
    assert default.head.net[0].p == 0.7 and default.head.net[4].p == 0.7


# ------------------------------------------------------------------------------------ joint loss

def _grads(model, batch, weight) -> tuple[dict[str, torch.Tensor], dict]:
    model.config.classifier.loss_weight = weight
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    out = model(batch)
    out.loss.backward()
    grads = {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}
    return grads, out


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> bool:
    """Equal up to float rounding relative to the tensors' scale."""
    return float((a - b).abs().max()) <= rel * max(float(a.abs().max()), float(b.abs().max())) + 1e-12


def _group(grads, *prefixes) -> dict[str, torch.Tensor]:
    return {n: g for n, g in grads.items() if n.startswith(prefixes)}


def test_joint_loss_gradients_and_the_ce_weight(digits):
    model = tiny_joint()
    batch = digits.batch(slice(0, 16))
    g1, out1 = _grads(model, batch, 1.0)
    g3, out3 = _grads(model, batch, 3.0)
    g0, out0 = _grads(model, batch, 0.0)
    encoder = ("unet.input_blocks", "unet.middle_block")
    decoder = ("unet.output_blocks", "unet.out")
    for prefix in (*encoder, *decoder, "head"):
        assert any(g.abs().sum() > 0 for g in _group(g1, prefix).values()), f"no gradient reaches {prefix}"
    # the decoder sees the diffusion loss only
    for n, g in _group(g1, *decoder).items():
        assert torch.equal(g, g3[n]) and torch.equal(g, g0[n]), n
    # the head sees λ·CE only
    for n, g in _group(g1, "head").items():
        assert _close(g3[n], 3.0 * g), n
        assert not g0[n].any(), n
    # the encoder sees both: its CE part scales with λ, and is not zero
    names = list(_group(g1, *encoder))
    ce_part = torch.cat([(g1[n] - g0[n]).flatten() for n in names])
    ce_part3 = torch.cat([(g3[n] - g0[n]).flatten() for n in names])
    assert ce_part.abs().max() > 0
    assert _close(ce_part3, 3.0 * ce_part, rel=1e-3)
    assert out1.parts["ce"] == out3.parts["ce"] == out0.parts["ce"] > 0
    assert out1.loss.item() == pytest.approx(out0.loss.item() + out1.parts["ce"].item(), rel=1e-5)
    assert out3.loss.item() == pytest.approx(out0.loss.item() + 3 * out1.parts["ce"].item(), rel=1e-5)


def test_named_loss_weights(digits):
    assert ClassifierSettings().loss_weight == "thesis" and ClassifierSettings().weight == 1.0
    assert ClassifierSettings(loss_weight="reference").weight == 0.001
    assert ClassifierSettings(loss_weight=0.25).weight == 0.25
    batch = digits.batch(slice(0, 16))
    totals = {}
    for weight in ("reference", "thesis", 0.0):
        model = tiny_joint(loss_weight=weight)
        torch.manual_seed(3)
        out = model(batch)
        totals[weight] = (out.loss.item(), out.parts["ce"].item())
    base = totals[0.0][0]
    assert totals["thesis"][0] == pytest.approx(base + 1.0 * totals["thesis"][1], rel=1e-5)
    assert totals["reference"][0] == pytest.approx(base + 0.001 * totals["reference"][1], rel=1e-6)


# ------------------------------------------------------------------------------------ noisy classifiers

def _diffusion_spy(model, monkeypatch) -> dict:
    seen = {}
    original = model.diffusion.training_losses

    def training_losses(unet, x0, t, noise=None, **kw):
        seen.update(x0=x0.clone(), t=t.clone(), noise=noise.clone())
        return original(unet, x0, t, noise=noise, **kw)

    monkeypatch.setattr(model.diffusion, "training_losses", training_losses)
    return seen


def test_noisy_reference_classifies_x_t_at_the_diffusion_t(digits, monkeypatch):
    model = tiny_joint(noisy="reference")
    seen = _diffusion_spy(model, monkeypatch)
    calls = logits_calls(model, monkeypatch)
    batch = digits.batch(slice(0, 16))
    torch.manual_seed(1)
    model(batch)
    assert len(calls) == 1
    x_t, t = calls[0]
    assert torch.equal(seen["x0"], to_model_range(batch["x"], model.value_range))
    assert torch.equal(t, seen["t"]) and t.any()
    assert torch.allclose(x_t, model.diffusion.q_sample(seen["x0"], seen["t"], seen["noise"]), atol=1e-6)


@pytest.mark.parametrize("timesteps", [(3, 7), (5,)])
def test_noisy_thesis_adds_one_term_per_given_timestep(digits, monkeypatch, timesteps):
    model = tiny_joint(noisy="thesis", noisy_timesteps=timesteps)
    losses = spy(monkeypatch, model, "class_loss")
    calls = logits_calls(model, monkeypatch)
    batch = digits.batch(slice(0, 16))
    x0 = to_model_range(batch["x"], model.value_range)
    out = model(batch)
    assert len(calls) == 1 + len(timesteps)
    x_first, t_first = calls[0]
    assert not t_first.any() and torch.equal(x_first, x0)  # the clean term at t = 0
    assert [sorted(set(t.tolist())) for _, t in calls[1:]] == [[tau] for tau in timesteps]
    assert all(not torch.allclose(x_t, x0) for x_t, _ in calls[1:])
    total = sum(float(result[0].detach()) for _, _, result in losses)
    assert out.parts["ce"].item() == pytest.approx(total, rel=1e-5)


def test_noisy_thesis_default_adds_the_noisy_term_at_the_diffusion_t(digits, monkeypatch):
    model = tiny_joint(noisy="thesis")
    seen = _diffusion_spy(model, monkeypatch)
    losses = spy(monkeypatch, model, "class_loss")
    calls = logits_calls(model, monkeypatch)
    batch = digits.batch(slice(0, 16))
    torch.manual_seed(1)
    out = model(batch)
    assert len(calls) == 2
    x_first, t_first = calls[0]
    assert not t_first.any() and torch.equal(x_first, seen["x0"])
    x_t, t = calls[1]
    t_n = seen["t"].clamp(min=1)
    assert torch.equal(t, t_n)
    assert torch.allclose(x_t, model.diffusion.q_sample(seen["x0"], t_n, seen["noise"]), atol=1e-6)
    total = sum(float(result[0].detach()) for _, _, result in losses)
    assert out.parts["ce"].item() == pytest.approx(total, rel=1e-5)


def test_noisy_off_classifies_clean_images_only(digits, monkeypatch):
    model = tiny_joint(noisy="off")
    calls = logits_calls(model, monkeypatch)
    batch = digits.batch(slice(0, 16))
    model(batch)
    assert len(calls) == 1
    x, t = calls[0]
    assert not t.any() and torch.equal(x, to_model_range(batch["x"], model.value_range))


# ------------------------------------------------------------------------------------ semi-supervised

SEMI_MASKS = [[1, 0, 1, 0], [0, 0, 1, 0], [1, 1, 0, 1], [1, 1, 0, 0]]


def _semi_batches(digits):
    batches = []
    for i, mask in enumerate(SEMI_MASKS):
        b = digits.batch(slice(4 * i, 4 * i + 4))
        y = b["y"].clone()
        y[torch.tensor(mask) == 0] = -1
        batches.append({"x": b["x"], "y": y})
    return batches


def test_semi_supervised_buffer_releases_full_batches_oldest_first(digits, monkeypatch):
    model = tiny_joint(buffer_size=4)
    losses = spy(monkeypatch, model, "class_loss")
    batches = _semi_batches(digits)
    labelled = [(to_model_range(b["x"][i], model.value_range), b["y"][i]) for b in batches
                for i in range(4) if b["y"][i] >= 0]
    expected_counts, released = [2, 3, 2, 0], {2: labelled[0:4], 3: labelled[4:8]}
    for step, batch in enumerate(batches):
        n_before = len(losses)
        out = model(batch)
        out.loss.backward()
        assert int(model.label_buffer.count) == expected_counts[step]
        if step not in released:
            assert len(losses) == n_before, "the CE ran before the buffer was full"
            assert out.parts["ce"].item() == 0.0 and out.parts["labelled"].item() == 0.0
            continue
        assert len(losses) == n_before + 1
        (x, y), _, _ = losses[-1]
        assert out.parts["labelled"].item() == 4 and out.parts["ce"].item() > 0
        assert (y >= 0).all()
        assert torch.equal(x, torch.stack([xi for xi, _ in released[step]]))
        assert torch.equal(y, torch.stack([yi for _, yi in released[step]]))
    for (x, y), _, _ in losses:
        assert (y >= 0).all()


def test_buffer_is_saved_and_not_touched_in_eval(digits):
    model = tiny_joint(buffer_size=4)
    batches = _semi_batches(digits)
    for batch in batches[:3]:
        model(batch)
    state = model.state_dict()
    assert {"label_buffer.x", "label_buffer.y", "label_buffer.count"} <= set(state)
    saved = io.BytesIO()
    torch.save(state, saved)
    saved.seek(0)
    fresh = tiny_joint(buffer_size=4, seed=5)
    assert int(fresh.label_buffer.count) == 0
    fresh.load_state_dict(torch.load(saved))
    assert int(fresh.label_buffer.count) == 2
    assert torch.equal(fresh.label_buffer.x, model.label_buffer.x)
    assert torch.equal(fresh.label_buffer.y, model.label_buffer.y)
    snapshot = {k: v.clone() for k, v in model.label_buffer.state_dict().items()}
    model.eval()
    with torch.no_grad():
        out = model(batches[2])
    assert out.parts["labelled"].item() == 3  # eval: the CE of the batch's labelled images
    for k, v in model.label_buffer.state_dict().items():
        assert torch.equal(v, snapshot[k]), k


def test_without_buffer_only_labelled_images_reach_the_ce(digits, monkeypatch):
    model = tiny_joint()
    losses = spy(monkeypatch, model, "class_loss")
    batch = _semi_batches(digits)[0]
    out = model(batch)
    (x, y), _, _ = losses[-1]
    keep = batch["y"] >= 0
    assert torch.equal(y, batch["y"][keep]) and (y >= 0).all()
    assert torch.equal(x, to_model_range(batch["x"][keep], model.value_range))
    assert out.parts["labelled"].item() == 2
    none = model({"x": batch["x"], "y": torch.full((4,), -1)})
    assert len(losses) == 1 and none.parts["ce"].item() == 0.0 and none.parts["labelled"].item() == 0.0
    none.loss.backward()


def test_labelled_buffer_push():
    buf = LabelledBuffer(3, (1, 2, 2))
    img = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1).expand(10, 1, 2, 2)
    lab = torch.arange(10)
    assert buf.push(img[0:2], lab[0:2]) is None and int(buf.count) == 2
    x, y = buf.push(img[2:4], lab[2:4])
    assert torch.equal(y, torch.tensor([0, 1, 2])) and torch.equal(x, img[0:3]) and int(buf.count) == 1
    assert buf.push(img[4:4], lab[4:4]) is None and int(buf.count) == 1
    x, y = buf.push(img[4:6], lab[4:6])
    assert torch.equal(y, torch.tensor([3, 4, 5])) and torch.equal(x, img[3:6]) and int(buf.count) == 0
    x, y = buf.push(img[6:9], lab[6:9])  # exactly full: released at once
    assert torch.equal(y, torch.tensor([6, 7, 8])) and int(buf.count) == 0
    assert buf.y.dtype == torch.int64 and buf.x.dtype == torch.float32
    with pytest.raises(InputError) as err:
        buf.push(img[0:4], lab[0:4])
    assert "buffer_size" in one_line(err)
    multi = LabelledBuffer(2, (1, 2, 2), (5,), torch.float32)
    assert multi.push(img[:1], torch.ones(1, 5)) is None
    x, y = multi.push(img[1:2], torch.zeros(1, 5))
    assert y.shape == (2, 5) and torch.equal(y[0], torch.ones(5))


# ------------------------------------------------------------------------------------ sampling

@pytest.fixture(scope="module")
def sampling_models():
    models = {}
    for key, config in {"ancestral": {}, "ddim": {"sampler": "ddim"}, "respaced": {"sample_steps": 10},
                        "ddim-respaced": {"sampler": "ddim", "sample_steps": 10}}.items():
        models[key] = tiny_joint(num_classes=4, config=config).eval()
    return models


@pytest.mark.parametrize("key", ["ancestral", "ddim", "respaced", "ddim-respaced"])
def test_alpha_zero_equals_unconditional_sampling(sampling_models, key):
    model = sampling_models[key]
    cond = torch.tensor([0, 1, 2, 3])

    def gen():
        return torch.Generator().manual_seed(11)

    plain = model.sample(4, generator=gen())
    assert torch.equal(model.sample(4, cond, alpha=0.0, generator=gen()), plain)
    seen = []
    with_steps = model.sample(4, cond, alpha=0.0, generator=gen(), on_step=lambda t, p: seen.append((t.clone(), p)))
    assert torch.equal(with_steps, plain)
    n_steps = model.config.sample_steps or model.config.steps
    assert len(seen) == n_steps
    assert int(seen[0][0][0]) == model.config.steps - 1 and int(seen[-1][0][0]) == 0  # original timesteps
    assert seen[0][1].shape == (4, 4) and torch.allclose(seen[0][1].sum(1), torch.ones(4))
    guided = []
    model.sample(4, cond, alpha=100.0, generator=gen(), on_step=lambda t, p: guided.append(p))
    assert torch.equal(guided[0], seen[0][1]) and not torch.allclose(guided[-1], seen[-1][1])  # α acts


@pytest.fixture(scope="module")
def trained_zero_one():
    """A joint model (noisy="reference": the head sees x_t at every t) trained for 150 Adam steps on
    the digits 0 (class 0) and 1 (class 1). Feature-space guidance on a model this small is
    sensitive to its training run (the direction it pushes depends on how the decoder answers a
    change of Z); this seeded run is one where Alg. 1 behaves as on the published models."""
    data = load_dataset("digits", "train")
    keep = (data.labels == 0) | (data.labels == 1)
    x, y = data.images[keep], (data.labels[keep] == 1).long()
    model = tiny_joint(num_classes=2, perturb=False, noisy="reference", loss_weight="reference")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    order = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randint(0, len(x), (128,), generator=order)
        out = model({"x": x[idx], "y": y[idx]})
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("target", [0, 1])
def test_guidance_raises_the_target_probability(trained_zero_one, target):
    model = trained_zero_one
    cond = torch.full((32,), target)

    def chain(alpha):
        probs = []
        model.sample(32, cond, alpha=alpha, generator=torch.Generator().manual_seed(1),
                     on_step=lambda t, p: probs.append(float(p[:, target].mean())))
        return probs

    plain, guided = chain(0.0), chain(1000.0)
    first, last = sum(guided[:5]) / 5, sum(guided[-5:]) / 5
    assert last > first + 0.1, (first, last)
    assert last > plain[-1] + 0.1, (plain[-1], last)


# ------------------------------------------------------------------------------------ Alg. 1 and guidance

class MockNet:
    """encode / classify / decode: small differentiable functions of (h, skips)."""

    def __init__(self, k: int = 3):
        g = torch.Generator().manual_seed(0)
        self.w1 = torch.randn(16, 8, generator=g)
        self.w2 = torch.randn(8, k, generator=g)
        self.decoded = []

    def encode(self, x, t):
        return torch.tanh(x) * 2.0, [x * 3.0 + 1.0, x.flip(-1) ** 2, x[..., :1, :1] - 0.5]

    def features(self, h, skips):
        return torch.cat([h.flatten(1), skips[0].flatten(1), skips[1].flatten(1), skips[2].flatten(1),
                          torch.zeros(h.shape[0], 16 - 13)], dim=1)

    def classify(self, h, skips, t):
        return torch.tanh(self.features(h, skips) @ self.w1) @ self.w2 + 0.01 * t.float()[:, None]

    def decode(self, h, skips, t):
        self.decoded.append((h.clone(), [s.clone() for s in skips]))
        return h - 0.5 * skips[0] + skips[1] * skips[0] + skips[2]


@pytest.mark.parametrize("multi_label", [False, True])
def test_optimised_representations_step_every_tensor(multi_label):
    torch.manual_seed(0)
    net = MockNet(k=3)
    x = torch.randn(3, 1, 2, 2)
    t = torch.tensor([5, 5, 5])
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]) if multi_label else torch.tensor([0, 2, 1])
    alpha = 2.5
    seen = []
    wrapper = OptimisedRepresentations(net.encode, net.decode, net.classify, target, alpha,
                                       on_step=lambda t_, p: seen.append((t_, p)))
    with torch.no_grad():  # as inside the sampling loops
        out = wrapper(x, t)
    h, skips = net.encode(x, t)
    z = [h.clone().requires_grad_(True)] + [s.clone().requires_grad_(True) for s in skips]
    logits = net.classify(z[0], z[1:], t)
    if multi_label:
        ce_sum = F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
    else:
        ce_sum = F.cross_entropy(logits, target, reduction="sum")
    grads = torch.autograd.grad(ce_sum, z)
    expected = [zi.detach() + alpha * gi for zi, gi in zip(z, grads)]  # Z' = Z + α ∇_Z CE_sum
    h_dec, skips_dec = net.decoded[-1]
    assert len(skips_dec) == len(skips)
    for got, want, orig in zip([h_dec, *skips_dec], expected, [h, *skips]):
        assert torch.allclose(got, want, atol=1e-6, rtol=1e-6)
        assert not torch.allclose(got, orig)
    assert torch.allclose(out, net.decode(expected[0], expected[1:], t))
    assert torch.allclose(classification_loss_sum(logits, target), ce_sum)
    probs = torch.sigmoid(logits) if multi_label else logits.softmax(-1)
    assert len(seen) == 1 and torch.equal(seen[0][0], t) and torch.allclose(seen[0][1], probs.detach())


def test_descend_ce_step_flips_the_update():
    net = MockNet()
    x = torch.randn(3, 1, 2, 2)
    t = torch.tensor([2, 2, 2])
    target = torch.tensor([0, 2, 1])
    OptimisedRepresentations(net.encode, net.decode, net.classify, target, 1.5, step="ascend-ce")(x, t)
    OptimisedRepresentations(net.encode, net.decode, net.classify, target, 1.5, step="descend-ce")(x, t)
    h, skips = net.encode(x, t)
    for up, down, z in zip([net.decoded[0][0], *net.decoded[0][1]], [net.decoded[1][0], *net.decoded[1][1]], [h, *skips]):
        assert torch.allclose(up - z, z - down, atol=1e-6) and not torch.allclose(up, z)
    with pytest.raises(ConfigError):
        OptimisedRepresentations(net.encode, net.decode, net.classify, target, 1.5, step="sideways")
    assert JointDiffusionConfig(steps=30, unet=TINY).sampling_step == "ascend-ce"


def test_optimised_representations_alpha_zero_decodes_the_encoding():
    net = MockNet()
    x = torch.randn(2, 1, 2, 2)
    t = torch.tensor([1, 1])
    out = OptimisedRepresentations(net.encode, net.decode, net.classify, torch.tensor([0, 1]), 0.0)(x, t)
    h, skips = net.encode(x, t)
    assert torch.equal(out, net.decode(h, skips, t))
    assert torch.equal(net.decoded[0][0], h) and all(torch.equal(a, b) for a, b in zip(net.decoded[0][1], skips))
    with pytest.raises(InputError) as err:
        OptimisedRepresentations(net.encode, net.decode, net.classify, torch.tensor([0, 1]), -1.0)
    assert "alpha" in one_line(err)
    with pytest.raises(InputError):
        OptimisedRepresentations(net.encode, net.decode, net.classify, torch.tensor([0]), 1.0)(x, t)


def test_classifier_guidance_is_the_scaled_log_probability_gradient():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 4, generator=g)

    def classifier(x, t):
        return torch.tanh(x.flatten(1) @ w) * 3.0 + 0.001 * t.float()[:, None]

    x = torch.randn(3, 1, 4, 4, generator=g)
    t = torch.tensor([4, 9, 0])
    y = torch.tensor([2, 0, 3])
    got = classifier_guidance(classifier, y, 2.5)(x, t)  # the sampling loops call it with autograd enabled
    leaf = x.clone().requires_grad_(True)
    selected = F.log_softmax(classifier(leaf, t), dim=-1)[torch.arange(3), y].sum()
    want = torch.autograd.grad(selected, leaf)[0] * 2.5
    assert got.shape == x.shape and torch.allclose(got, want, atol=1e-6)
    with pytest.raises(InputError):
        classifier_guidance(classifier, y, -1.0)


# ------------------------------------------------------------------------------------ domain adaptation

def test_train_false_freezes_the_head(digits):
    model = tiny_joint(train=False)
    assert not any(p.requires_grad for p in model.head.parameters())
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    unet_before = {k: v.clone() for k, v in model.unet.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.5)
    x = digits.batch(slice(0, 16))["x"]
    for batch in ({"x": x}, {"x": x, "y": torch.full((16,), -1)}, {"x": x}):
        out = model(batch)  # no labels needed
        assert "ce" not in out.parts
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    for k, v in model.head.state_dict().items():
        assert torch.equal(v, head_before[k]), k
    assert any(not torch.equal(v, unet_before[k]) for k, v in model.unet.state_dict().items())


# ------------------------------------------------------------------------------------ bad input

def test_bad_sampling_input_is_a_one_line_error():
    model = tiny_joint(num_classes=3).eval()
    with pytest.raises(InputError) as err:
        model.sample(2, torch.tensor([0, 1]), alpha=-1.0)
    assert "alpha" in one_line(err)
    for cond in (torch.tensor([0, 3]), torch.tensor([-1, 0])):
        with pytest.raises(InputError) as err:
            model.sample(2, cond)
        assert "class ids" in one_line(err)
    with pytest.raises(InputError) as err:
        model.sample(2, torch.rand(2, 3))
    one_line(err)
    with pytest.raises(InputError) as err:
        model.sample(2, alpha=10.0)
    one_line(err)
    torch.manual_seed(0)
    plain = DDGM(DDGMConfig(steps=30, unet=TINY), image_shape=SHAPE).eval()
    with pytest.raises(InputError) as err:
        plain.sample(2, torch.tensor([0, 1]))
    assert "unconditional" in one_line(err)


def test_bad_training_input_is_a_one_line_error(digits):
    model = tiny_joint(num_classes=3)
    x = digits.batch(slice(0, 4))["x"]
    with pytest.raises(InputError) as err:
        model({"x": x, "y": torch.tensor([0, 1, 2, 3])})
    assert "labels" in one_line(err)
    with pytest.raises(InputError) as err:
        model({"x": x, "y": torch.rand(4, 3)})
    assert "multi-label" in one_line(err)
    with pytest.raises(InputError) as err:
        model({"x": x})
    one_line(err)
    buffered = tiny_joint(num_classes=10, buffer_size=2)
    with pytest.raises(InputError) as err:
        buffered(digits.batch(slice(0, 5)))
    assert "buffer_size" in one_line(err)


@pytest.mark.parametrize("kwargs, key", [
    ({"classifier": {"loss_weight": -0.5}}, "loss_weight"),
    ({"classifier": {"loss_weight": "paper"}}, "loss_weight"),
    ({"classifier": {"noisy": "sometimes"}}, "noisy"),
    ({"classifier": {"noisy": "thesis", "noisy_timesteps": [5, 30]}}, "noisy_timesteps"),
    ({"classifier": {"noisy_timesteps": [0]}}, "noisy_timesteps"),
    ({"classifier": {"dropout": 1.0}}, "dropout"),
    ({"classifier": {"buffer_size": 0}}, "buffer_size"),
    ({"sampling_alpha": -1.0}, "sampling_alpha"),
])
def test_bad_configs_name_the_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        JointDiffusionConfig(steps=30, unet=TINY, **kwargs)
    assert key in one_line(err)


# ------------------------------------------------------------------------------------ UNet classifiers

def tiny_classifier(noisy: bool) -> UNetClassifier:
    torch.manual_seed(0)
    cfg = UNetClassifierConfig(unet=TINY, classifier=ClassifierSettings(augmentation=False, dropout=0.0),
                               noisy=noisy, steps=30)
    return UNetClassifier(cfg, image_shape=SHAPE, num_classes=10)


def test_unet_classifier_clean(digits, monkeypatch):
    model = tiny_classifier(noisy=False)
    assert model.unet.output_blocks is None and model.diffusion is None
    calls = logits_calls(model, monkeypatch)
    batch = digits.batch(slice(0, 8))
    out = model(batch)
    x, t = calls[0]
    assert len(calls) == 1 and not t.any() and torch.equal(x, to_model_range(batch["x"], model.value_range))
    assert set(out.parts) == {"accuracy", "labelled"} and torch.isfinite(out.loss)
    h, skips = model.unet.encode(x, t)
    with pytest.raises(InputError) as err:
        model.unet.decode(h, skips, t)
    assert "encoder-only" in one_line(err)
    with pytest.raises(InputError):
        model.unet(x, t)


def test_unet_classifier_noisy_and_unlabelled(digits, monkeypatch):
    model = tiny_classifier(noisy=True)
    noised = spy(monkeypatch, model.diffusion, "q_sample")
    losses = spy(monkeypatch, model, "class_loss")
    calls = logits_calls(model, monkeypatch)
    batch = digits.batch(slice(0, 8))
    y = batch["y"].clone()
    y[[0, 3, 4]] = -1
    torch.manual_seed(2)
    out = model({"x": batch["x"], "y": y})
    keep = y >= 0
    (x0, t_q), _, x_t = noised[0]
    assert torch.equal(x0, to_model_range(batch["x"][keep], model.value_range))
    x_seen, t_seen = calls[0]
    assert torch.equal(t_seen, t_q) and t_seen.any() and (t_seen < 30).all()
    assert torch.equal(x_seen, x_t)
    (_, targets, _), _, _ = losses[0]
    assert torch.equal(targets, y[keep]) and out.parts["labelled"].item() == 5
    empty = model({"x": batch["x"], "y": torch.full((8,), -1)})
    assert empty.loss.item() == 0.0 and empty.parts["labelled"].item() == 0
    empty.loss.backward()


# ------------------------------------------------------------------------------------ report and CLI

def test_confusion_matrix_and_accuracy(digits, tmp_path):
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    path = classifier_report.plot_confusion_matrix(labels, torch.tensor([0, 1, 2, 1, 1, 0]), tmp_path / "cm.png",
                                                   class_names=["a", "b", "c"])
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = digits.subset(slice(0, 40))

    class Oracle:
        def predict(self, x):
            assert torch.equal(x, data.images)
            return data.labels.clone()

    class Wrong(Oracle):
        def predict(self, x):
            return (data.labels + 1) % 10

    assert classifier_report.has_classifier(Oracle())
    assert classifier_report.accuracy(Oracle(), data) == 1.0
    assert classifier_report.accuracy(Wrong(), data) == 0.0


def test_cli_trains_a_joint_model(tmp_path):
    from genrep.cli.main import main

    out = tmp_path / "joint"
    unet = ["model.steps=30", "model.unet.model_channels=16", "model.unet.channel_mult=[1,2]",
            "model.unet.num_res_blocks=1", "model.unet.middle_attention=false", "model.unet.dropout=0.0",
            "train.log_every=10", "train.checkpoint_every=10", "train.batch_size=64"]
    argv = ["train", "joint-ddgm", "--dataset", "digits", "--out", str(out), "--steps", "20", "--no-progress"]
    for item in unet:
        argv += ["--set", item]
    assert main(argv) == 0
    assert (out / "confusion_matrix.png").is_file()
    rows = [json.loads(line) for line in (out / "accuracy.jsonl").read_text().splitlines() if line.strip()]
    assert rows and all(0.0 <= r["test_accuracy"] <= 1.0 for r in rows) and rows[-1]["step"] == 20
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "joint-ddgm" and 0.0 <= summary["test_accuracy"] <= 1.0
