"""The evaluation of generative continual learners (`genrep.continual.generative_eval`) and the runner's
round hooks, on tiny fake scenarios with a fake feature extractor (no Inception)."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from genrep.continual import cl_metrics
from genrep.continual.generative_eval import GenerativeEvaluator, diagonal_transfer, transfer_summary
from genrep.continual.learner import ContinualLearner
from genrep.continual.runner import _default_evaluator, run_scenario
from genrep.continual.scenario import Scenario, Task
from genrep.data.calorimeter import from_counts, to_counts
from genrep.data.dataset import ImageDataset
from genrep.errors import CheckpointError, ConfigError
from genrep.metrics.calorimeter import channel_wasserstein
from genrep.metrics.features.base import wrap_module
from genrep.metrics.frechet import fid

TEST_PER_TASK = 40
FAST_PRD = {"prd_runs": 2}


def image_scenario(n_tasks: int = 3, *, name: str = "toy8", size: int = 8, val: bool = False) -> Scenario:
    """Tasks of 1×size×size images in [0, 1]: task t has two modes (even rows dark, odd rows bright) at
    brightness levels of its own, plus a little noise."""
    g = torch.Generator().manual_seed(0)
    tasks = []
    for t in range(n_tasks):
        def view(n: int, split: str, t: int = t) -> ImageDataset:
            mode = torch.arange(n) % 2
            level = 0.1 + 0.25 * t + 0.12 * mode
            x = (level.view(-1, 1, 1, 1) + 0.03 * torch.randn(n, 1, size, size, generator=g)).clamp(0, 1)
            return ImageDataset(x, mode + 2 * t, name=name, split=split)

        tasks.append(Task(t, f"t{t}", view(12, "train"), view(TEST_PER_TASK, "test"),
                          val=view(20, "val") if val else None, classes=(2 * t, 2 * t + 1)))
    return Scenario(name, tuple(tasks), image_shape=(1, size, size), num_classes=2 * n_tasks)


def calorimeter_scenario(n_tasks: int = 2) -> Scenario:
    """Tiny 44×44 'calorimeter' tasks: Poisson counts whose intensity grows with the task."""
    g = torch.Generator().manual_seed(1)
    tasks = []
    for t in range(n_tasks):
        def view(n: int, split: str, t: int = t) -> ImageDataset:
            rate = (5.0 * (t + 1)) * torch.rand(n, 1, 1, generator=g) * torch.ones(n, 44, 44)
            return ImageDataset(from_counts(torch.poisson(rate, generator=g)).unsqueeze(1), name="calorimeter",
                                split=split)

        tasks.append(Task(t, f"energy {t}", view(8, "train"), view(30, "test")))
    return Scenario("calorimeter-energy", tuple(tasks), image_shape=(1, 44, 44))


def projection(size: int = 8, dim: int = 6):
    """A fake feature extractor: a fixed random linear map of the pixels."""
    torch.manual_seed(123)
    return wrap_module(nn.Sequential(nn.Flatten(), nn.Linear(size * size, dim)), "projection", dim)


class FakeGenerator(ContinualLearner):
    """A generative learner that 'learns' nothing. mode "copy": returns the evaluation images of the task
    (or, for task None, of every learned task, in order); "noise": uniform noise; "half": copies of the dark
    mode only (mode dropping); "last": for task None, only the last learned task's images. `calls`: every
    (n, task) sample call; `view`: the split the copies come from."""

    kind = "generator"

    def __init__(self, mode: str = "copy", *, task_conditional: bool = True, view: str = "test",
                 fail_at: int | None = None):
        self.mode, self.task_conditional, self.view, self.fail_at = mode, task_conditional, view, fail_at

    def setup(self, scenario):
        self.scenario, self.learned, self.calls = scenario, 0, []

    def learn(self, task):
        if self.fail_at == task.index:
            self.fail_at = None
            raise RuntimeError("simulated interruption")

    def end_task(self, task):
        self.learned = task.index + 1

    def _images(self, task: int) -> torch.Tensor:
        return getattr(self.scenario[task], self.view).images

    def sample(self, n, task=None):
        self.calls.append((n, task))
        if self.mode == "noise":
            return torch.rand(n, *self.scenario.image_shape)
        if task is None:
            tasks = [self.learned - 1] if self.mode == "last" else range(self.learned)
            pool = torch.cat([self._images(j) for j in tasks])
        else:
            pool = self._images(task)
            pool = pool[1::2] if self.mode == "half" else pool
        return pool[torch.arange(n) % len(pool)]

    def state_dict(self):
        return {"learned": self.learned}

    def load_state_dict(self, state):
        self.learned = state["learned"]


@pytest.fixture(autouse=True)
def no_pictures(request, monkeypatch):
    """The runner's heatmap and curves take ~0.3 s each: only the tests of pictures draw them."""
    if "pictures" not in request.node.name:
        monkeypatch.setattr("genrep.continual.runner.plot_heatmap", lambda *args, **kwargs: None)
        monkeypatch.setattr("genrep.continual.runner.plot_curves", lambda *args, **kwargs: None)


