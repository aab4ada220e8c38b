"""The registry of continual methods (`genrep.continual.registry`): every method is one `LearnerSpec`, and the
command line, `run_method` and the settings per scale and protocol follow from it."""

from __future__ import annotations

import dataclasses
import functools
import json

import pytest
import torch

from genrep.cli.main import main
from genrep.continual import baselines
from genrep.continual import multiband as mb
from genrep.continual.binplay import BinPlay, BinPlaySettings
from genrep.continual.learner import ContinualLearner
from genrep.continual.registry import LEARNERS, LearnerSpec, get_learner, learner_names, register_learner
from genrep.errors import ConfigError
from genrep.experiments import continual as recipe

BUILT_IN = {
    "binplay": ("classifier", BinPlaySettings, BinPlay),
    "gr": ("classifier", baselines.GRSettings, baselines.GenerativeReplay),
    "gr-distill": ("classifier", baselines.GRSettings, baselines.GenerativeReplay),
    "er": ("classifier", baselines.ERSettings, baselines.ExperienceReplay),
    "finetune": ("classifier", baselines.ClassifierSettings, baselines.FineTune),
    "joint": ("classifier", baselines.JointSettings, baselines.JointTraining),
}
GENERATIVE = {
    "multiband": ("generator", mb.MultibandSettings, mb.MultibandVAE),
    "gr-vae": ("generator", mb.MultibandSettings, mb.MultibandVAE),
    "ewc-vae": ("generator", mb.RegularisedSettings, mb.RegularisedVAE),
    "si-vae": ("generator", mb.RegularisedSettings, mb.RegularisedVAE),
    "separate-vae": ("generator", mb.BoundSettings, mb.SeparateVAEs),
    "joint-vae": ("generator", mb.BoundSettings, mb.JointVAE),
}


