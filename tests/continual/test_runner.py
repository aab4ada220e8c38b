"""The continual-learning runner on a fake learner with known answers: matrix bookkeeping, resume,
run-folder checks, results.json and pictures."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genrep.continual.learner import ContinualLearner
from genrep.continual.plots import plot_curves, plot_heatmap
from genrep.continual.runner import ContinualResult, classification_accuracy, run_scenario
from genrep.continual.scenario import Scenario, Task
from genrep.data.dataset import ImageDataset
from genrep.errors import CheckpointError, ConfigError, RunExistsError

TEST_PER_TASK = 10


def toy_scenario(name: str = "toy", n_tasks: int = 3) -> Scenario:
    """Tasks {0,1}, {2,3}, ... Every 1×1×2 image holds its label / 100 and a number u; the test views
    have u = 0.05, 0.15, ..., 0.95 so a learner that is right exactly for u < a scores a."""
    tasks, offset = [], 0
    for t in range(n_tasks):
        classes = (2 * t, 2 * t + 1)

        def view(labels: torch.Tensor, u: torch.Tensor, split: str) -> ImageDataset:
            x = torch.stack([labels.float() / 100, u], dim=1).view(-1, 1, 1, 2)
            return ImageDataset(x, labels, name=f"{name}-{t}", split=split)

        train_labels = torch.tensor(classes).repeat(4)
        test_labels = torch.tensor(classes).repeat(TEST_PER_TASK // 2)
        train = view(train_labels, torch.rand(len(train_labels)), "train")
        test = view(test_labels, (torch.arange(TEST_PER_TASK) + 0.5) / TEST_PER_TASK, "test")
        tasks.append(Task(t, f"t{t}", train, test, classes=classes,
                          global_index=torch.arange(offset, offset + len(train))))
        offset += len(train)
    return Scenario(name, tuple(tasks), image_shape=(1, 1, 2), num_classes=2 * n_tasks)


class Memorizer(ContinualLearner):
    """Knows the classes of the tasks it learned and forgets them with age: on a class learned `age`
    tasks ago it is right only for test images with u < 1 - decay * age, so after task i its accuracy
    on task j <= i is 1 - decay * (i - j) and 0 on unseen tasks. `random_decay`: decay per task drawn
    from torch's RNG in learn() (to test RNG restoration). `fail_at`: learn() raises once on that task."""

    def __init__(self, decay: float = 0.2, random_decay: bool = False, fail_at: int | None = None):
        self.decay, self.random_decay, self.fail_at = decay, random_decay, fail_at
        self.learn_calls = 0

    def setup(self, scenario):
        self.n_classes = scenario.num_classes
        self.learned_at = torch.full((scenario.num_classes,), -1)
        self.decays = torch.zeros(scenario.num_classes)
        self.tasks_done = 0

    def learn(self, task):
        self.learn_calls += 1
        if self.fail_at == task.index:
            self.fail_at = None
            raise RuntimeError("simulated interruption")
        classes = list(task.classes)
        self.learned_at[classes] = task.index
        self.decays[classes] = float(torch.rand(())) * 0.3 if self.random_decay else self.decay

    def end_task(self, task):
        self.tasks_done += 1

    def diagnostics(self):
        return {"tasks_done": self.tasks_done}

    def predict(self, x):
        label = (x[:, 0, 0, 0] * 100).round().long()
        age = self.tasks_done - 1 - self.learned_at[label]
        right = (self.learned_at[label] >= 0) & (x[:, 0, 0, 1] < 1 - self.decays[label] * age)
        return F.one_hot(torch.where(right, label, (label + 1) % self.n_classes), self.n_classes).float()

    def state_dict(self):
        return {"learned_at": self.learned_at.clone(), "decays": self.decays.clone(), "tasks_done": self.tasks_done}

    def load_state_dict(self, state):
        self.learned_at, self.decays = state["learned_at"].clone(), state["decays"].clone()
        self.tasks_done = state["tasks_done"]

    def memory_bytes(self):
        return 100 * self.tasks_done


@pytest.fixture(autouse=True)
def no_pictures(request, monkeypatch):
    """Drawing takes ~0.3 s a picture: only the test of the pictures draws them."""
    if "pictures" not in request.node.name:
        monkeypatch.setattr("genrep.continual.runner.plot_heatmap", lambda *args, **kwargs: None)
        monkeypatch.setattr("genrep.continual.runner.plot_curves", lambda *args, **kwargs: None)


