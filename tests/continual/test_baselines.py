import copy
import dataclasses
import math

import pytest
import scipy.stats
import torch

from genrep.continual.baselines import (BASELINES, ERSettings, ExperienceReplay, FineTune, GenerativeReplay, GRSettings,
                                        JointTraining, ReservoirBuffer)
from genrep.continual.classifier import predict_logits
from genrep.continual.scenario import Scenario, Task
from genrep.data import load_dataset
from genrep.data.dataset import ImageDataset
from genrep.errors import CheckpointError, ConfigError, InputError

TINY = {"epochs": 6, "batch_size": 32}
TINY_GR = {**TINY, "gen_iters": 250, "gen_batch_size": 32, "latent_dim": 8, "hidden": (64,)}
SETTINGS = {"finetune": TINY, "joint": TINY, "er": {**TINY, "buffer_size": 20}, "gr": TINY_GR, "gr-distill": TINY_GR}


@pytest.fixture(scope="module")
def scenario():
    """Two class-incremental tasks of the 8×8 digits: {0, 1} then {2, 3}."""
    train, test = load_dataset("digits"), load_dataset("digits", "test")
    tasks, offset = [], 0
    for index, classes in enumerate([(0, 1), (2, 3)]):
        keep, keep_test = (torch.isin(split.labels, torch.tensor(classes)) for split in (train, test))
        view = ImageDataset(train.images[keep], train.labels[keep])
        test_view = ImageDataset(test.images[keep_test], test.labels[keep_test])
        tasks.append(Task(index, f"digits {classes}", view, test_view, classes=classes,
                          global_index=torch.arange(offset, offset + len(view))))
        offset += len(view)
    return Scenario("toy-split-digits", tuple(tasks), (1, 8, 8), num_classes=4)


def run(learner, scenario, tasks):
    for task in tasks:
        learner.begin_task(task)
        learner.learn(task)
        learner.end_task(task)
    return learner


def accuracy(learner, task):
    return (learner.predict(task.test.images).argmax(1) == task.test.labels).float().mean().item()


@pytest.fixture(scope="module")
def trained(scenario):
    """Every baseline after both tasks (tiny settings), and its state after task 0."""
    learners, after_first = {}, {}
    for name, make in BASELINES.items():
        learner = make(**SETTINGS[name])
        learner.setup(scenario)
        run(learner, scenario, scenario.tasks[:1])
        after_first[name] = learner.state_dict()
        learners[name] = run(learner, scenario, scenario.tasks[1:])
    return learners, after_first


def restored(name, scenario, state):
    learner = BASELINES[name](**SETTINGS[name])
    learner.setup(scenario)
    learner.load_state_dict(state)
    return learner


def test_reservoir_respects_capacity_and_keeps_a_uniform_sample():
    n, capacity, runs = 500, 50, 800
    g = torch.Generator().manual_seed(0)
    ids = torch.arange(n)
    images = ids.float().reshape(n, 1, 1, 1)
    kept = torch.zeros(n)
    for _ in range(runs):
        buffer = ReservoirBuffer(capacity, (1, 1, 1))
        buffer.add(images[:30], ids[:30], g)
        assert len(buffer) == 30 and torch.equal(buffer.labels[:30], ids[:30])  # fills free slots in order
        for chunk in range(30, n, 94):
            buffer.add(images[chunk:chunk + 94], ids[chunk:chunk + 94], g)
        assert len(buffer) == capacity and buffer.seen == n
        assert torch.equal(buffer.images.flatten().long(), buffer.labels) and len(buffer.labels.unique()) == capacity
        kept[buffer.labels] += 1
    frequency = kept / runs  # every item kept with probability capacity / n = 0.1
    assert frequency.min() > 0.05 and frequency.max() < 0.15
    per_decile = kept.reshape(10, -1).sum(1)
    assert scipy.stats.chisquare(per_decile).pvalue > 1e-3


def test_reservoir_state_round_trip_and_shape_check():
    buffer = ReservoirBuffer(4, (1, 2, 2))
    buffer.add(torch.rand(6, 1, 2, 2), torch.arange(6), torch.Generator().manual_seed(0))
    copy = ReservoirBuffer(4, (1, 2, 2))
    copy.load_state_dict(buffer.state_dict())
    assert copy.seen == 6 and torch.equal(copy.images, buffer.images) and torch.equal(copy.labels, buffer.labels)
    assert buffer.nbytes() == 4 * (4 * 4 + 8)
    with pytest.raises(CheckpointError, match="buffer_size"):
        ReservoirBuffer(3, (1, 2, 2)).load_state_dict(buffer.state_dict())


@pytest.mark.parametrize("name", list(BASELINES))
def test_each_baseline_runs_and_resumes_exactly(name, scenario, trained):
    learner, after_first = trained[0][name], trained[1][name]
    x = scenario[1].test.images
    logits = learner.predict(x)
    assert logits.shape == (len(x), 4) and torch.isfinite(logits).all()
    assert learner.tasks_seen == 2 and learner.seen_classes == [0, 1, 2, 3]

    assert torch.equal(restored(name, scenario, learner.state_dict()).predict(x), logits)
    resumed = run(restored(name, scenario, after_first), scenario, scenario.tasks[1:])
    assert torch.equal(resumed.predict(x), logits)  # resuming after task 0 repeats the uninterrupted run