def help_text(capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "10000")  # no line wrapping in argparse's help
    with pytest.raises(SystemExit) as exit_info:
        main(["continual", "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


# -- a method that is not built in -----------------------------------------------------------------------------

@dataclasses.dataclass
class NearestMeanSettings:
    per_class: int | None = None  # training images per class averaged (None: all)
    seed: int = 0


class NearestMean(ContinualLearner):
    """Nearest class mean: keeps the mean image of every class seen; predicts the closest one."""

    def __init__(self, settings: NearestMeanSettings):
        self.settings = settings
        self.means: dict[int, torch.Tensor] = {}

    def setup(self, scenario) -> None:
        self.num_classes = scenario.num_classes

    def learn(self, task) -> None:
        images, labels = task.train.images.flatten(1), task.train.labels
        for label in labels.unique().tolist():
            self.means[label] = images[labels == label][: self.settings.per_class].mean(0)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.full((len(x), self.num_classes), -1e9)
        for label, mean in self.means.items():
            logits[:, label] = -((x.flatten(1) - mean) ** 2).sum(1)
        return logits

    def state_dict(self):
        return {"means": dict(self.means)}

    def load_state_dict(self, state) -> None:
        self.means = dict(state["means"])

    def memory_bytes(self) -> int:
        return sum(mean.numel() * mean.element_size() for mean in self.means.values())


def means_picture(learner, scenario, folder):
    path = folder / "means.json"
    path.write_text(json.dumps(sorted(learner.means)))
    return [path]


@pytest.fixture
def nearest_mean():
    spec = register_learner(LearnerSpec(
        "nearest-mean", NearestMean, NearestMeanSettings, "classifier", "nearest class mean (a registry test)",
        "test", scales={"smoke": {"per_class": 20}}, pictures=means_picture))
    yield spec
    del LEARNERS[spec.name]


# -- the built-in methods --------------------------------------------------------------------------------------

def test_the_registry_lists_every_method_with_its_kind_and_settings():
    assert learner_names() == tuple(BUILT_IN) + tuple(GENERATIVE)
    assert learner_names("classifier") == tuple(BUILT_IN) and learner_names("generator") == tuple(GENERATIVE)
    for name, (kind, settings, cls) in {**BUILT_IN, **GENERATIVE}.items():
        spec = get_learner(name)
        metric = "fid" if kind == "generator" else "accuracy"
        assert (spec.name, spec.kind, spec.settings, spec.metric) == (name, kind, settings, metric)
        assert spec.summary and recipe.settings_class(name) is settings
        assert type(recipe.learner_from_settings(name, recipe.learner_settings(name))) is cls
    assert {name for name in BUILT_IN if get_learner(name).pictures is not None} == {"binplay", "gr", "gr-distill"}
    assert all(get_learner(name).pictures is not None for name in GENERATIVE)
    gr_vae = recipe.learner_settings("gr-vae")
    assert (gr_vae.two_step, gr_vae.translator, gr_vae.binary_latent, gr_vae.forgetting_threshold) == (
        False, False, False, 1.0)
    assert recipe.learner_settings("ewc-vae").penalty == "ewc" and recipe.learner_settings("si-vae").penalty == "si"
    assert get_learner("gr-distill").defaults == {"distill": True} and get_learner("gr").defaults == {}


def test_help_shows_every_method_with_its_summary(capsys, monkeypatch):
    out = help_text(capsys, monkeypatch)
    for name in (*BUILT_IN, *GENERATIVE):
        assert get_learner(name).help_line() in out
    for name in (*BUILT_IN, *GENERATIVE):  # and the settings --set takes
        assert name in out.split("settings for --set:")[1]


# the settings of representative methods, scales and protocols as they were before the registry
BEFORE = {
    ("binplay", "cpu", "shared"): {
        "classifier": "lenet5", "width": 4, "ae_epochs": 3, "warmup_epochs": 1, "decoder_epochs": 15,
        "decoder_init": "autoencoder", "decoder_lr": 0.005, "decoder_new_fraction": 0.5},
    ("binplay", "smoke", "shared"): {"classifier": "lenet5", "width": 8, "ae_epochs": 10, "warmup_epochs": 3,
                                     "decoder_epochs": 40},
    ("binplay", "paper", "shared"): {"classifier": "lenetg"},
    ("gr", "smoke", "shared"): {"classifier": "lenet5", "gen_iters": 100},
    ("gr-distill", "cpu", "shared"): {"classifier": "lenet5"},
    ("er", "paper", "shared"): {"classifier": "lenetg"},
    ("gr-distill", "paper", "van-de-ven"): {
        "classifier": "mlp", "iterations": 2000, "batch_size": 128, "lr": 0.001, "loss": "ce",
        "active_classes": "seen", "reset_optimizer": False, "latent_dim": 100, "hidden": (400, 400),
        "gen_iters": 2000, "gen_batch_size": 128, "gen_lr": 0.001, "distill_temperature": 2.0},
    ("gr-distill", "smoke", "van-de-ven"): {
        "classifier": "mlp", "gen_iters": 100, "iterations": 100, "batch_size": 128, "lr": 0.001, "loss": "ce",
        "active_classes": "seen", "reset_optimizer": False, "latent_dim": 100, "hidden": (400, 400),
        "gen_batch_size": 128, "gen_lr": 0.001, "distill_temperature": 2.0},
    ("finetune", "smoke", "van-de-ven"): {
        "classifier": "mlp", "iterations": 100, "batch_size": 128, "lr": 0.001, "loss": "ce",
        "active_classes": "seen", "reset_optimizer": False},
}


@pytest.mark.parametrize("method, scale, protocol", list(BEFORE))
def test_method_settings_are_those_before_the_registry(method, scale, protocol):
    settings = recipe.method_settings(method, scale, protocol)
    assert list(settings.items()) == list(BEFORE[method, scale, protocol].items())  # in order: summary.json's
    resolved = recipe.learner_settings(method, scale, protocol=protocol)
    assert {key: getattr(resolved, key) for key in settings} == settings
    assert getattr(resolved, "distill", False) == (method == "gr-distill")


def test_van_de_ven_applies_to_the_methods_with_its_groups():
    assert recipe.protocol_methods("shared") == tuple(BUILT_IN) + tuple(GENERATIVE)
    assert recipe.protocol_methods("van-de-ven") == ("gr", "gr-distill", "er", "finetune", "joint")


def test_a_duplicate_or_malformed_spec_is_refused():
    with pytest.raises(ConfigError, match="^a continual method named 'gr' is registered already$"):
        register_learner(get_learner("gr"))
    with pytest.raises(ConfigError, match="kind must be one of classifier, generator, got 'regressor'"):
        register_learner(dataclasses.replace(get_learner("gr"), name="x", kind="regressor"))
    with pytest.raises(ConfigError, match=r"scales\['cpu'\] sets gen_iter, not settings of GRSettings"):
        register_learner(dataclasses.replace(get_learner("gr"), name="x", scales={"cpu": {"gen_iter": 3}}))
    assert learner_names() == tuple(BUILT_IN) + tuple(GENERATIVE)


def test_an_unknown_method_is_a_one_line_error_naming_the_valid_ones(capsys):
    message = ("^unknown method 'ewc'; valid: binplay, gr, gr-distill, er, finetune, joint, multiband, gr-vae, "
               "ewc-vae, si-vae, separate-vae, joint-vae$")
    for call in (get_learner, recipe.settings_class, lambda name: recipe.method_settings(name, "cpu"),
                 lambda name: recipe.learner_settings(name, "cpu")):
        with pytest.raises(ConfigError, match=message):
            call("ewc")
    with pytest.raises(SystemExit):
        main(["continual", "ewc"])
    assert "invalid choice: 'ewc'" in capsys.readouterr().err


# -- adding a method -------------------------------------------------------------------------------------------

def test_a_registered_method_appears_in_the_command_line(nearest_mean, capsys, monkeypatch):
    assert learner_names()[-1] == "nearest-mean" and "nearest-mean" in learner_names("classifier")
    out = help_text(capsys, monkeypatch)
    assert "nearest-mean (test): nearest class mean (a registry test)" in out
    assert "nearest-mean: per_class" in out.split("settings for --set:")[1]
    assert "nearest-mean" not in recipe.protocol_methods("van-de-ven")  # no protocol groups
    assert recipe.method_settings("nearest-mean", "smoke") == {"per_class": 20}  # no classifier setting
    assert recipe.method_settings("nearest-mean", "cpu") == {}


def test_a_registered_method_runs_from_the_command_line(nearest_mean, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["continual", "nearest-mean", "--scenario", "split-digits", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "nearest-mean on split-digits (smoke, 1 seed(s)): average accuracy" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"] == {"per_class": 20}
    assert summary["average_accuracy_percent"]["mean"] > 50  # nearest class mean does not forget
    assert list(summary["per_seed"][0]) == ["seed", "average_accuracy", "forgetting", "memory_mb", "wall_time_s",
                                            "run_s", "final_row"]
    assert summary["memory_mb"] == 10 * 64 * 4 / 2**20  # ten 8×8 float32 means
    assert json.loads((out / "seed0" / "means.json").read_text()) == list(range(10))  # the spec's pictures
    assert json.loads((out / "config.json").read_text())["settings"] == {"per_class": 20}


def test_the_summary_reports_the_spec_s_metric(nearest_mean, tmp_path, monkeypatch):
    """A method whose metric is not accuracy (e.g. FID for generators) gets `average_<metric>` in its summary."""
    from genrep.continual import runner
    from genrep.continual.runner import classification_accuracy

    register_learner(dataclasses.replace(nearest_mean, name="nearest-mean-error", metric="error"))
    try:
        monkeypatch.setattr(runner, "run_scenario", functools.partial(
            runner.run_scenario, evaluate=lambda learner, task: {"error": 1 - classification_accuracy(learner, task)}))
        summary = recipe.run_method("nearest-mean-error", "split-digits", out=tmp_path, progress=False, log=None)
        assert "average error" in recipe.describe(summary)
    finally:
        del LEARNERS["nearest-mean-error"]
    seed = summary["per_seed"][0]
    assert "average_accuracy_percent" not in summary and "average_accuracy" not in seed
    assert summary["average_error"] == {"mean": seed["average_error"], "sem": 0.0} and 0 <= seed["average_error"] < 0.5