def run(learner, scenario, out, **kwargs):
    return run_scenario(learner, scenario, out, progress=False, log=None, **kwargs)


def evaluator(**options) -> GenerativeEvaluator:
    return GenerativeEvaluator(**{"features": projection(), "device": "cpu", **FAST_PRD, **options})


def test_copies_score_perfectly_and_noise_badly():
    scenario = image_scenario(2)
    ev = GenerativeEvaluator(features=projection(), device="cpu")  # the reference PRD defaults
    ev.begin_round(2, scenario)
    copy, noise = FakeGenerator("copy"), FakeGenerator("noise")
    for learner in (copy, noise):
        learner.setup(scenario)
    good, bad = ev(copy, scenario[1]), ev(noise, scenario[1])
    assert set(good) == {"fid", "precision", "recall"}
    assert good["fid"] == pytest.approx(0.0, abs=1e-6)
    assert good["precision"] > 0.99 and good["recall"] > 0.99
    assert bad["fid"] > 0.1 and bad["precision"] < 0.5  # noise lies off the data: few samples are realistic
    assert copy.calls == [(TEST_PER_TASK, 1)] and noise.calls == [(TEST_PER_TASK, 1)]


def test_mode_dropping_keeps_precision_and_loses_recall():
    scenario = image_scenario(1)
    ev = GenerativeEvaluator(features=projection(), device="cpu")
    ev.begin_round(1, scenario)
    learner = FakeGenerator("half")
    learner.setup(scenario)
    values = ev(learner, scenario[0])
    assert values["precision"] > 0.9 and values["recall"] < 0.7 and values["precision"] > values["recall"] + 0.3


def test_conditional_run_has_nan_exactly_above_the_diagonal(tmp_path):
    learner = FakeGenerator("copy")
    result = run(learner, image_scenario(3), tmp_path, evaluate=evaluator())
    assert result.main_metric == "fid" and result.higher_is_better == {"fid": False, "precision": True,
                                                                        "recall": True}
    for name, R in result.matrices.items():
        assert R.shape == (3, 3)
        np.testing.assert_array_equal(np.isnan(R), np.triu(np.ones((3, 3), bool), k=1), err_msg=name)
        assert np.isnan(result.initial[name]).all()
    np.testing.assert_allclose(np.tril(result.matrices["fid"]), 0.0, atol=1e-6)
    # samples of exactly the learned tasks, as many as their test views, once per task and round
    assert learner.calls == [(TEST_PER_TASK, j) for i in range(1, 4) for j in range(i)]
    summary = result.summary["fid"]
    assert math.isnan(summary["forward_transfer"])  # R[j-1, j] of unseen tasks is NaN for generators
    assert summary["average"] == pytest.approx(0.0, abs=1e-6) and math.isfinite(summary["backward_transfer"])


