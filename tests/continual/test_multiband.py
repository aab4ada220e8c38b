"""Multiband VAE (thesis ch.9): the two-latent VAE, the binary latent, the translator, multiband training,
controlled forgetting, the ablation switches, the VAE baselines and resuming."""

import copy

import pytest
import torch
from torch import nn

from genrep.continual.multiband import JointVAE, MultibandVAE, RegularisedVAE, SeparateVAEs
from genrep.continual.multiband import multiband as multiband_module
from genrep.continual.multiband.forgetting import replace_similar_targets
from genrep.continual.multiband.networks import (ConcatConditioner, Translator, build_networks, check_task_code,
                                                 task_bits)
from genrep.continual.multiband.settings import MultibandSettings, VAESettings
from genrep.continual.multiband.vae import GenerativePart, gumbel_bits, gumbel_temperature
from genrep.continual.runner import run_scenario
from genrep.continual.scenario import Scenario, Task
from genrep.continual.scenarios import build_scenario
from genrep.data.dataset import ImageDataset
from genrep.errors import ConfigError, InputError

TINY = dict(width=4, latent=2, bits=2, epochs=2, batch_size=16, global_epochs=2, translator_warmup=1)


def digits(n_tasks: int = 3, limit: int = 60) -> Scenario:
    scenario = build_scenario("split-digits", limit=limit)
    return Scenario(scenario.name, scenario.tasks[:n_tasks], scenario.image_shape, scenario.value_range,
                    scenario.num_classes)


def learn_all(learner, scenario):
    learner.setup(scenario)
    for task in scenario:
        learner.learn(task)
    return learner


# -- binary latent -------------------------------------------------------------------------------------------

def test_gumbel_bits_are_plus_minus_one_soft_and_hard():
    logits = torch.randn(50, 6)
    for tau in (1.0, 0.3, None):
        bits = gumbel_bits(logits, tau)
        if tau is None:
            assert set(bits.unique().tolist()) <= {-1.0, 1.0}
        assert bits.shape == logits.shape and bits.abs().max() <= 1


def test_hard_straight_through_gradient_equals_the_soft_one():
    logits = torch.randn(20, 5)
    weight = torch.randn(20, 5)
    grads = []
    for tau in (1.0, None):
        leaf = logits.clone().requires_grad_(True)
        torch.manual_seed(3)  # the same Gumbel noise for both
        (gumbel_bits(leaf, tau) * weight).sum().backward()
        grads.append(leaf.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    torch.manual_seed(3)
    hard = gumbel_bits(logits, None)
    torch.manual_seed(3)
    soft = gumbel_bits(logits, 1.0)
    assert torch.equal(hard, torch.where(soft > 0, 1.0, -1.0))  # the hard sample is the soft one rounded


def test_bit_probability_is_sigmoid_of_twice_the_logit():
    torch.manual_seed(0)
    logits = torch.full((40000, 1), 0.4)
    share = (gumbel_bits(logits, None) > 0).float().mean()
    assert abs(float(share) - float(torch.sigmoid(torch.tensor(0.8)))) < 0.01


def test_temperature_schedule():
    assert gumbel_temperature(0, 70) == 1.0
    assert gumbel_temperature(12, 70) == pytest.approx(1 - 60 / 70)
    assert gumbel_temperature(13, 70) is None  # τ = 0.071 < 0.1: hard from epoch 13 (E = 70)
    assert gumbel_temperature(37, 210) is not None and gumbel_temperature(38, 210) is None


class FixedBitsEncoder(nn.Module):
    """λ = 0; bit 0 always +1, bit 1 always −1, bit 2 +1 exactly for images brighter than 0.5 on average."""

    def forward(self, x):
        bright = (x.flatten(1).mean(1, keepdim=True) > 0.5).float() * 2 - 1
        logits = torch.cat([torch.full_like(bright, 50.0), torch.full_like(bright, -50.0), 50 * bright], dim=1)
        zeros = torch.zeros(len(x), 1, device=x.device) + 0 * self.dummy
        return zeros, zeros - 10, logits

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))


