"""van de Ven & Tolias' protocol (`--protocol van-de-ven`, /tmp/vdv/SPEC.md of their `preprints` code): the learner
settings `iterations`, `active_classes` and `reset_optimizer`, the preset, and one GR step checked against the formula
of their code (SPEC §5–6: frozen teacher, active classes incl. the current task, T², 1/t weighting)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from genrep.cli.main import main
from genrep.continual import baselines
from genrep.continual.baselines import FineTune, GenerativeReplay
from genrep.continual.classifier import build_classifier, predict_logits
from genrep.continual.registry import learner_names
from genrep.continual.scenario import Scenario, Task
from genrep.data.dataset import ImageDataset
from genrep.errors import CheckpointError, ConfigError
from genrep.experiments import continual as recipe

PER_TASK = 40
CLASSIFIER = {"classifier": "mlp", "iterations": 4, "batch_size": PER_TASK, "lr": 1e-3, "loss": "ce",
              "active_classes": "seen", "reset_optimizer": False}
GENERATOR = {"latent_dim": 4, "hidden": (16,), "gen_iters": 3, "gen_batch_size": 8, "gen_lr": 1e-3}


def toy_scenario(num_tasks: int = 3, num_classes: int = 8) -> Scenario:
    """Class-incremental tasks {0, 1}, {2, 3}, … of 1×6×6 images (class k brightens pixels 4k … 4k + 3), 20 per
    class; `num_classes` output units, so that with 3 tasks units 6 and 7 are never active."""
    g = torch.Generator().manual_seed(0)
    tasks, offset = [], 0
    for index in range(num_tasks):
        classes = (2 * index, 2 * index + 1)
        views = []
        for n in (PER_TASK, PER_TASK // 2):
            labels = torch.tensor(classes).repeat_interleave(n // 2)
            images = 0.3 * torch.rand(n, 36, generator=g)
            for row, label in enumerate(labels.tolist()):
                images[row, 4 * label:4 * label + 4] += 0.6
            views.append(ImageDataset(images.clamp(0, 1).reshape(n, 1, 6, 6), labels))
        tasks.append(Task(index, f"toy {classes}", views[0], views[1], classes=classes,
                          global_index=torch.arange(offset, offset + PER_TASK)))
        offset += PER_TASK
    return Scenario("toy-vdv", tuple(tasks), (1, 6, 6), num_classes=num_classes)


def run(learner, tasks):
    for task in tasks:
        learner.begin_task(task)
        learner.learn(task)
        learner.end_task(task)
    return learner


def adam_steps(optimizer: torch.optim.Optimizer) -> int:
    return int(next(iter(optimizer.state.values()))["step"])


# -- the settings -------------------------------------------------------------------------------------------


def test_defaults_keep_the_shared_protocol():
    s = baselines.GRSettings()
    assert (s.iterations, s.active_classes, s.reset_optimizer) == (None, "all", True)
    learner = FineTune()
    learner.setup(toy_scenario(1))
    run(learner, toy_scenario(1).tasks)
    assert learner.optimizer is None and learner.state_dict()["optimizer"] is None  # a fresh Adam every task
    with pytest.raises(ConfigError, match="active_classes must be one of all, seen"):
        FineTune(active_classes="current")
    with pytest.raises(ConfigError, match="need iterations >= 1"):
        FineTune(iterations=0)


def test_active_classes_seen_trains_only_the_units_of_the_classes_seen_so_far():
    scenario = toy_scenario()
    learner = FineTune(**CLASSIFIER)
    learner.setup(scenario)
    initial = copy.deepcopy(learner.model.head)
    moved = lambda: [not torch.equal(a, b) for a, b in zip(learner.model.head.weight, initial.weight)]
    run(learner, scenario.tasks[:1])
    assert moved() == [True] * 2 + [False] * 6  # task {0, 1}: units 2 … 7 got no gradient
    run(learner, scenario.tasks[1:2])
    assert moved() == [True] * 4 + [False] * 4  # the current task's units are active too
    everything = FineTune(**{**CLASSIFIER, "active_classes": "all"})
    everything.setup(scenario)
    initial = copy.deepcopy(everything.model.head)
    run(everything, scenario.tasks[:1])
    assert all(not torch.equal(a, b) for a, b in zip(everything.model.head.weight, initial.weight))


@pytest.mark.parametrize("distill", [False, True])
def test_reset_optimizer_false_keeps_both_adams_across_tasks_and_in_the_state(distill):
    scenario = toy_scenario()
    settings = {**CLASSIFIER, **GENERATOR, "distill": distill, "distill_temperature": 2.0 if distill else 1.0}
    learner = GenerativeReplay(**settings)
    learner.setup(scenario)
    sizes = []
    learner.vae.register_forward_hook(lambda module, args, out: sizes.append(len(args[0]["x"])))
    run(learner, scenario.tasks[:1])
    optimizer, gen_optimizer = learner.optimizer, learner.gen_optimizer
    assert adam_steps(optimizer) == 4 and adam_steps(gen_optimizer) == 3  # `iterations` and `gen_iters` steps
    assert sizes == [8] * 3  # the generator's batches are full ones too
    after_first = learner.state_dict()
    run(learner, scenario.tasks[1:])
    assert learner.optimizer is optimizer and learner.gen_optimizer is gen_optimizer  # kept, not remade
    assert adam_steps(optimizer) == 12 and adam_steps(gen_optimizer) == 9
    x = scenario[2].test.images
    # resumed from the state after task 0 (optimiser moments included), tasks 1 and 2 repeat the uninterrupted run
    resumed = GenerativeReplay(**settings)
    resumed.setup(scenario)
    resumed.load_state_dict(after_first)
    assert adam_steps(resumed.optimizer) == 4 and adam_steps(resumed.gen_optimizer) == 3
    run(resumed, scenario.tasks[1:])
    assert torch.equal(resumed.predict(x), learner.predict(x))
    assert all(torch.equal(a, b) for a, b in zip(resumed.vae.state_dict().values(), learner.vae.state_dict().values()))
    # without the moments (a fresh Adam at task 1) the run differs: the state is what makes resume exact
    fresh = GenerativeReplay(**settings)
    fresh.setup(scenario)
    fresh.load_state_dict(after_first)
    fresh.optimizer = fresh.gen_optimizer = None
    run(fresh, scenario.tasks[1:])
    assert not torch.equal(fresh.predict(x), learner.predict(x))
    with pytest.raises(CheckpointError, match="reset_optimizer is false but the saved state holds no optimizer"):
        resumed.load_state_dict({**after_first, "optimizer": None})


def test_joint_training_from_scratch_remakes_the_kept_optimizer_with_the_network():
    scenario = toy_scenario(2)
    learner = baselines.JointTraining(**CLASSIFIER)
    learner.setup(scenario)
    run(learner, scenario.tasks[:1])
    first = learner.optimizer
    run(learner, scenario.tasks[1:])
    assert learner.optimizer is not first and adam_steps(learner.optimizer) == 4
    assert {id(p) for p in learner.model.parameters()} == {id(p) for g in learner.optimizer.param_groups
                                                          for p in g["params"]}


# -- one GR step against the formula of van de Ven & Tolias' code --------------------------------------------


@pytest.mark.parametrize("distill", [False, True])
def test_a_gr_step_is_van_de_vens_loss(distill, monkeypatch):
    """At task t = 3 (classes {4, 5}; units 6, 7 never active) the first batch's loss is
    (1/t)·CE(z[:, :6], y) + (1 − 1/t)·L_replay, L_replay = CE(z_[:, :6], argmax z_teacher[:, :4]) (GR) or
    T²·mean(−Σ p log softmax(z_[:, :6]/T)), p = softmax(z_teacher[:, :4]/T) padded with zeros (GR + distill,
    T = 2), z_teacher from the classifier frozen after task 2; every replay batch of the task is labelled by that
    frozen copy. Catches a missing T², a live teacher, active classes without the current task and an inverted
    weighting."""
    T = 2.0 if distill else 1.0
    scenario = toy_scenario()
    learner = GenerativeReplay(**CLASSIFIER, **GENERATOR, distill=distill, distill_temperature=T)
    learner.setup(scenario)
    run(learner, scenario.tasks[:2])
    teacher = copy.deepcopy(learner.model)
    seen = {}
    real_fit = baselines.fit_classifier

    def fit_spy(model, images, labels, **kwargs):
        replay, draws = kwargs["replay"], []

        def recording(n):
            x, y = replay(n)
            draws.append((x.clone(), y.clone()))
            return x, y

        seen["draws"] = draws
        seen["history"] = real_fit(model, images, labels, **{**kwargs, "replay": recording})
        return seen["history"]

    monkeypatch.setattr(baselines, "fit_classifier", fit_spy)
    run(learner, scenario.tasks[2:])
    assert len(seen["draws"]) == 4 and len(seen["history"]) == 4  # one full batch per pass: one loss per batch

    def frozen_targets(x):
        z = predict_logits(teacher, x)[:, :4]  # the previous tasks' classes
        return F.pad((z / T).softmax(1), (0, 4)) if distill else z.argmax(1)

    for x, y in seen["draws"]:
        assert torch.allclose(y, frozen_targets(x), atol=1e-6) if distill else torch.equal(y, frozen_targets(x))
    x_new, y_new = scenario[2].train.images, scenario[2].train.labels
    x_old, y_old = seen["draws"][0]
    current = F.cross_entropy(teacher(x_new)[:, :6], y_new)  # the student is the teacher before its first step
    if distill:
        replayed = T**2 * -(y_old[:, :6] * (teacher(x_old)[:, :6] / T).log_softmax(1)).sum(1).mean()
    else:
        replayed = F.cross_entropy(teacher(x_old)[:, :6], y_old)
    t = 3
    assert seen["history"][0] == pytest.approx((current / t + (1 - 1 / t) * replayed).item(), rel=1e-5)


# -- the preset ----------------------------------------------------------------------------------------------

SPEC_CLASSIFIER = {"classifier": "mlp", "iterations": 2000, "batch_size": 128, "lr": 1e-3, "loss": "ce",
                   "active_classes": "seen", "reset_optimizer": False}
SPEC_GENERATOR = {"latent_dim": 100, "hidden": (400, 400), "gen_iters": 2000, "gen_batch_size": 128, "gen_lr": 1e-3}


def test_the_preset_resolves_to_the_spec():
    gr = recipe.method_settings("gr", "cpu", "van-de-ven")
    assert gr == {**SPEC_CLASSIFIER, **SPEC_GENERATOR}
    assert recipe.method_settings("gr-distill", "cpu", "van-de-ven") == {**gr, "distill_temperature": 2.0}
    settings = recipe.learner_settings("gr-distill", "cpu", protocol="van-de-ven")
    assert settings.distill and settings.distill_temperature == 2.0 and settings.classifier == "mlp"
    assert recipe.method_settings("gr", "paper", "van-de-ven") == gr  # the protocol sets the classifier too
    assert recipe.method_settings("finetune", "cpu", "van-de-ven") == SPEC_CLASSIFIER
    for method in ("er", "joint"):
        assert recipe.learner_settings(method, "cpu", protocol="van-de-ven").iterations == 2000
    smoke = recipe.method_settings("gr-distill", "smoke", "van-de-ven")
    assert smoke["iterations"] == smoke["gen_iters"] == 100
    assert recipe.method_settings("finetune", "smoke", "van-de-ven")["iterations"] == 100
    model = build_classifier(recipe.learner_settings("gr", "smoke", protocol="van-de-ven").classifier, (1, 28, 28), 10)
    assert sum(p.numel() for p in model.parameters()) == 478_410  # 784-400-400-10
    for method in learner_names():  # the default protocol is today's
        for scale in recipe.SCALES:
            assert recipe.method_settings(method, scale) == recipe.method_settings(method, scale, "shared")
    assert "iterations" not in recipe.method_settings("gr", "cpu")


def test_the_preset_refuses_binplay_and_unknown_protocols_in_one_line(capsys):
    with pytest.raises(ConfigError, match="^--protocol van-de-ven is for gr, gr-distill, er, finetune, joint, not "
                                          "binplay; use --protocol shared$"):
        recipe.method_settings("binplay", "cpu", "van-de-ven")
    with pytest.raises(ConfigError, match="unknown protocol 'vdv'; valid: shared, van-de-ven"):
        recipe.learner_settings("gr", "cpu", protocol="vdv")
    assert main(["continual", "binplay", "--protocol", "van-de-ven", "--out", "/nonexistent/x"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["continual", "--help"])
    assert "--protocol" in capsys.readouterr().out


def test_the_protocol_is_recorded_and_a_resume_with_another_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["continual", "finetune", "--scenario", "split-digits", "--out", str(out), "--set", "iterations=2",
            "--no-progress"]
    assert main([*args, "--protocol", "van-de-ven"]) == 0
    assert "protocol van-de-ven" in capsys.readouterr().out
    record = json.loads((out / recipe.CONFIG).read_text())
    assert record["protocol"] == "van-de-ven" and record["settings"]["iterations"] == 2
    assert json.loads((out / "summary.json").read_text())["protocol"] == "van-de-ven"
    assert main([*args, "--resume"]) == 2  # the default protocol, shared
    err = capsys.readouterr().err
    assert "protocol ('van-de-ven' → 'shared')" in err and "--protocol van-de-ven" in err
    assert main([*args, "--protocol", "van-de-ven", "--resume"]) == 0
    # a run folder written before protocols existed (no "protocol", none of the new settings) is a shared one
    shared = recipe.run_record("gr", "split-digits", "cpu", recipe.learner_settings("gr", "cpu"))
    legacy = {k: v for k, v in shared.items() if k != "protocol"}
    legacy["settings"] = {k: v for k, v in shared["settings"].items()
                          if k not in ("iterations", "active_classes", "reset_optimizer")}
    (tmp_path / recipe.CONFIG).write_text(json.dumps(legacy))
    recipe.check_run_config(tmp_path, shared, resume=True)
    vdv = recipe.run_record("gr", "split-digits", "cpu", recipe.learner_settings("gr", "cpu", protocol="van-de-ven"),
                            "van-de-ven")
    with pytest.raises(ConfigError, match=r"protocol \('shared' → 'van-de-ven'\); resume with the stored values "
                                          r"\(--protocol shared\)"):
        recipe.check_run_config(tmp_path, vdv, resume=True)