def test_unconditional_learner_is_compared_with_the_union_of_learned_tasks(tmp_path):
    scenario = image_scenario(3)
    union = FakeGenerator("copy", task_conditional=False)
    result = run(union, scenario, tmp_path / "union", evaluate=evaluator())
    R = result.matrices["fid"]
    np.testing.assert_array_equal(np.isnan(R), np.triu(np.ones((3, 3), bool), k=1))
    np.testing.assert_allclose(R[np.tril_indices(3)], 0.0, atol=1e-6)
    assert union.calls == [(TEST_PER_TASK * i, None) for i in range(1, 4)]  # one draw per round

    last = FakeGenerator("last", task_conditional=False)  # only the newest task: far from the union
    R = run(last, scenario, tmp_path / "last", evaluate=evaluator()).matrices["fid"]
    assert R[0, 0] == pytest.approx(0.0, abs=1e-6)
    for i in (1, 2):
        assert R[i, 0] > 1e-3 and np.all(R[i, : i + 1] == R[i, 0]) and np.isnan(R[i, i + 1:]).all()
    real = torch.cat([scenario[j].test.images for j in range(3)])
    proj = projection()
    expected = fid(proj(real), proj(scenario[2].test.images[torch.arange(3 * TEST_PER_TASK) % TEST_PER_TASK]))
    assert R[2, 1] == pytest.approx(expected, rel=1e-4)


def test_fid_is_the_default_main_metric_in_any_order(tmp_path):
    result = run(FakeGenerator(), image_scenario(2), tmp_path, evaluate=evaluator(metrics=("precision", "fid")))
    assert list(result.matrices) == ["precision", "fid"] and result.main_metric == "fid"


def test_unconditional_learner_needs_a_round():
    scenario = image_scenario(1)
    learner = FakeGenerator(task_conditional=False)
    learner.setup(scenario)
    with pytest.raises(ConfigError, match="begin_round"):
        evaluator()(learner, scenario[0])


def test_called_alone_every_task_counts_as_learned():
    scenario = image_scenario(2)
    learner = FakeGenerator()
    learner.setup(scenario)
    assert evaluator(metrics="fid")(learner, scenario[1])["fid"] == pytest.approx(0.0, abs=1e-6)


def test_max_samples_subsamples_real_and_draws_as_many(tmp_path):
    scenario = image_scenario(2)
    ev = evaluator(max_samples=15, seed=3)
    learner = FakeGenerator("copy", task_conditional=False)
    run(learner, scenario, tmp_path, evaluate=ev)
    assert learner.calls == [(15, None), (30, None)]
    for j in range(2):
        real, pool = ev._real[j], scenario[j].test.images
        matches = (real[:, None] == pool[None]).flatten(2).all(2)  # real row r equals pool row c
        rows = matches.float().argmax(1)
        assert matches.any(1).all() and len(set(rows.tolist())) == 15  # distinct rows of the view
    torch.testing.assert_close(evaluator(max_samples=15, seed=3)._real_images(scenario[0]), ev._real[0])
    other = evaluator(max_samples=15, seed=4)
    assert not torch.equal(other._real_images(scenario[0]), ev._real[0])


def test_eval_split_val(tmp_path):
    with pytest.raises(ConfigError, match="no validation view.*validation_fraction"):
        run(FakeGenerator(), image_scenario(2), tmp_path / "none", evaluate=evaluator(eval_split="val"))
    learner = FakeGenerator("copy", view="val")
    result = run(learner, image_scenario(2, val=True), tmp_path / "val", evaluate=evaluator(eval_split="val"))
    np.testing.assert_allclose(result.matrices["fid"][np.tril_indices(2)], 0.0, atol=1e-6)
    assert learner.calls == [(20, 0), (20, 0), (20, 1)]


def test_calorimeter_scenario_uses_the_channel_wasserstein_of_counts(tmp_path):
    scenario = calorimeter_scenario(2)

    class Brighter(FakeGenerator):
        def sample(self, n, task=None):
            counts = to_counts(super().sample(n, task))
            return from_counts(2 * counts)

    result = run(FakeGenerator(), scenario, tmp_path / "copy")
    assert list(result.matrices) == ["wasserstein"] and result.main_metric == "wasserstein"
    assert result.higher_is_better == {"wasserstein": False}
    R = result.matrices["wasserstein"]
    np.testing.assert_array_equal(np.isnan(R), np.triu(np.ones((2, 2), bool), k=1))
    assert R[1, 0] == pytest.approx(0.0, abs=1e-9) and R[1, 1] == pytest.approx(0.0, abs=1e-9)

    R = run(Brighter(), scenario, tmp_path / "bright").matrices["wasserstein"]
    real = scenario[1].test.images
    expected = channel_wasserstein(to_counts(real), to_counts(from_counts(2 * to_counts(real))))
    assert R[1, 1] == pytest.approx(expected, rel=1e-6) and expected > 0.3  # ≈ log 2 in pooled-log units