def test_bit_prior_equals_the_bit_frequencies_of_the_task_encodings():
    images = torch.cat([torch.full((30, 1, 8, 8), 0.9), torch.full((10, 1, 8, 8), 0.1)])
    data = ImageDataset(images, torch.zeros(40, dtype=torch.long), name="digits")
    scenario = Scenario("bright", (Task(0, "t0", data, data),), (1, 8, 8), (0.0, 1.0), 1)
    learner = MultibandVAE(width=4, latent=1, bits=3, epochs=3, batch_size=8,
                           encoder=lambda shape, s: FixedBitsEncoder())
    learn_all(learner, scenario)
    assert torch.allclose(learner.generatives[0].bit_prior, torch.tensor([[1.0, 0.0, 0.75]]))
    torch.manual_seed(0)
    bits = learner.generatives[0].prior_bits(torch.zeros(4000, dtype=torch.long))
    assert torch.all(bits[:, 0] == 1) and torch.all(bits[:, 1] == -1)
    assert abs(float((bits[:, 2] > 0).float().mean()) - 0.75) < 0.03


# -- translator and task codes ---------------------------------------------------------------------------------

def test_task_code_bits_match_the_reference_unpacker():
    # ((t·9) mod 16) + 1, 4 bits MSB first, ±1: t=0 → 1 = 0001, t=1 → 10 = 1010, t=2 → 3 = 0011
    codes = task_bits(torch.tensor([0, 1, 2]), 4, 9)
    assert codes.tolist() == [[-1, -1, -1, 1], [1, -1, 1, -1], [-1, -1, 1, 1]]


def test_task_code_too_short_is_refused():
    check_task_code(10, 4, 9)
    with pytest.raises(ConfigError, match="code_bits"):
        check_task_code(5, 2, 1)


def test_translator_output_depends_on_the_task_code():
    torch.manual_seed(0)
    translator = Translator(latent=3, bits=2, code_bits=4, code_p=9, width=4)
    lam, bits = torch.randn(5, 3), torch.ones(5, 2)
    z0 = translator(lam, bits, torch.zeros(5, dtype=torch.long))
    z1 = translator(lam, bits, torch.ones(5, dtype=torch.long))
    assert z0.shape == (5, 12) and not torch.allclose(z0, z1)
    concat = ConcatConditioner(3, 2, 4, 9)(lam, bits, torch.ones(5, dtype=torch.long))
    assert torch.equal(concat[:, 5:], task_bits(torch.ones(5, dtype=torch.long), 4, 9))


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 44, 44), (3, 64, 64)])
def test_conv_networks_round_trip_shapes(shape):
    encoder, conditioner, decoder = build_networks("conv", shape, latent=3, bits=2, width=4, code_bits=4, code_p=9,
                                                   translator=True)
    mu, log_var, logits = encoder(torch.rand(2, *shape))
    assert mu.shape == (2, 3) and logits.shape == (2, 2)
    out = decoder(conditioner(mu, gumbel_bits(logits, None), torch.zeros(2, dtype=torch.long)))
    assert out.shape == (2, *shape)
    assert (out.min() >= 0 and out.max() <= 1) if shape[1] != 44 else True


def test_fc_mnist_sizes_are_the_reference():
    encoder, translator, decoder = build_networks("fc", (1, 28, 28), latent=8, bits=4, width=32, code_bits=4,
                                                  code_p=9, translator=True)
    assert [m.out_features for m in encoder.layers if isinstance(m, nn.Linear)] == [512, 128, 64]
    assert translator.out_features == 256
    assert [m.out_features for m in decoder.layers if isinstance(m, nn.Linear)] == [512, 1024, 784]


# -- controlled forgetting -----------------------------------------------------------------------------------

def test_controlled_forgetting_replaces_exactly_the_similar_targets():
    prev_z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    current_z = torch.tensor([[1.0, 0.05], [0.6, 0.8]])
    targets = torch.zeros(4, 1, 2, 2)
    current = torch.stack([torch.full((1, 2, 2), 1.0), torch.full((1, 2, 2), 2.0)])
    # max cos: row0 0.9988 (→ current 0), row1 0.8 (→ 1), row2 0.9899 (→ 1), row3 0.6 (current 1 at −0.6)
    new, replaced = replace_similar_targets(prev_z, targets, current_z, current, 0.95)
    assert replaced.tolist() == [True, False, True, False]
    assert new[:, 0, 0, 0].tolist() == [1.0, 0.0, 2.0, 0.0]
    assert torch.equal(targets, torch.zeros(4, 1, 2, 2))  # the input is not modified
    same, none = replace_similar_targets(prev_z, targets, prev_z, current.repeat(2, 1, 1, 1), 1.0)
    assert not none.any() and same is targets  # γ = 1 disables, even for identical latents
    strict, _ = replace_similar_targets(prev_z[:1], targets[:1], prev_z[:1] * 2, current[:1], 0.999999)
    assert strict[0, 0, 0, 0] == 1.0


