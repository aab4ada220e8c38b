"""EWC / SI parameter-importance penalties (genrep.continual.regularizers) against hand computations."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from genrep.continual.regularizers import EWCPenalty, SIImportance, diagonal_fisher
from genrep.errors import CheckpointError, ConfigError, InputError

W, B = (0.5, -1.0), 0.25  # the Linear(2, 1) of the Fisher tests: f(x) = w·x + b
BATCHES = [[(1.0, 2.0), (0.0, 1.0)], [(3.0, -1.0)]]


def _linear(w=W, b=B) -> nn.Linear:
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([w]))
        model.bias.copy_(torch.tensor([b]))
    return model


def _squared_error(model: nn.Module):
    """ℓ(x) = (w·x + b − 1)², per sample."""
    return lambda x: (model(x).squeeze(1) - 1.0).pow(2)


def _hand_gradients(x) -> list[float]:
    """∂ℓ/∂(w1, w2, b) of ℓ = (w·x + b − 1)²: 2r·x1, 2r·x2, 2r with r = w·x + b − 1."""
    r = W[0] * x[0] + W[1] * x[1] + B - 1.0
    return [2 * r * x[0], 2 * r * x[1], 2 * r]


def _as_fisher(values) -> dict[str, torch.Tensor]:
    return {"weight": torch.tensor([values[:2]]), "bias": torch.tensor(values[2:])}


def _batches():
    return [torch.tensor(b) for b in BATCHES]


# -- diagonal_fisher -------------------------------------------------------------------------------------------


def test_per_sample_fisher_is_the_mean_squared_gradient_of_each_sample():
    samples = [x for batch in BATCHES for x in batch]
    # r = −2.25, −1.75, 1.75: gradients (−4.5, −9, −4.5), (0, −3.5, −3.5), (10.5, −3.5, 3.5)
    expected = [sum(_hand_gradients(x)[i] ** 2 for x in samples) / len(samples) for i in range(3)]
    assert expected == pytest.approx([(4.5**2 + 10.5**2) / 3, (81 + 2 * 3.5**2) / 3, (4.5**2 + 2 * 3.5**2) / 3])
    model = _linear()
    fisher = diagonal_fisher(model, _batches(), _squared_error(model))
    assert fisher.keys() == {"weight", "bias"}
    assert fisher["weight"].shape == model.weight.shape and not fisher["weight"].requires_grad
    torch.testing.assert_close(fisher["weight"], _as_fisher(expected)["weight"])
    torch.testing.assert_close(fisher["bias"], _as_fisher(expected)["bias"])


def test_batch_mean_fisher_squares_the_mean_gradient_of_each_batch():
    means = [[sum(_hand_gradients(x)[i] for x in batch) / len(batch) for i in range(3)] for batch in BATCHES]
    expected = [sum(m[i] ** 2 for m in means) / len(means) for i in range(3)]
    # batch 1: mean gradient (−2.25, −6.25, −4); batch 2: (10.5, −3.5, 3.5)
    assert expected == pytest.approx([(2.25**2 + 10.5**2) / 2, (6.25**2 + 3.5**2) / 2, (16 + 3.5**2) / 2])
    model = _linear()
    fisher = diagonal_fisher(model, _batches(), _squared_error(model), per_sample=False)
    torch.testing.assert_close(fisher["weight"], _as_fisher(expected)["weight"])
    torch.testing.assert_close(fisher["bias"], _as_fisher(expected)["bias"])
    per_sample = diagonal_fisher(model, _batches(), _squared_error(model))
    assert not torch.allclose(per_sample["weight"], fisher["weight"])  # E[g²] ≥ (E g)² within a batch
    assert (per_sample["bias"] >= fisher["bias"] - 1e-6).all()


def test_fisher_leaves_grads_alone_restores_modes_and_skips_frozen_parameters():
    model = nn.Sequential(_linear(), nn.Dropout(0.5))
    model[1].eval()  # mixed modes: the Sequential and the Linear train, the Dropout does not
    model[0].bias.requires_grad_(False)
    model[0].weight.grad = torch.tensor([[7.0, -7.0]])
    modes_seen = []

    def loss_fn(x):
        modes_seen.append([m.training for m in model.modules()])
        return (model(x).squeeze(1) - 1.0).pow(2)

    fisher = diagonal_fisher(model, _batches(), loss_fn)
    assert modes_seen and all(not any(modes) for modes in modes_seen)  # evaluated in eval mode (no dropout)
    assert [m.training for m in model.modules()] == [True, True, False]
    assert torch.equal(model[0].weight.grad, torch.tensor([[7.0, -7.0]])) and model[0].bias.grad is None
    assert fisher.keys() == {"0.weight"}
    samples = [x for batch in BATCHES for x in batch]
    expected = [sum(_hand_gradients(x)[i] ** 2 for x in samples) / 3 for i in range(2)]
    torch.testing.assert_close(fisher["0.weight"], torch.tensor([expected]))


def test_fisher_restores_modes_when_the_loss_fails():
    model = _linear().train()
    with pytest.raises(InputError, match="per-sample losses"):
        diagonal_fisher(model, _batches(), lambda x: _squared_error(model)(x).mean())
    assert model.training


def test_fisher_of_a_stochastic_conv_vae_is_seeded_and_finite():
    from genrep.models.networks import log_normal_kl
    from genrep.models.vae import VAE, VAEConfig

    vae = VAE(VAEConfig(arch="conv", channels=[4, 8], latent_dim=2), image_shape=(1, 28, 28))  # has BatchNorm

    def negative_elbo(x):
        mu, logvar = vae.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return vae.negative_log_likelihood(x, vae.decoder(z, None)) + log_normal_kl(mu, logvar)

    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        runs.append(diagonal_fisher(vae, [x], negative_elbo))
    assert runs[0].keys() == {n for n, _ in vae.named_parameters()}
    for name, f in runs[0].items():
        assert torch.isfinite(f).all() and (f >= 0).all() and torch.equal(f, runs[1][name])


def test_fisher_refuses_bad_losses_and_batches():
    model = _linear()
    with pytest.raises(InputError, match=r"shape \(2,\); got \(2, 1\)"):
        diagonal_fisher(model, _batches(), lambda x: model(x) - 1.0, per_sample=False)
    with pytest.raises(InputError, match="per-sample losses"):
        diagonal_fisher(model, _batches(), lambda x: model(x).sum())
    with pytest.raises(InputError, match="no batches"):
        diagonal_fisher(model, [], _squared_error(model))
    with pytest.raises(InputError, match="non-empty batches"):
        diagonal_fisher(model, [torch.zeros(0, 2)], _squared_error(model))


# -- EWC --------------------------------------------------------------------------------------------------------

# parameters (w1, w2, b) of two finished tasks, their Fisher values, and the current parameters
THETA_1, F_1 = (1.0, 2.0, -1.0), (0.5, 2.0, 1.0)
THETA_2, F_2 = (0.0, 1.0, 0.5), (1.0, 0.25, 4.0)
THETA = (0.5, -1.0, 0.25)


def _consolidated(ewc: EWCPenalty, *tasks) -> nn.Linear:
    """Consolidate (θ*_k, F_k) for each task, then return the model at THETA."""
    model = _linear()
    for theta, f in tasks:
        with torch.no_grad():
            model.weight.copy_(torch.tensor([theta[:2]]))
            model.bias.copy_(torch.tensor(theta[2:]))
        ewc.consolidate(model, _as_fisher(f))
    with torch.no_grad():
        model.weight.copy_(torch.tensor([THETA[:2]]))
        model.bias.copy_(torch.tensor(THETA[2:]))
    return model


def _quadratic(f, theta) -> float:
    return sum(fi * (t - a) ** 2 for fi, t, a in zip(f, THETA, theta))


def test_ewc_penalty_sums_one_anchor_per_task():
    ewc = EWCPenalty(3.0)
    model = _linear()
    assert ewc.penalty(model).item() == 0.0 and ewc.penalty(model).dim() == 0 and len(ewc) == 0
    model = _consolidated(ewc, (THETA_1, F_1), (THETA_2, F_2))
    # task 1: 0.5·0.25 + 2·9 + 1·1.5625 = 19.6875; task 2: 1·0.25 + 0.25·4 + 4·0.0625 = 1.5
    assert _quadratic(F_1, THETA_1) == pytest.approx(19.6875) and _quadratic(F_2, THETA_2) == pytest.approx(1.5)
    assert len(ewc) == 2
    assert ewc.penalty(model).item() == pytest.approx(3.0 / 2 * (19.6875 + 1.5))


def test_ewc_penalty_gradient_is_strength_times_fisher_times_distance():
    ewc = EWCPenalty(3.0)
    model = _consolidated(ewc, (THETA_1, F_1), (THETA_2, F_2))
    ewc.penalty(model).backward()
    expected = [3.0 * (F_1[i] * (THETA[i] - THETA_1[i]) + F_2[i] * (THETA[i] - THETA_2[i])) for i in range(3)]
    torch.testing.assert_close(model.weight.grad, torch.tensor([expected[:2]]))
    torch.testing.assert_close(model.bias.grad, torch.tensor(expected[2:]))


def test_online_ewc_decays_the_running_fisher_and_keeps_the_latest_anchor():
    f_3, theta_3 = (2.0, 1.0, 0.5), (1.0, 0.0, 0.0)
    ewc = EWCPenalty(2.0, online=True, gamma=0.5)
    model = _consolidated(ewc, (THETA_1, F_1), (THETA_2, F_2))
    running = [0.5 * a + b for a, b in zip(F_1, F_2)]  # F ← γF + F_k: (1.25, 1.25, 4.5)
    assert ewc.penalty(model).item() == pytest.approx(2.0 / 2 * _quadratic(running, THETA_2))
    model = _consolidated(ewc, (theta_3, f_3))  # a third task
    running = [0.5 * r + c for r, c in zip(running, f_3)]
    assert len(ewc) == 3 and len(ewc.state_dict()["anchors"]) == 1
    assert ewc.penalty(model).item() == pytest.approx(2.0 / 2 * _quadratic(running, theta_3))


def test_ewc_stores_copies_and_refuses_a_mismatched_fisher():
    ewc = EWCPenalty(1.0)
    model = _linear(w=THETA_1[:2], b=THETA_1[2])
    fisher = _as_fisher(F_1)
    ewc.consolidate(model, fisher)
    fisher["weight"].mul_(100.0)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([THETA[:2]]))
        model.bias.copy_(torch.tensor(THETA[2:]))
    assert ewc.penalty(model).item() == pytest.approx(0.5 * _quadratic(F_1, THETA_1))
    with pytest.raises(InputError, match="names differ: bias"):
        ewc.consolidate(model, {"weight": torch.ones(1, 2)})
    with pytest.raises(InputError, match=r"fisher\['weight'\] has shape \(2,\)"):
        ewc.consolidate(model, {"weight": torch.ones(2), "bias": torch.ones(1)})
    with pytest.raises(InputError, match="EWC anchor"):
        ewc.penalty(nn.Linear(2, 3))


def test_ewc_state_dict_round_trip_through_a_safe_torch_file():
    ewc = EWCPenalty(3.0)
    model = _consolidated(ewc, (THETA_1, F_1), (THETA_2, F_2))
    buffer = io.BytesIO()
    torch.save(ewc.state_dict(), buffer)
    buffer.seek(0)
    restored = EWCPenalty(3.0)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert len(restored) == 2
    assert restored.penalty(model).item() == pytest.approx(ewc.penalty(model).item())
    with pytest.raises(CheckpointError, match="offline"):
        EWCPenalty(3.0, online=True).load_state_dict(ewc.state_dict())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"strength": -1.0}, "strength"), ({"strength": float("nan")}, "strength"),
    ({"strength": 1.0, "online": True, "gamma": 0.0}, r"gamma must be in \(0, 1\]"),
    ({"strength": 1.0, "online": True, "gamma": 1.5}, r"gamma must be in \(0, 1\]"),
    ({"strength": 1.0, "gamma": 0.5}, "online EWC only")])
def test_ewc_refuses_bad_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        EWCPenalty(**kwargs)


# -- SI ---------------------------------------------------------------------------------------------------------

A = (1.0, 4.0)  # curvatures of the quadratic task losses L(θ) = ½ Σ_i a_i (θ_i − m_i)², ∂L/∂θ_i = a_i (θ_i − m_i)
M_1, M_2 = (1.0, -1.0), (-1.0, 2.0)  # their minima in tasks 1 and 2
LR, C, XI = 0.1, 0.5, 0.1


class _Point(nn.Module):
    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(2))


def _task_loss(model: _Point, m) -> torch.Tensor:
    return 0.5 * (torch.tensor(A) * (model.theta - torch.tensor(m)).pow(2)).sum()


def _train(si: SIImportance, model: _Point, m, steps: int) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    for _ in range(steps):
        optimizer.zero_grad()
        _task_loss(model, m).backward()
        si.before_step(model)
        si.penalty(model).backward()
        optimizer.step()
        si.after_step(model)


def _hand_si_task(theta, m, steps, omega_big=(0.0, 0.0), anchor=(0.0, 0.0), penalty_in_g=False):
    """Plain-SGD SI by hand, per coordinate: g = a(θ − m), p = 2cΩ(θ − θ*) (the penalty's gradient),
    θ' = θ − η(g + p), ω += −g(θ' − θ) (−(g + p)(θ' − θ): the wrong path integral, for penalty_in_g).
    Returns (θ at the end, ω)."""
    theta, omega = list(theta), [0.0, 0.0]
    for _ in range(steps):
        for i in range(2):
            g = A[i] * (theta[i] - m[i])
            p = 2 * C * omega_big[i] * (theta[i] - anchor[i])
            new = theta[i] - LR * (g + p)
            omega[i] += -(g + p if penalty_in_g else g) * (new - theta[i])
            theta[i] = new
    return theta, omega


def test_si_path_integral_and_importance_of_one_task_by_hand():
    # three steps from θ = (0, 0): g = (−1, 4), (−0.9, 2.4), (−0.81, 1.44); without a penalty ω += η g²
    theta, omega = _hand_si_task((0.0, 0.0), M_1, 3)
    assert theta == pytest.approx([0.271, -0.784])
    assert omega == pytest.approx([0.1 * (1 + 0.81 + 0.6561), 0.1 * (16 + 5.76 + 2.0736)])
    importance = [omega[i] / (theta[i] ** 2 + XI) for i in range(2)]  # Δ = θ(end) − θ(start) = θ(end)
    model, si = _Point(), SIImportance(C, damping=XI)
    assert si.penalty(model).item() == 0.0 and len(si) == 0
    si.begin_task(model)
    _train(si, model, M_1, 3)
    torch.testing.assert_close(si.omega["theta"], torch.tensor(omega))
    si.end_task(model)
    assert len(si) == 1 and si.omega is None
    torch.testing.assert_close(si.importance["theta"], torch.tensor(importance))
    torch.testing.assert_close(si.anchor["theta"], torch.tensor(theta))
    # penalty c Σ Ω (θ − θ*)² and its gradient 2cΩ(θ − θ*) at θ = (1, 1)
    with torch.no_grad():
        model.theta.copy_(torch.tensor([1.0, 1.0]))
    model.theta.grad = None
    penalty = si.penalty(model)
    assert penalty.item() == pytest.approx(C * sum(importance[i] * (1.0 - theta[i]) ** 2 for i in range(2)))
    penalty.backward()
    torch.testing.assert_close(model.theta.grad,
                               torch.tensor([2 * C * importance[i] * (1.0 - theta[i]) for i in range(2)]))


def test_si_second_task_uses_the_unregularised_gradient_and_accumulates_importance():
    theta_1, omega_1 = _hand_si_task((0.0, 0.0), M_1, 3)
    importance_1 = [omega_1[i] / (theta_1[i] ** 2 + XI) for i in range(2)]
    theta_2, omega_2 = _hand_si_task(theta_1, M_2, 2, importance_1, theta_1)
    importance_2 = [importance_1[i] + omega_2[i] / ((theta_2[i] - theta_1[i]) ** 2 + XI) for i in range(2)]
    _, wrong = _hand_si_task(theta_1, M_2, 2, importance_1, theta_1, penalty_in_g=True)
    assert all(abs(wrong[i] - omega_2[i]) > 1e-3 for i in range(2))  # the test tells the two apart
    model, si = _Point(), SIImportance(C, damping=XI)
    si.begin_task(model)
    _train(si, model, M_1, 3)
    si.end_task(model)
    si.begin_task(model)
    _train(si, model, M_2, 2)
    torch.testing.assert_close(si.omega["theta"], torch.tensor(omega_2))
    si.end_task(model)
    torch.testing.assert_close(si.importance["theta"], torch.tensor(importance_2))
    torch.testing.assert_close(si.anchor["theta"], torch.tensor(theta_2))
    assert len(si) == 2


def test_si_records_the_task_gradient_before_the_penalty_is_added():
    model, si = _Point(), SIImportance(C, damping=XI)
    si.begin_task(model)
    _train(si, model, M_1, 3)
    si.end_task(model)
    with torch.no_grad():
        model.theta.copy_(torch.tensor([2.0, -2.0]))  # away from θ*: the penalty has a gradient here
    si.begin_task(model)
    model.theta.grad = None
    _task_loss(model, M_2).backward()
    g = model.theta.grad.clone()  # a(θ − m2) = (3, −16)
    torch.testing.assert_close(g, torch.tensor([3.0, -16.0]))
    si.before_step(model)
    si.penalty(model).backward()
    assert not torch.allclose(model.theta.grad, g)
    with torch.no_grad():
        model.theta.add_(torch.tensor([0.5, 0.25]))  # any update Δθ
    si.after_step(model)
    torch.testing.assert_close(si.omega["theta"], torch.tensor([-3.0 * 0.5, 16.0 * 0.25]))


def test_si_state_dict_round_trip_mid_task():
    model, si = _Point(), SIImportance(C, damping=XI)
    si.begin_task(model)
    _train(si, model, M_1, 3)
    si.end_task(model)
    si.begin_task(model)
    _train(si, model, M_2, 1)
    buffer = io.BytesIO()
    torch.save(si.state_dict(), buffer)
    buffer.seek(0)
    restored = SIImportance(C, damping=XI)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    twin = _Point()
    twin.load_state_dict(model.state_dict())
    for learner, net in ((si, model), (restored, twin)):
        _train(learner, net, M_2, 1)
        learner.end_task(net)
    assert len(restored) == 2
    torch.testing.assert_close(restored.importance["theta"], si.importance["theta"])
    torch.testing.assert_close(restored.anchor["theta"], si.anchor["theta"])
    assert restored.penalty(_Point()).item() == pytest.approx(si.penalty(_Point()).item())


def test_si_refuses_bad_settings_and_call_orders():
    for kwargs in ({"strength": -0.1}, {"strength": 1.0, "damping": 0.0}, {"strength": 1.0, "damping": -1.0}):
        with pytest.raises(ConfigError):
            SIImportance(**kwargs)
    model, si = _Point(), SIImportance(C)
    with pytest.raises(RuntimeError, match="begin_task"):
        si.before_step(model)
    si.begin_task(model)
    with pytest.raises(RuntimeError, match="after task_loss.backward"):
        si.before_step(model)
    with pytest.raises(RuntimeError, match="before_step"):
        si.after_step(model)
    with pytest.raises(InputError, match="SI path integral"):
        si.end_task(nn.Linear(1, 1))