class RecordingEvaluator:
    """An evaluator object with both hooks; records (hook, learned) and what the call saw."""

    def __init__(self):
        self.events, self.learned = [], None

    def begin_round(self, learned, scenario):
        self.learned = learned
        self.events.append(("begin", learned))

    def __call__(self, learner, task):
        return {"score": float(task.index < self.learned)}

    def end_round(self, learner, scenario, learned, out_dir):
        self.events.append(("end", learned))


def test_round_hooks_get_the_number_of_learned_tasks_also_after_a_resume(tmp_path):
    scenario = image_scenario(4)
    first = RecordingEvaluator()
    with pytest.raises(RuntimeError, match="simulated interruption"):
        run(FakeGenerator(fail_at=2), scenario, tmp_path, evaluate=first)
    assert first.events == [(hook, i) for i in range(3) for hook in ("begin", "end")]
    resumed = RecordingEvaluator()
    result = run(FakeGenerator(), scenario, tmp_path, evaluate=resumed, resume=True)
    assert resumed.events == [("begin", 3), ("end", 3), ("begin", 4), ("end", 4)]
    np.testing.assert_array_equal(result.matrices["score"], np.tril(np.ones((4, 4))))
    np.testing.assert_array_equal(result.initial["score"], np.zeros(4))


def grid_shape(path):
    with Image.open(path) as image:
        return image.size  # (width, height)


def test_sample_grids_per_time(tmp_path):
    scenario = image_scenario(3)
    learner = FakeGenerator()
    run(learner, scenario, tmp_path / "cond", evaluate=evaluator(metrics="fid"))
    cell = 8 * 4 + 1  # 8×8 images upscaled ×4, 1 px padding
    assert sorted(p.name for p in (tmp_path / "cond" / "samples").iterdir()) == [
        "after_task01.png", "after_task02.png", "after_task03.png"]
    for i in (1, 2, 3):
        assert grid_shape(tmp_path / "cond" / "samples" / f"after_task{i:02d}.png") == (10 * cell + 1, i * cell + 1)
    assert len(learner.calls) == 1 + 2 + 3  # the grids reuse the samples drawn for the metrics

    unconditional = FakeGenerator(task_conditional=False)
    run(unconditional, scenario, tmp_path / "uncond", evaluate=evaluator(metrics="fid"))
    assert grid_shape(tmp_path / "uncond" / "samples" / "after_task03.png") == (10 * cell + 1, 3 * cell + 1)
    assert len(unconditional.calls) == 3


def test_grid_rows_are_the_tasks_samples(tmp_path):
    scenario = image_scenario(2)
    ev = evaluator(metrics="fid")
    learner = FakeGenerator()
    learner.setup(scenario)
    ev.begin_round(2, scenario)
    ev.end_round(learner, scenario, 2, tmp_path)  # nothing drawn yet: the grid draws its own rows
    assert learner.calls == [(10, 0), (10, 1)]
    pixels = np.asarray(Image.open(tmp_path / "samples" / "after_task02.png").convert("L"), dtype=np.float64)
    row_means = [pixels[1 + r * 33: (r + 1) * 33, 1:-1].mean() / 255 for r in range(2)]
    assert row_means[0] < row_means[1]  # task 1's images are brighter than task 0's
    ev.end_round(learner, scenario, 0, tmp_path / "initial")
    assert not (tmp_path / "initial").exists()