@pytest.mark.parametrize("gamma", [0.0, 1.5, -0.1])
def test_forgetting_threshold_outside_unit_interval_is_refused(gamma):
    with pytest.raises(ConfigError, match="forgetting_threshold"):
        MultibandSettings(forgetting_threshold=gamma)


def test_binary_latent_of_size_zero_with_the_binary_latent_asked_for_is_refused():
    with pytest.raises(ConfigError, match="bits"):
        VAESettings(bits=0)
    assert VAESettings(bits=0, binary_latent=False).binary_units == 0


# -- training ------------------------------------------------------------------------------------------------

def test_frozen_replay_targets_do_not_change_while_the_global_decoder_trains(monkeypatch):
    scenario = digits(2)
    learner = MultibandVAE(**TINY)
    learner.setup(scenario)
    learner.learn(scenario[0])
    before = copy.deepcopy(learner.generatives[0].state_dict())
    probe = (torch.randn(6, 2), torch.ones(6, 2), torch.zeros(6, dtype=torch.long))
    outputs = []
    real_draw = multiband_module.draw_replay

    def recording_draw(frozen, n, tasks, *, same_z):
        outputs.append(frozen(*probe).clone())
        return real_draw(frozen, n, tasks, same_z=same_z)

    monkeypatch.setattr(multiband_module, "draw_replay", recording_draw)
    old_model = learner.generatives[0]
    learner.learn(scenario[1])
    assert len(outputs) > 2 and all(torch.equal(outputs[0], o) for o in outputs)
    assert all(torch.equal(v, old_model.state_dict()[k]) for k, v in before.items())
    new = learner.generatives[0]
    assert new is not old_model and not torch.allclose(new(*probe), outputs[0])
    assert new.tasks_known == 2


def test_translator_warmup_trains_the_translator_only(monkeypatch):
    scenario = digits(2)
    learner = MultibandVAE(**{**TINY, "global_epochs": 1, "translator_warmup": 1})
    learner.setup(scenario)
    learner.learn(scenario[0])
    decoder_before = copy.deepcopy(learner.generatives[0].decoder.state_dict())
    translator_before = copy.deepcopy(learner.generatives[0].conditioner.state_dict())
    learner.learn(scenario[1])
    new = learner.generatives[0]
    assert all(torch.equal(v, new.decoder.state_dict()[k]) for k, v in decoder_before.items())
    assert not all(torch.equal(v, new.conditioner.state_dict()[k]) for k, v in translator_before.items())


def test_controlled_forgetting_replaces_targets_in_training_and_gamma_one_never():
    scenario = digits(2)
    counts = {}
    for gamma, epochs in ((1.0, 3), (0.2, 3), (0.2, 2)):
        learner = learn_all(MultibandVAE(**{**TINY, "global_epochs": epochs, "forgetting_threshold": gamma}),
                            scenario)
        counts[gamma, epochs] = learner.history[-1]["targets_replaced"]
    assert counts[1.0, 3] == 0 and counts[0.2, 3] > 0
    assert counts[0.2, 2] == 0  # only in epochs after the translator warm-up (epoch > warmup, as the reference)


def parameter_shapes(learner) -> dict[str, tuple]:
    shapes = {f"encoder.{k}": tuple(v.shape) for k, v in learner.encoder.state_dict().items()}
    shapes.update({f"generative.{k}": tuple(v.shape) for k, v in learner.generatives[0].state_dict().items()
                   if k != "bit_prior"})
    return shapes


def changed_parts(a: dict, b: dict) -> set[str]:
    keys = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    return {".".join(k.split(".")[:2]) for k in keys}


BASE = dict(TINY, width=8, translator=True, binary_latent=True, two_step=True, forgetting_threshold=1.0)


def built(**switch):
    learner = MultibandVAE(**{**BASE, **switch})
    learner.setup(digits(2))
    return learner