def expected_matrix(T: int, decay: float) -> np.ndarray:
    i, j = np.indices((T, T))
    return np.where(j <= i, 1 - decay * (i - j), 0.0)


def run(learner, scenario, out, **kwargs) -> ContinualResult:
    return run_scenario(learner, scenario, out, progress=False, log=None, **kwargs)


def test_matrix_bookkeeping(tmp_path):
    lines = []
    result = run_scenario(Memorizer(), toy_scenario(), tmp_path, progress=False, log=lines.append)
    np.testing.assert_allclose(result.matrices["accuracy"], expected_matrix(3, 0.2), atol=1e-12)
    np.testing.assert_array_equal(result.initial["accuracy"], np.zeros(3))
    s = result.summary["accuracy"]
    assert s["average"] == pytest.approx((0.6 + 0.8 + 1.0) / 3)
    assert s["forgetting"] == pytest.approx((0.4 + 0.2) / 2)
    assert s["backward_transfer"] == pytest.approx(-0.3)
    assert s["forward_transfer"] == pytest.approx(0.0)
    assert result.memory_bytes == [100, 200, 300]
    assert len(result.wall_times) == len(result.eval_times) == 3 and result.tasks_finished == 3
    assert [line.split(" (")[0] for line in lines] == ["task 1/3", "task 2/3", "task 3/3"]
    assert "classes 2,3" in lines[1] and "accuracy avg over seen 0.9" in lines[1]


def test_several_metrics_and_lower_is_better(tmp_path):
    def evaluate(learner, task):
        acc = classification_accuracy(learner, task)
        known = float((learner.learned_at[list(task.classes)] >= 0).float().mean())
        return {"known": known, "accuracy": acc, "loss": 1 - acc}

    result = run(Memorizer(), toy_scenario(), tmp_path, evaluate=evaluate)
    assert set(result.matrices) == {"known", "accuracy", "loss"} and result.main_metric == "accuracy"
    np.testing.assert_array_equal(result.matrices["known"], np.tril(np.ones((3, 3))))
    np.testing.assert_allclose(result.matrices["loss"], 1 - expected_matrix(3, 0.2), atol=1e-12)
    assert result.higher_is_better == {"known": True, "accuracy": True, "loss": False}
    acc, loss = result.summary["accuracy"], result.summary["loss"]
    for key in ("forgetting", "backward_transfer", "forward_transfer"):  # loss = 1 - acc: same signed values
        assert loss[key] == pytest.approx(acc[key])
    assert loss["average"] == pytest.approx(1 - acc["average"])


def test_generator_without_evaluator_is_refused(tmp_path):
    learner = Memorizer()
    learner.kind = "generator"
    with pytest.raises(ConfigError, match="evaluate="):
        run(learner, toy_scenario(), tmp_path)


def test_evaluator_must_return_the_same_metrics(tmp_path):
    calls = []

    def evaluate(learner, task):
        calls.append(task.index)
        return {"a": 1.0} if len(calls) <= 3 else {"b": 1.0}

    with pytest.raises(ConfigError, match="same evaluator"):
        run(Memorizer(), toy_scenario(), tmp_path, evaluate=evaluate)


def test_resume_after_interruption_gives_the_same_matrix(tmp_path):
    scenario = toy_scenario(n_tasks=4)
    torch.manual_seed(0)
    reference = Memorizer(random_decay=True)
    full = run(reference, scenario, tmp_path / "full")

    torch.manual_seed(0)
    with pytest.raises(RuntimeError, match="simulated interruption"):
        run(Memorizer(random_decay=True, fail_at=2), scenario, tmp_path / "cut")
    stored = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert stored["tasks_finished"] == 2 and len(stored["matrices"]["accuracy"]) == 2

    torch.manual_seed(1234)  # another process: the RNG state must come from the checkpoint
    learner = Memorizer(random_decay=True)
    resumed = run(learner, scenario, tmp_path / "cut", resume=True)
    assert learner.learn_calls == 2  # tasks 2 and 3
    torch.testing.assert_close(learner.decays, reference.decays, rtol=0, atol=0)
    np.testing.assert_array_equal(resumed.matrices["accuracy"], full.matrices["accuracy"])
    np.testing.assert_array_equal(resumed.initial["accuracy"], full.initial["accuracy"])
    assert resumed.summary == full.summary and resumed.memory_bytes == full.memory_bytes
    assert len(resumed.wall_times) == 4