def test_generator_run_pictures(tmp_path):
    run(FakeGenerator(), image_scenario(2), tmp_path, evaluate=evaluator(metrics="fid"))
    for picture in ("heatmap.png", "curves.png", "samples/after_task02.png"):
        assert (tmp_path / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_lenet_is_a_one_line_config_error_before_training(tmp_path):
    learner = FakeGenerator(fail_at=0)  # training would raise RuntimeError
    with pytest.raises(ConfigError) as err:
        run(learner, image_scenario(2, name="nolenet"), tmp_path, evaluate=GenerativeEvaluator(features="lenet"))
    message = str(err.value)
    assert "\n" not in message and message.startswith("no LeNet for nolenet: train one with"
                                                      " `genrep features train --dataset nolenet`")
    assert "features='inception'" in message


def test_auto_without_lenet_or_inception_is_a_config_error(monkeypatch):
    from genrep.metrics.features import registry

    def unavailable(name, **kwargs):
        raise CheckpointError("no Inception weights here")

    monkeypatch.setattr(registry, "get_extractor", unavailable)
    with pytest.raises(ConfigError, match=r"no feature extractor for nolenet: no cached LeNet \(train one with"
                                          r" `genrep features train --dataset nolenet`\)"):
        GenerativeEvaluator(device="cpu").begin_round(0, image_scenario(1, name="nolenet"))


def test_auto_picks_the_cached_lenet_of_the_data_set():
    from genrep.continual.scenarios import build_scenario
    from genrep.metrics.features.lenet import cached_lenets

    if "digits" not in cached_lenets():
        pytest.skip("no cached digits LeNet (`genrep features train --dataset digits`)")
    scenario = build_scenario("split-digits", limit=20)
    ev = GenerativeEvaluator(device="cpu", **FAST_PRD)
    ev.begin_round(1, scenario)
    assert set(ev._extractors) == {("lenet", "digits")}
    learner = FakeGenerator()
    learner.setup(scenario)
    values = ev(learner, scenario[0])
    assert values["fid"] == pytest.approx(0.0, abs=1e-3) and values["precision"] > 0.99
    assert math.isnan(ev(learner, scenario[1])["fid"])


def test_default_evaluator_of_generators():
    assert isinstance(_default_evaluator(FakeGenerator()), GenerativeEvaluator)

    class NoSampler(ContinualLearner):
        kind = "generator"

        def learn(self, task): ...
        def state_dict(self): return {}
        def load_state_dict(self, state): ...

    with pytest.raises(ConfigError, match="without sample.*evaluate="):
        _default_evaluator(NoSampler())


@pytest.mark.parametrize("options, match", [
    ({"features": "vgg"}, "features must be"), ({"metrics": ["fid", "is"]}, "metrics must be"),
    ({"eval_split": "train"}, "eval_split"), ({"max_samples": 1}, "max_samples"), ({"seed": -1}, "seed"),
    ({"wasserstein_convention": "raw"}, "wasserstein_convention")])
def test_bad_options(options, match):
    with pytest.raises(ConfigError, match=match):
        GenerativeEvaluator(**options)


def test_diagonal_transfer_by_hand():
    R = np.array([[50.0, np.nan, np.nan],
                  [60.0, 40.0, np.nan],
                  [70.0, 45.0, 30.0]])
    separate = np.array([55.0, 50.0, 20.0])  # FID of a model trained on task j alone
    # j = 1: 50 - 40 = +10 (better than alone), j = 2: 20 - 30 = -10 -> mean 0; then without task 2
    assert diagonal_transfer(R, separate) == pytest.approx(0.0)
    assert diagonal_transfer(R[:2, :2], separate[:2]) == pytest.approx(10.0)
    assert diagonal_transfer(R, np.diag(separate)) == pytest.approx(0.0)  # a T×T matrix: its diagonal
    assert diagonal_transfer(R[:2, :2], separate[:2], higher_is_better=True) == pytest.approx(-10.0)
    assert math.isnan(diagonal_transfer(R[:1, :1], separate[:1]))
    summary = transfer_summary(R, separate)
    assert summary["forward_transfer"] == pytest.approx(0.0)
    # backward: FID rose on task 0 (50 -> 70) and task 1 (40 -> 45): -(20 + 5) / 2
    assert summary["backward_transfer"] == pytest.approx(-12.5)
    assert summary["backward_transfer"] == cl_metrics.backward_transfer(R, higher_is_better=False)