def test_replay_and_joint_training_remember_the_old_task(scenario, trained):
    learners = trained[0]
    old = {name: accuracy(learner, scenario[0]) for name, learner in learners.items()}
    assert old["finetune"] < 0.2  # class-incremental fine-tuning forgets {0, 1} entirely
    assert old["joint"] > 0.95 and old["er"] > 0.8
    assert old["gr"] > 0.6 and old["gr-distill"] > 0.6
    assert all(accuracy(learner, scenario[1]) > 0.85 for learner in learners.values())


def test_memory_is_exactly_what_each_method_keeps_to_replay(scenario, trained):
    """Table 8.4.2's convention: the replay store (buffer / stored data / generator), not the classifier."""
    trained = trained[0]
    assert trained["finetune"].memory_bytes() == 0
    er = trained["er"]
    assert er.memory_bytes() == er.buffer.nbytes() == 20 * (64 * 4 + 8)  # 20 float32 8×8 images + int64 labels
    joint, seen = trained["joint"], sum(len(task.train) for task in scenario)
    assert joint.memory_bytes() == joint.images.nbytes + joint.labels.nbytes == seen * (64 * 4 + 8)
    for name in ("gr", "gr-distill"):
        vae = trained[name].vae
        assert trained[name].memory_bytes() == sum(t.nbytes for t in [*vae.parameters(), *vae.buffers()])


@pytest.mark.parametrize("name", list(BASELINES))
def test_memory_excludes_the_classifier(name, scenario):
    memory = {}
    for classifier, width in (("lenet5", 1), ("lenet5", 3), ("lenetg", 1)):
        learner = BASELINES[name](**SETTINGS[name], classifier=classifier, width=width)
        learner.setup(scenario)
        memory[classifier, width] = learner.memory_bytes()
    assert len(set(memory.values())) == 1, memory  # the classifier's size never shows
    if name in ("finetune", "joint", "er"):
        assert memory["lenet5", 1] == 0  # nothing stored before the first task


@pytest.mark.parametrize("name", list(BASELINES))
def test_classifier_is_a_setting_recorded_in_the_state(name, scenario):
    from genrep.continual.classifier import LeNetG

    learner = BASELINES[name](**SETTINGS[name], classifier="lenetg")
    learner.setup(scenario)
    assert isinstance(learner.model, LeNetG) and learner.model.arch == "lenetg"
    state = learner.state_dict()
    assert state["classifier"] == "lenetg"
    other = BASELINES[name](**SETTINGS[name])  # lenet5
    other.setup(scenario)
    with pytest.raises(CheckpointError, match="'lenetg' classifier.*'lenet5'.*--set classifier=lenetg"):
        other.load_state_dict(state)
    legacy = other.state_dict()
    del legacy["classifier"]  # saved before the setting existed: LeNet-5
    other.load_state_dict(legacy)
    with pytest.raises(CheckpointError, match="'lenet5' classifier"):
        learner.load_state_dict(legacy)


def test_unknown_classifier_is_a_one_line_error_naming_the_valid_ones():
    for make in (FineTune, GenerativeReplay):
        with pytest.raises(ConfigError, match=r"^ClassifierSettings|^GRSettings") as error:
            make(classifier="resnet")
        assert str(error.value).count("\n") == 0
        assert "classifier must be one of lenet5, lenetg, mlp; got 'resnet'" in str(error.value)


def test_distill_temperature_is_checked():
    assert GRSettings().distill_temperature == 1.0
    assert BASELINES["gr-distill"](distill_temperature=2.0).settings.distill_temperature == 2.0
    for bad in (0.0, -1.0):
        with pytest.raises(ConfigError, match="need distill_temperature > 0"):
            BASELINES["gr-distill"](distill_temperature=bad)
    with pytest.raises(ConfigError, match="distill_temperature must be 1 unless distill is true"):
        GenerativeReplay(distill_temperature=2.0)


def test_gr_distill_softens_teacher_and_student_with_the_same_temperature(scenario, trained, monkeypatch):
    """T = 2: replay targets softmax(z_teacher/2) over the seen classes, and fit_classifier told to take the
    student's replay loss at T = 2 (× T²); T = 1 (default): the teacher's plain softmax and T = 1."""
    from genrep.continual import baselines as module

    calls = []
    real_fit = module.fit_classifier

    def fit_spy(model, images, labels, **kwargs):
        replay = kwargs.get("replay")
        calls.append((kwargs.get("replay_temperature"), replay(4) if replay else None))
        return real_fit(model, images, labels, **{**kwargs, "epochs": 1})

    monkeypatch.setattr(module, "fit_classifier", fit_spy)
    for T in (1.0, 2.0):
        learner = restored("gr-distill", scenario, trained[1]["gr-distill"])
        learner.settings = dataclasses.replace(learner.settings, distill_temperature=T, gen_iters=1)
        teacher = copy.deepcopy(learner.model)
        x = learner.sample(16)
        mask = torch.tensor([0.0, 0.0, -math.inf, -math.inf])
        assert torch.allclose(learner.replay_targets(teacher, x), ((predict_logits(teacher, x) + mask) / T).softmax(1))
        calls.clear()
        learner.learn(scenario[1])
        (temperature, (_, targets)), = calls
        assert temperature == T
        assert targets.shape == (4, 4) and (targets[:, 2:] == 0).all()
    plain = restored("gr", scenario, trained[1]["gr"])
    calls.clear()
    plain.learn(scenario[1])
    assert calls[0][0] == 1.0 and calls[0][1][1].dtype == torch.int64  # hard labels: no temperature


