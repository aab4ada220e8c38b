import copy

import pytest
import torch
from torch import nn

from genrep.continual.classifier import (CLASSIFIERS, BaseClassifier, LeNetG, build_classifier, fit_classifier,
                                         predict_logits, sample_losses)
from genrep.continual.seeding import shuffled_batches
from genrep.errors import InputError


def quadrant_problem(n=240, seed=0):
    """4 classes of 1×8×8 images: class k has a bright 4×4 quadrant k, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    images = 0.3 * torch.rand(n, 1, 8, 8, generator=g)
    for k, (r, c) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
        images[labels == k, :, r:r + 4, c:c + 4] += 0.6
    return images.clamp(0, 1), labels


def accuracy(model, images, labels):
    return (predict_logits(model, images).argmax(1) == labels).float().mean().item()


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 30, 26)])
def test_base_classifier_shapes(shape):
    model = BaseClassifier(shape, 10, width=2)
    assert model(torch.rand(5, *shape)).shape == (5, 10)
    assert predict_logits(model, torch.rand(3, *shape), batch_size=2).shape == (3, 10)
    with pytest.raises(InputError, match="expects images"):
        model(torch.rand(2, shape[0], shape[1] + 1, shape[2]))
    with pytest.raises(InputError, match="side >= 4"):
        BaseClassifier((1, 3, 3), 10)


@pytest.mark.parametrize("loss", ["mse-softmax", "ce"])
@pytest.mark.parametrize("soft", [False, True])
def test_fit_classifier_learns_separable_problem(loss, soft):
    images, labels = quadrant_problem()
    targets = 0.7 * torch.nn.functional.one_hot(labels, 4).float() + 0.075 if soft else labels
    torch.manual_seed(0)
    model = BaseClassifier((1, 8, 8), 4)
    history = fit_classifier(model, images, targets, epochs=6, batch_size=32, loss=loss,
                             generator=torch.Generator().manual_seed(0))
    assert len(history) == 6 and history[-1] < history[0]
    test_images, test_labels = quadrant_problem(seed=1)
    assert accuracy(model, test_images, test_labels) > 0.9  # chance: 0.25


def test_fit_classifier_is_seeded_and_weights_scale_the_loss():
    images, labels = quadrant_problem(n=64)

    def run(weights=None):
        torch.manual_seed(1)
        model = BaseClassifier((1, 8, 8), 4)
        losses = fit_classifier(model, images, labels, epochs=2, batch_size=16, weights=weights,
                                generator=torch.Generator().manual_seed(3))
        return model, losses

    (a, losses_a), (b, losses_b) = run(), run()
    assert losses_a == losses_b
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    frozen, losses = run(weights=torch.zeros(64))
    torch.manual_seed(1)
    initial = BaseClassifier((1, 8, 8), 4)
    assert losses == [0.0, 0.0]
    assert all(torch.equal(p, q) for p, q in zip(frozen.parameters(), initial.parameters()))


def test_fit_classifier_replay_teaches_classes_absent_from_the_new_data():
    images, labels = quadrant_problem()
    new, old = labels < 2, labels >= 2
    g = torch.Generator().manual_seed(0)

    def replay(n):
        rows = torch.randint(int(old.sum()), (n,), generator=g)
        return images[old][rows], labels[old][rows]

    torch.manual_seed(0)
    model = BaseClassifier((1, 8, 8), 4)
    fit_classifier(model, images[new], labels[new], epochs=6, batch_size=32, generator=g, replay=replay,
                   replay_ratio=0.5)
    test_images, test_labels = quadrant_problem(seed=1)
    assert accuracy(model, test_images, test_labels) > 0.9


def test_fit_classifier_rejects_bad_inputs():
    images, labels = quadrant_problem(n=16)
    model = BaseClassifier((1, 8, 8), 4)
    with pytest.raises(InputError, match="15 labels for 16 images"):
        fit_classifier(model, images, labels[:15], epochs=1)
    with pytest.raises(InputError, match="probabilities"):
        fit_classifier(model, images, torch.rand(16, 3), epochs=1)
    with pytest.raises(InputError, match=r"labels must lie in \[0, 4\)"):
        fit_classifier(model, images, labels + 1, epochs=1)
    with pytest.raises(InputError, match="loss must be one of"):
        fit_classifier(model, images, labels, loss="hinge")
    with pytest.raises(InputError, match="weights must have shape"):
        fit_classifier(model, images, labels, weights=torch.ones(3))
    with pytest.raises(InputError, match="replay_ratio"):
        fit_classifier(model, images, labels, replay_ratio=1.5)


def test_predict_logits_uses_eval_mode_and_restores_training_mode():
    model = BaseClassifier((1, 8, 8), 4)
    x = torch.rand(7, 1, 8, 8)
    model.train()
    first, second = predict_logits(model, x, batch_size=3), predict_logits(model, x)
    assert model.training and torch.allclose(first, second, atol=1e-6)  # no dropout, running statistics
    model.eval()
    assert torch.allclose(first, model(x), atol=1e-6) and not model.training


# -- LeNetG, the BinPlay reference classifier (REFERENCE_CODE.md §4.3) -------------------------------------


def lenetg_parameters(channels, side, classes=10):
    """The reference LeNetG's parameter count written out: 3 bias-free k4 convs with batch norm (weight +
    bias), FC(256·⌊side/8⌋² → 84), FC(84 → classes)."""
    convs = channels * 64 * 16 + 64 * 128 * 16 + 128 * 256 * 16
    norms = 2 * (64 + 128 + 256)
    return convs + norms + (256 * (side // 8) ** 2 * 84 + 84) + (84 * classes + classes)


@pytest.mark.parametrize("shape, last_map", [((1, 28, 28), 3), ((3, 32, 32), 4), ((1, 32, 32), 4), ((1, 8, 8), 1)])
def test_lenetg_shapes(shape, last_map):
    model = LeNetG(shape, 10)
    x = torch.rand(5, *shape)
    convs = model.features[:-1]  # without the flatten
    assert convs(x).shape == (5, 256, last_map, last_map)  # 28 → 14 → 7 → 3, 32 → 16 → 8 → 4
    assert model(x).shape == (5, 10) and model.head[0].in_features == 256 * last_map**2
    with pytest.raises(InputError, match="expects images"):
        model(torch.rand(2, shape[0], shape[1] + 1, shape[2]))
    with pytest.raises(InputError, match="side >= 8"):
        LeNetG((1, 7, 7), 10)


def test_lenetg_parameter_count_is_the_references():
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(LeNetG((1, 28, 28), 10)) == lenetg_parameters(1, 28) == 851_750  # "≈ 0.85 M" (METHODS.md §4)
    assert count(LeNetG((3, 32, 32), 10)) == lenetg_parameters(3, 32) == 1_004_326
    assert count(BaseClassifier((1, 28, 28), 10)) == 108_238  # ours, for comparison


def test_lenetg_layers_are_the_references():
    model = LeNetG((1, 28, 28), 10)
    kinds = [type(m) for m in model.modules() if not isinstance(m, (nn.Sequential, LeNetG))]
    block = [nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU, nn.Dropout]
    assert kinds == 3 * block + [nn.Flatten, nn.Linear, nn.LeakyReLU, nn.Dropout, nn.Linear]
    dropouts = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [0.6] * 4  # the reference ignores --base_dropout_rate 0.4
    assert all(m.negative_slope == 0.01 for m in model.modules() if isinstance(m, nn.LeakyReLU))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [64, 128, 256]
    assert all(m.kernel_size == (4, 4) and m.stride == (2, 2) and m.padding == (1, 1) and m.bias is None
               for m in convs)
    assert [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] == [84, 10]


def test_classifiers_are_chosen_by_name():
    assert set(CLASSIFIERS) == {"lenet5", "lenetg", "mlp"}
    for name in CLASSIFIERS:
        model = build_classifier(name, (1, 28, 28), 10, width=1)
        assert model.arch == name and model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert isinstance(build_classifier("lenetg", (1, 28, 28), 10), LeNetG)
    with pytest.raises(InputError, match="unknown classifier 'resnet'; valid: lenet5, lenetg, mlp"):
        build_classifier("resnet", (1, 28, 28), 10)


# -- losses and the distillation temperature ---------------------------------------------------------------


def soft_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 5, generator=g, dtype=torch.float64)
    teacher = torch.randn(6, 5, generator=g, dtype=torch.float64)
    return logits, teacher


def test_sample_losses_at_temperature_1_are_the_plain_losses():
    logits, teacher = soft_problem()
    y = teacher.softmax(1)
    assert torch.equal(sample_losses(logits, y, "mse-softmax"), (logits.softmax(1) - y).pow(2).mean(1))
    assert torch.equal(sample_losses(logits, y, "ce"), -(y * logits.log_softmax(1)).sum(1))
    assert torch.equal(sample_losses(logits, y, "ce", temperature=1.0), sample_losses(logits, y, "ce"))
    with pytest.raises(InputError, match="temperature must be > 0"):
        sample_losses(logits, y, "ce", temperature=0.0)


@pytest.mark.parametrize("T", [2.0, 0.5, 5.0])
def test_ce_distillation_gradient_is_t_squared_times_the_kl_gradient_at_temperature(T):
    """Hinton et al. (2015): with soft targets p = softmax(z_t/T), d/dz [T²·KL(p ‖ softmax(z/T))] =
    T·(softmax(z/T) − p); the loss must scale the student's logits by 1/T and the loss by T²."""
    logits, teacher = soft_problem()
    p = (teacher / T).softmax(1)
    z = logits.clone().requires_grad_(True)
    sample_losses(z, p, "ce", temperature=T).sum().backward()
    analytic = T * ((logits / T).softmax(1) - p)
    assert torch.allclose(z.grad, analytic, atol=1e-12)
    # the same gradient from KL(p ‖ q_T) by autograd, times T²
    z2 = logits.clone().requires_grad_(True)
    kl = (p * (p.log() - (z2 / T).log_softmax(1))).sum(1)
    (T**2 * kl).sum().backward()
    assert torch.allclose(z.grad, z2.grad, atol=1e-12)
    # a student at T = 1 against the T-softened teacher (only the teacher scaled) has another gradient
    assert not torch.allclose(analytic, logits.softmax(1) - p, atol=1e-3)