def test_ablation_switch_translator_changes_only_the_conditioner_and_the_decoder_input():
    diff = changed_parts(parameter_shapes(built()), parameter_shapes(built(translator=False)))
    assert diff == {"generative.conditioner", "generative.decoder"}
    assert isinstance(built(translator=False).generatives[0].conditioner, ConcatConditioner)
    a, b = parameter_shapes(built()), parameter_shapes(built(translator=False))
    decoder_diff = {k for k in a.keys() | b.keys() if k.startswith("generative.decoder") and a.get(k) != b.get(k)}
    assert decoder_diff == {"generative.decoder.layers.0.weight"}  # only its input width


def test_ablation_switch_binary_latent_changes_only_the_bit_head_and_the_translator_bits_branch():
    a, b = parameter_shapes(built()), parameter_shapes(built(binary_latent=False))
    diff = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    assert diff == {"encoder.heads.binary.weight", "encoder.heads.binary.bias", "generative.conditioner.bits_1.weight",
                    "generative.conditioner.bits_1.bias", "generative.conditioner.bits_2.weight",
                    "generative.conditioner.bits_2.bias", "generative.conditioner.hidden.weight"}


@pytest.mark.needs_source("mnist")
def test_ablation_switch_conv_changes_only_encoder_and_decoder():
    scenario = build_scenario("split-mnist", limit=20)
    shapes = []
    for architecture in ("fc", "conv"):
        learner = MultibandVAE(**{**BASE, "architecture": architecture})
        learner.setup(scenario)
        shapes.append(parameter_shapes(learner))
    assert "generative.decoder" in changed_parts(*shapes)
    assert changed_parts(*shapes) <= {"encoder.layers", "encoder.heads", "generative.decoder"}
    assert not {k for k in shapes[0] if k.startswith("generative.conditioner") and shapes[0][k] != shapes[1].get(k)}


def test_ablation_switch_two_step_removes_only_the_global_phase(monkeypatch):
    scenario = digits(2)
    calls = []
    monkeypatch.setattr(MultibandVAE, "global_training",
                        lambda self, *a, **k: calls.append(1) or self.generatives[0])
    learn_all(MultibandVAE(**BASE), scenario)
    assert calls == [1]
    calls.clear()
    one_step = learn_all(MultibandVAE(**{**BASE, "two_step": False}), scenario)
    assert calls == [] and one_step.history[-1] == {"task": 1, "epochs": TINY["epochs"] + TINY["global_epochs"]}


def test_ablation_switch_forgetting_changes_only_the_replay_targets():
    scenario = digits(2)
    # a threshold no similarity reaches leaves training identical to γ = 1 (the switch touches nothing else)
    runs = [learn_all(MultibandVAE(**{**BASE, "global_epochs": 3, "forgetting_threshold": gamma}), scenario)
            for gamma in (1.0, 0.999999)]
    a, b = (r.generatives[0].state_dict() for r in runs)
    assert runs[1].history[-1]["targets_replaced"] == 0
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_warm_local_model_trains_the_encoder_alone_at_a_tenth_of_the_rate_first():
    learner = MultibandVAE(**{**TINY, "local_init": "warm", "lr": 1e-3, "gamma": 0.9})
    learner.setup(digits(2))
    vae = learner.local_vae(0)
    phases = learner.local_phases(vae, 1, 70)
    assert [(start, lr, gamma) for start, _, lr, gamma in phases] == [(0, 1e-4, 0.9), (7, 1e-3, 0.9)]
    assert phases[0][1] == list(vae.encoder.parameters()) and phases[1][1] == list(vae.parameters())
    first = learner.local_phases(vae, 0, 70)
    assert [(start, lr, gamma) for start, _, lr, gamma in first] == [(0, 1e-3, learner.settings.first_task_gamma)]


def test_local_init_fresh_and_warm():
    scenario = digits(2)
    fresh = MultibandVAE(**TINY)
    fresh.setup(scenario)
    fresh.learn(scenario[0])
    encoder0 = fresh.encoder
    fresh.learn(scenario[1])
    assert fresh.encoder is not encoder0
    warm = MultibandVAE(**{**TINY, "local_init": "warm", "encoder_warmup_epochs": 1})
    warm.setup(scenario)
    warm.learn(scenario[0])
    encoder0 = warm.encoder
    warm.learn(scenario[1])
    assert warm.encoder is encoder0