def test_generative_replay_targets_and_samples(scenario, trained):
    for name in ("gr", "gr-distill"):
        learner, distill = restored(name, scenario, trained[1][name]), name == "gr-distill"
        assert learner.seen_classes == [0, 1]
        x = learner.sample(50)
        assert x.shape == (50, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
        targets = learner.replay_targets(learner.model, x)
        if distill:
            assert targets.shape == (50, 4) and torch.allclose(targets.sum(1), torch.ones(50))
            assert (targets[:, 2:] == 0).all()
        else:
            assert targets.shape == (50,) and set(targets.tolist()) <= {0, 1}
    with pytest.raises(InputError, match="unconditional"):
        learner.sample(4, task=0)


def test_loading_a_foreign_state_fails_clearly(scenario, trained):
    with pytest.raises(CheckpointError, match="lacks buffer"):
        restored("er", scenario, trained[1]["finetune"])
    wide = FineTune(width=2)
    wide.setup(scenario)
    with pytest.raises(CheckpointError, match="does not match"):
        wide.load_state_dict(trained[1]["finetune"])


def test_settings_are_checked():
    assert BASELINES["gr-distill"]().settings.distill and not BASELINES["gr"]().settings.distill
    assert ExperienceReplay(ERSettings(buffer_size=7), epochs=1).settings.buffer_size == 7
    assert JointTraining().settings.from_scratch
    with pytest.raises(ConfigError, match="unknown setting"):
        FineTune(buffer_size=3)
    with pytest.raises(ConfigError, match="loss must be one of"):
        FineTune(loss="hinge")
    with pytest.raises(ConfigError, match="buffer_size >= 1"):
        ExperienceReplay(buffer_size=0)
    with pytest.raises(ConfigError, match="setup"):
        FineTune().predict(torch.rand(1, 1, 8, 8))


def three_task_scenario():
    """Class-incremental digits {0, 1}, {2, 3}, {4, 5}: with three tasks r = 1/(t + 1) differs from t/(t + 1)."""
    train, test = load_dataset("digits"), load_dataset("digits", "test")
    tasks, offset = [], 0
    for index, classes in enumerate([(0, 1), (2, 3), (4, 5)]):
        keep, keep_test = (torch.isin(split.labels, torch.tensor(classes)) for split in (train, test))
        view = ImageDataset(train.images[keep], train.labels[keep])
        tasks.append(Task(index, f"digits {classes}", view, ImageDataset(test.images[keep_test], test.labels[keep_test]),
                          classes=classes, global_index=torch.arange(offset, offset + len(view))))
        offset += len(view)
    return Scenario("toy-3-digits", tuple(tasks), (1, 8, 8), num_classes=6)


@pytest.mark.parametrize("name", ["gr", "gr-distill"])
def test_generative_replay_uses_the_frozen_solver_and_gives_new_data_weight_1_over_t_plus_1(name, monkeypatch):
    from genrep.continual import baselines as module

    scenario3 = three_task_scenario()
    learner = BASELINES[name](**{**TINY_GR, "epochs": 1, "gen_iters": 5})
    ratios, teachers, current = [], [], {}

    real_fit, real_targets = module.GenerativeReplay._fit, module.GenerativeReplay.replay_targets

    def fit_spy(self, images, labels, generator, **replay):
        ratios.append(replay["replay_ratio"] if replay.get("replay") else None)
        return real_fit(self, images, labels, generator, **replay)

    def targets_spy(self, solver, x):
        same = all(torch.equal(a, b) for a, b in zip(solver.state_dict().values(), current["start"].values()))
        teachers.append((current["task"], solver is self.model, same))
        return real_targets(self, solver, x)

    monkeypatch.setattr(module.GenerativeReplay, "_fit", fit_spy)
    monkeypatch.setattr(module.GenerativeReplay, "replay_targets", targets_spy)
    learner.setup(scenario3)
    for task in scenario3.tasks:
        current.update(task=task.index, start={k: v.clone() for k, v in learner.model.state_dict().items()})
        run(learner, scenario3, [task])
    # replay share t/(t + 1) of each batch, so the new task's weight is r = 1/(t + 1)
    assert ratios == [None, pytest.approx(1 / 2), pytest.approx(2 / 3)]
    assert {task for task, _, _ in teachers} == {1, 2}
    assert not any(live for _, live, _ in teachers), "the live classifier labelled the replay"
    assert all(same for _, _, same in teachers), "the teacher drifted during the task: not a frozen copy"