def test_mse_softmax_distillation_compares_both_softmaxes_at_temperature():
    logits, teacher = soft_problem()
    T = 2.0
    p = (teacher / T).softmax(1)
    expected = T**2 * ((logits / T).softmax(1) - p).pow(2).mean(1)
    assert torch.allclose(sample_losses(logits, p, "mse-softmax", temperature=T), expected, atol=1e-15)
    # T = 1 with the T = 1 teacher is the same function at the unscaled logits
    assert torch.allclose(sample_losses(logits / T, p, "mse-softmax"), expected / T**2, atol=1e-15)


class Linear(nn.Module):
    """A deterministic classifier (no dropout, no batch norm) for one-step checks of fit_classifier."""

    def __init__(self, num_classes=3):
        super().__init__()
        self.num_classes = num_classes
        self.layer = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.layer(x.flatten(1))


@pytest.mark.parametrize("loss", ["mse-softmax", "ce"])
@pytest.mark.parametrize("T", [1.0, 2.0])
def test_fit_classifier_applies_the_temperature_to_the_replayed_rows_only(loss, T):
    g = torch.Generator().manual_seed(0)
    images, labels = torch.rand(8, 1, 2, 2, generator=g), torch.randint(3, (8,), generator=g)
    past_x, past_y = torch.rand(8, 1, 2, 2, generator=g), (torch.randn(8, 3, generator=g) / T).softmax(1)
    torch.manual_seed(0)
    model = Linear()
    manual = copy.deepcopy(model)
    history = fit_classifier(model, images, labels, epochs=1, batch_size=8, lr=0.1, loss=loss,
                             generator=torch.Generator().manual_seed(5), replay=lambda n: (past_x[:n], past_y[:n]),
                             replay_ratio=0.25, replay_temperature=T)
    # the same Adam step written out with the pre-temperature formulas
    order = shuffled_batches(8, 8, torch.Generator().manual_seed(5))[0]
    x = torch.cat([images[order], past_x])
    y = torch.cat([torch.nn.functional.one_hot(labels[order], 3).float(), past_y])
    z = manual(x)
    if T == 1:  # the code before the temperature existed, verbatim
        per_sample = (z.softmax(1) - y).pow(2).mean(1) if loss == "mse-softmax" else -(y * z.log_softmax(1)).sum(1)
    else:
        new = (z[:8].softmax(1) - y[:8]).pow(2).mean(1) if loss == "mse-softmax" else -(y[:8] * z[:8].log_softmax(1)).sum(1)
        zt = z[8:] / T
        old = (zt.softmax(1) - y[8:]).pow(2).mean(1) if loss == "mse-softmax" else -(y[8:] * zt.log_softmax(1)).sum(1)
        per_sample = torch.cat([new, T**2 * old])
    batch_loss = 0.75 * per_sample[:8].mean() + 0.25 * per_sample[8:].mean()
    # the loss value (Adam's first step is nearly sign(gradient), so the parameters alone say little)
    assert history[0] == batch_loss.item() if T == 1 else history[0] == pytest.approx(batch_loss.item(), rel=1e-6)
    optimizer = torch.optim.Adam(manual.parameters(), lr=0.1)
    optimizer.zero_grad()
    batch_loss.backward()
    optimizer.step()
    for a, b in zip(model.parameters(), manual.parameters()):
        assert torch.equal(a, b) if T == 1 else torch.allclose(a, b, atol=1e-6)
    with pytest.raises(InputError, match="replay_temperature must be > 0"):
        fit_classifier(model, images, labels, epochs=1, replay_temperature=-1.0)