def test_sampling_a_task_never_learned_is_refused():
    learner = MultibandVAE(**TINY)
    learner.setup(digits(2))
    with pytest.raises(InputError, match="no task"):
        learner.sample(4, 0)
    learner.learn(digits(2)[0])
    assert learner.sample(4, 0).shape == (4, 1, 8, 8)
    with pytest.raises(InputError, match="cannot sample task 1"):
        learner.sample(4, 1)


def test_scenario_that_does_not_fit_the_architecture_is_refused():
    with pytest.raises(ConfigError, match="conv architecture"):
        MultibandVAE(**{**TINY, "architecture": "conv"}).setup(digits(2))


@pytest.mark.parametrize("make", [
    lambda: MultibandVAE(**TINY),
    lambda: MultibandVAE(**{**TINY, "two_step": False, "translator": False, "binary_latent": False}),
    lambda: RegularisedVAE(**{k: v for k, v in TINY.items() if k not in ("global_epochs", "translator_warmup")},
                           penalty="ewc", strength=10.0, fisher_samples=20),
    lambda: RegularisedVAE(**{k: v for k, v in TINY.items() if k not in ("global_epochs", "translator_warmup")},
                           penalty="si"),
    lambda: SeparateVAEs(**{k: v for k, v in TINY.items() if k not in ("global_epochs", "translator_warmup")}),
    lambda: JointVAE(**{k: v for k, v in TINY.items() if k not in ("global_epochs", "translator_warmup")}),
])
def test_a_resumed_run_equals_an_uninterrupted_one(make, tmp_path, monkeypatch):
    scenario = digits(3)

    def fid_like(learner, task):  # a cheap deterministic evaluator of the samples
        if task.index >= learner.tasks_learned:
            return {"score": float("nan")}
        torch.manual_seed(task.index)
        return {"score": float(learner.sample(16, task.index).mean())}

    full = run_scenario(make(), scenario, tmp_path / "full", evaluate=fid_like, progress=False, log=None)
    learner = make()
    original = type(learner).learn
    calls = []

    def interrupted(self, task):
        calls.append(task.index)
        if task.index == 2 and len(calls) == 3:
            raise KeyboardInterrupt
        original(self, task)

    monkeypatch.setattr(type(learner), "learn", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_scenario(learner, scenario, tmp_path / "cut", evaluate=fid_like, progress=False, log=None)
    monkeypatch.setattr(type(learner), "learn", original)
    resumed_learner = make()
    resumed = run_scenario(resumed_learner, scenario, tmp_path / "cut", evaluate=fid_like, resume=True,
                           progress=False, log=None)
    assert torch.allclose(torch.tensor(full.matrices["score"]), torch.tensor(resumed.matrices["score"]),
                          equal_nan=True)
    upper = torch.triu(torch.ones(3, 3, dtype=torch.bool), diagonal=1)
    assert torch.isnan(torch.tensor(full.matrices["score"]))[upper].all()


def test_separate_models_answer_their_own_task_and_memory_grows():
    learner = learn_all(SeparateVAEs(**{k: v for k, v in TINY.items() if k not in ("global_epochs",
                                                                                  "translator_warmup")}), digits(3))
    assert len(learner.generatives) == 3 and learner.generative_for(2) is learner.generatives[2]
    one = learner.memory_bytes() / 3
    assert learner.memory_bytes() == pytest.approx(3 * one)


def test_generative_part_prior_rows_are_appended_in_order():
    part = GenerativePart(ConcatConditioner(1, 2, 4, 9), nn.Identity(), 1, 2)
    part.set_bit_prior(0, torch.tensor([0.5, 1.0]))
    with pytest.raises(InputError):
        part.set_bit_prior(2, torch.tensor([0.5, 1.0]))


def test_kl_and_loss_match_torch_distributions():
    from torch.distributions import Normal, kl_divergence

    from genrep.continual.multiband.vae import kl_to_standard_normal, negative_elbo_per_image, vae_loss

    mu, log_var = torch.randn(5, 3), torch.randn(5, 3)
    expected = kl_divergence(Normal(mu, (0.5 * log_var).exp()), Normal(0.0, 1.0)).sum()
    assert torch.allclose(kl_to_standard_normal(mu, log_var), expected, atol=1e-5)
    x, recon = torch.rand(5, 1, 2, 2), torch.rand(5, 1, 2, 2) * 0.98 + 0.01
    per_image = negative_elbo_per_image(recon, x, mu, log_var, kind="bce", scale=2.0)
    bce = -(x * recon.log() + (1 - x) * (1 - recon).log()).flatten(1).sum(1)
    kl = kl_divergence(Normal(mu, (0.5 * log_var).exp()), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(per_image, 2 * bce + kl, atol=1e-4)
    assert torch.allclose(vae_loss(recon, x, mu, log_var, kind="bce", scale=2.0), per_image.mean(), atol=1e-4)


def test_replay_shares_z_across_previous_tasks_and_splits_equally():
    part = GenerativePart(ConcatConditioner(3, 2, 4, 9), nn.Identity(), 3, 2)
    part.set_bit_prior(0, torch.tensor([1.0, 0.0]))
    part.set_bit_prior(1, torch.tensor([0.0, 1.0]))
    part.set_bit_prior(2, torch.tensor([0.5, 0.5]))
    assert multiband_module.replay_counts(7, 3) == [3, 2, 2]
    lam, bits, tasks, targets = multiband_module.draw_replay(part, 7, 3, same_z=True)
    assert tasks.tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert torch.equal(lam[3:5], lam[:2]) and torch.equal(lam[5:7], lam[:2])
    assert bits[:3].tolist() == [[1, -1]] * 3 and bits[3:5].tolist() == [[-1, 1]] * 2
    assert torch.equal(targets[:, :3], lam)  # the frozen model's output for those latents (identity decoder)
    assert torch.equal(targets[:, 5:], task_bits(tasks, 4, 9))  # decoded with each sample's own task code
    lam, *_ = multiband_module.draw_replay(part, 7, 3, same_z=False)
    assert not torch.equal(lam[3:5], lam[:2])


@pytest.mark.parametrize("cap, expected", [(None, [32, 64, 96, 128]), (3, [32, 64, 96, 96])])
def test_replay_count_per_iteration(cap, expected):
    learner = MultibandVAE(replay_task_cap=cap)
    assert [learner.n_replay(64, t) for t in (1, 2, 3, 4)] == expected


@pytest.mark.parametrize("penalty", ["ewc", "si"])
def test_the_penalty_enters_every_step_after_the_first_task(penalty, monkeypatch):
    scenario = digits(2)
    settings = {k: v for k, v in TINY.items() if k not in ("global_epochs", "translator_warmup")}
    learner = RegularisedVAE(**settings, penalty=penalty, strength=3.0, fisher_samples=30)
    learner.setup(scenario)
    calls, events = [], []
    real_penalty = type(learner.regulariser).penalty

    def spy(self, model):
        value = real_penalty(self, model)
        calls.append(float(value))
        events.append("penalty")
        return value

    monkeypatch.setattr(type(learner.regulariser), "penalty", spy)
    if penalty == "si":
        for hook in ("before_step", "after_step"):
            real = getattr(type(learner.regulariser), hook)
            monkeypatch.setattr(type(learner.regulariser), hook,
                                lambda self, model, real=real, hook=hook: (events.append(hook), real(self, model)))
    learner.learn(scenario[0])
    assert calls == []  # nothing to hold before the first task ends
    events.clear()
    learner.learn(scenario[1])
    steps = settings["epochs"] * -(-len(scenario[1].train) // settings["batch_size"])
    assert len(calls) >= steps - settings["epochs"] and any(c > 0 for c in calls)
    if penalty == "si":  # g is recorded before the penalty's gradient is added
        assert events[:3] == ["before_step", "penalty", "after_step"]


def test_ewc_fisher_is_taken_from_the_per_image_negative_elbo(monkeypatch):
    from genrep.continual.multiband import baselines as vae_baselines

    seen = {}
    real = vae_baselines.diagonal_fisher

    def recording(model, batches, loss_fn, **kw):
        batches = list(batches)
        seen["rows"] = sum(len(b) for b in batches)
        seen["losses"] = loss_fn(batches[0])
        return real(model, batches, loss_fn, **kw)

    monkeypatch.setattr(vae_baselines, "diagonal_fisher", recording)
    settings = {k: v for k, v in TINY.items() if k not in ("global_epochs", "translator_warmup")}
    learner = RegularisedVAE(**settings, penalty="ewc", fisher_samples=30)
    learner.setup(digits(1))
    learner.learn(digits(1)[0])
    assert seen["rows"] == 30 and seen["losses"].shape == (25,) and bool((seen["losses"] > 0).all())