def test_resume_finished_run_returns_the_stored_result(tmp_path):
    scenario = toy_scenario()
    first = run(Memorizer(), scenario, tmp_path)
    learner = Memorizer(fail_at=0)
    again = run(learner, scenario, tmp_path, resume=True)
    assert learner.learn_calls == 0 and learner.tasks_done == 3
    np.testing.assert_array_equal(again.matrices["accuracy"], first.matrices["accuracy"])
    assert again.wall_times == first.wall_times


def test_resume_without_checkpoint_starts_from_the_first_task(tmp_path):
    result = run(Memorizer(), toy_scenario(), tmp_path / "new", resume=True)
    np.testing.assert_allclose(result.matrices["accuracy"], expected_matrix(3, 0.2), atol=1e-12)


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    scenario = toy_scenario()
    run(Memorizer(), scenario, tmp_path)
    with pytest.raises(RunExistsError, match="--resume.*--overwrite"):
        run(Memorizer(), scenario, tmp_path)
    with pytest.raises(ConfigError, match="exclude"):
        run(Memorizer(), scenario, tmp_path, resume=True, overwrite=True)
    result = run(Memorizer(decay=0.1), scenario, tmp_path, overwrite=True)
    np.testing.assert_allclose(result.matrices["accuracy"], expected_matrix(3, 0.1), atol=1e-12)


@pytest.mark.parametrize("name, n_tasks", [("other", 3), ("toy", 2)])
def test_checkpoint_of_another_scenario_is_refused(tmp_path, name, n_tasks):
    with pytest.raises(RuntimeError):
        run(Memorizer(fail_at=1), toy_scenario(), tmp_path)
    with pytest.raises(CheckpointError, match="scenario 'toy' with 3 tasks"):
        run(Memorizer(), toy_scenario(name, n_tasks), tmp_path, resume=True)


def test_results_json_and_pictures(tmp_path):
    scenario = toy_scenario()
    result = run(Memorizer(), scenario, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data == json.loads(json.dumps({**data, **result.to_dict()}))
    assert data["scenario"] == "toy" and data["learner"] == "Memorizer" and data["kind"] == "classifier"
    assert [t["name"] for t in data["tasks"]] == ["t0", "t1", "t2"]
    assert data["tasks"][1] == {"index": 1, "name": "t1", "classes": [2, 3], "train_size": 8, "val_size": 0,
                                "test_size": TEST_PER_TASK}
    np.testing.assert_allclose(data["matrices"]["accuracy"], expected_matrix(3, 0.2), atol=1e-12)
    assert data["initial"]["accuracy"] == [0.0, 0.0, 0.0]
    assert data["summary"]["accuracy"]["forgetting"] == pytest.approx(0.3)
    assert data["memory_bytes"] == [100, 200, 300] and len(data["wall_times"]) == 3
    assert data["tasks_finished"] == 3 and data["higher_is_better"] == {"accuracy": True}
    assert data["diagnostics"] == {"tasks_done": 3}  # the learner's own facts, as of the last finished task
    for picture in ("heatmap.png", "curves.png"):
        assert (tmp_path / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pictures_of_a_partial_lower_is_better_matrix(tmp_path):
    fid = np.array([[30.0, 90.0, 95.0], [40.0, 20.0, 88.0]])  # 2 of 3 tasks finished
    plot_heatmap(fid, tmp_path / "h.png", metric="fid", higher_is_better=False, task_names=["mnist", "fashion", "x"])
    plot_curves(fid, tmp_path / "c.png", initial=np.full(3, 100.0), metric="fid", higher_is_better=False)
    assert (tmp_path / "h.png").stat().st_size > 1000 and (tmp_path / "c.png").stat().st_size > 1000


def test_classification_accuracy_in_batches():
    n, n_classes = 2500, 6
    labels = torch.arange(n) % n_classes
    x = torch.stack([labels.float() / 100, (torch.arange(n) + 0.5) / n], dim=1).view(-1, 1, 1, 2)
    data = ImageDataset(x, labels)
    task = Task(0, "big", data, data, classes=tuple(range(n_classes)))
    learner = Memorizer(decay=0.0)
    learner.setup(Scenario("big", (task,), image_shape=(1, 1, 2), num_classes=n_classes))
    assert classification_accuracy(learner, task) == 0.0
    learner.learn(task)
    learner.end_task(task)
    assert classification_accuracy(learner, task) == 1.0