# -- the "mlp" classifier and van de Ven & Tolias' schedule (iterations, active classes, kept optimiser) -------


def test_mlp_classifier_is_van_de_vens_solver():
    from genrep.continual.classifier import MLPClassifier

    model = build_classifier("mlp", (1, 28, 28), 10)
    assert isinstance(model, MLPClassifier) and model.arch == "mlp"
    assert sum(p.numel() for p in model.parameters()) == 784 * 400 + 400 + 400 * 400 + 400 + 400 * 10 + 10 == 478_410
    kinds = [type(m) for m in model.modules() if not isinstance(m, (nn.Sequential, MLPClassifier))]
    assert kinds == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]  # no batch norm, no dropout
    assert [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] == [400, 400, 10]
    assert model(torch.rand(5, 1, 28, 28)).shape == (5, 10)
    wide = build_classifier("mlp", (3, 32, 32), 4, width=2)  # any C×H×W is flattened; width scales the units
    assert [m.out_features for m in wide.modules() if isinstance(m, nn.Linear)] == [800, 800, 4]
    assert wide.features[1].in_features == 3 * 32 * 32 and wide(torch.rand(2, 3, 32, 32)).shape == (2, 4)
    with pytest.raises(InputError, match="expects images"):
        model(torch.rand(2, 1, 28, 27))


def record_batches(model):
    sizes = []
    model.register_forward_hook(lambda module, args, out: sizes.append(len(args[0])))
    return sizes


def test_iterations_train_exactly_that_many_full_batches_reshuffled_every_pass():
    from genrep.continual.seeding import full_batches

    images, labels = quadrant_problem(n=50)
    model = Linear(4)
    model.layer = nn.Linear(64, 4)
    sizes = record_batches(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = fit_classifier(model, images, labels, epochs=99, batch_size=16, iterations=7, optimizer=optimizer,
                             generator=torch.Generator().manual_seed(0))
    assert sizes == [16] * 7  # full batches only: 3 per pass of 50 rows, the 2 left over dropped
    assert optimizer.state[model.layer.weight]["step"] == 7 and len(history) == 3  # passes of 3, 3, 1 batches
    batches = list(full_batches(50, 16, 7, torch.Generator().manual_seed(0)))
    assert len(batches) == 7 and all(len(b) == 16 for b in batches)
    for first in (0, 3):  # within a pass no row repeats; the second pass is a new permutation
        assert len(torch.cat(batches[first:first + 3]).unique()) == 48
    assert not torch.equal(torch.cat(batches[:3]), torch.cat(batches[3:6]))
    with pytest.raises(InputError, match="need >= batch_size images"):
        fit_classifier(model, images[:10], labels[:10], batch_size=16, iterations=3)


def test_active_classes_cut_the_loss_to_those_units_and_the_others_get_no_gradient():
    from genrep.continual.seeding import full_batches

    images, labels = quadrant_problem(n=64)
    new = labels < 2
    past_x, past_y = images[~new][:8], torch.tensor([[0.7, 0.3, 0.0, 0.0]]).repeat(8, 1)
    replay = {"replay": lambda n: (past_x[:n], past_y[:n]), "replay_ratio": 0.5, "replay_temperature": 2.0}
    torch.manual_seed(0)
    start = Linear(4)
    start.layer = nn.Linear(64, 4)
    model, grads = copy.deepcopy(start), []
    model.layer.weight.register_hook(lambda g: grads.append(g.clone()))
    fit_classifier(model, images[new], labels[new], batch_size=8, iterations=5, loss="ce", active_classes=[1, 0],
                   generator=torch.Generator().manual_seed(0), **replay)
    assert len(grads) == 5 and all((g[2:] == 0).all() and (g[:2] != 0).any() for g in grads)
    assert torch.equal(model.layer.weight[2:], start.layer.weight[2:]) and \
        torch.equal(model.layer.bias[2:], start.layer.bias[2:])  # the inactive units did not move
    # one step is the formula over the active units only: CE on the new rows, T²·KD on the replayed ones
    one = copy.deepcopy(start)
    history = fit_classifier(one, images[new], labels[new], batch_size=8, iterations=1, loss="ce",
                             active_classes=[0, 1], generator=torch.Generator().manual_seed(0), **replay)
    order = next(full_batches(int(new.sum()), 8, 1, torch.Generator().manual_seed(0)))
    manual = copy.deepcopy(start)
    z_new, z_old = manual(images[new][order])[:, :2], manual(past_x)[:, :2]
    loss = 0.5 * torch.nn.functional.cross_entropy(z_new, labels[new][order]) + \
        0.5 * 4 * -(past_y[:, :2] * (z_old / 2).log_softmax(1)).sum(1).mean()
    assert history == [pytest.approx(loss.item(), rel=1e-6)]
    optimizer = torch.optim.Adam(manual.parameters(), lr=2e-3)
    loss.backward()
    optimizer.step()
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(one.parameters(), manual.parameters()))
    # without active classes every unit learns (the inactive ones are pushed down)
    full = copy.deepcopy(start)
    fit_classifier(full, images[new], labels[new], batch_size=8, iterations=5, loss="ce",
                   generator=torch.Generator().manual_seed(0))
    assert not torch.equal(full.layer.weight[2:], start.layer.weight[2:])
    with pytest.raises(InputError, match=r"active_classes must be classes in \[0, 4\)"):
        fit_classifier(model, images, labels, epochs=1, active_classes=[0, 4])
    with pytest.raises(InputError, match="outside active_classes"):
        fit_classifier(model, images, labels, epochs=1, active_classes=[0, 1])


def test_a_kept_optimizer_carries_its_state_between_calls():
    images, labels = quadrant_problem(n=64)
    torch.manual_seed(0)
    model = Linear(4)
    model.layer = nn.Linear(64, 4)
    twice, once = copy.deepcopy(model), copy.deepcopy(model)
    optimizer = torch.optim.Adam(twice.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        fit_classifier(twice, images, labels, batch_size=32, iterations=2, optimizer=optimizer, generator=g)
    assert optimizer.state[twice.layer.weight]["step"] == 4
    # the same as one call of 4 iterations over the same batches (2 full batches per pass)
    fit_classifier(once, images, labels, batch_size=32, iterations=4, lr=1e-3, generator=torch.Generator().manual_seed(0))
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(once.parameters(), twice.parameters()))
    fresh = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):  # a fresh Adam per call (the default) restarts its moments: another result
        fit_classifier(fresh, images, labels, batch_size=32, iterations=2, lr=1e-3, generator=g)
    assert not all(torch.allclose(a, b, atol=1e-7) for a, b in zip(fresh.parameters(), twice.parameters()))
