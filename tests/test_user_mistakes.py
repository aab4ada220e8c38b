"""A new user's mistakes (issue 13 §5): each gives one clear line, `genrep: error: ...` with exit
status 2 from the CLI (or a GenrepWarning where the result is computed but suspect), never a
traceback. Unwritable outputs are made with a parent that is a file (root ignores chmod)."""

import csv
import errno
import json
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import assert_one_line_error, run_cli
from genrep.cli.main import main
from genrep.data import calorimeter as zdc
from genrep.data import load_dataset
from genrep.errors import (CheckpointError, ConfigError, DataError, GenrepWarning, InputError, OutputError,
                           UnsafeFileError)
from genrep.experiments import simulate as sim
from genrep.experiments.evaluate import load_fake
from genrep.metrics import kid
from genrep.runs import write_json

TINY_VAE = ["--steps", "5", "--no-progress", "--set", "model.hidden=[16]", "--set", "train.batch_size=32",
            "--set", "train.checkpoint_every=1000", "--set", "data.validation_fraction=0"]


@pytest.fixture()
def a_file(tmp_path):
    """A plain file: paths below it cannot be written, by root or anyone."""
    path = tmp_path / "afile"
    path.write_text("not a folder\n")
    return path


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "vae"
    assert main(["train", "vae", "--dataset", "digits", "--out", str(out), *TINY_VAE]) == 0
    return out


@pytest.fixture(scope="module")
def tiny_features(tmp_path_factory):
    """A TorchScript feature network for 1×8×8 digits (64 -> 8 features): evaluate without LeNet."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("features") / "flat8.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(64, 8))), str(path))
    return path


@pytest.fixture()
def digits_npz(tmp_path):
    train = load_dataset("digits", "train")
    path = tmp_path / "fake.npz"
    np.savez(path, images=(train.images[:60].numpy() * 255).round().astype(np.uint8))
    return path


class Evil:
    """Unpickling this object calls a function: the kind of payload weights_only refuses."""

    def __reduce__(self):
        return (os.getcwd, ())


# ---- A. OS errors while writing ----------------------------------------------------------------

def test_write_under_a_file_names_the_file(a_file):
    with pytest.raises(OutputError, match=r"cannot write .*afile[/\\]sub[/\\]x\.json: .*afile is a file, not a folder"):
        write_json(a_file / "sub" / "x.json", {"a": 1})


def test_missing_parent_folders_are_created(tmp_path):
    write_json(tmp_path / "new" / "deeper" / "x.json", {"a": 1})
    assert json.loads((tmp_path / "new" / "deeper" / "x.json").read_text()) == {"a": 1}


def test_disk_full_while_writing(tmp_path, monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OutputError, match=r"cannot write .*x\.json: No space left on device"):
        write_json(tmp_path / "x.json", {"a": 1})
    assert not list(tmp_path.iterdir()), "no temporary file is left"


def test_checkpoint_under_a_file(a_file):
    from genrep.training.checkpoint import save_checkpoint

    with pytest.raises(OutputError, match=r"cannot write .*last\.ckpt: .*afile is a file, not a folder"):
        save_checkpoint(a_file / "last.ckpt", {"step": 1})


def test_os_error_without_a_write_site_is_one_line(capsys, monkeypatch):
    from genrep.cli import data_cmd

    def read_only(args):
        raise OSError(errno.EROFS, "Read-only file system", "/mnt/ro/out.png")

    monkeypatch.setattr(data_cmd, "list_cmd", read_only)
    code, _, err = run_cli(capsys, "data", "list")
    assert_one_line_error(code, err, "cannot write /mnt/ro/out.png: Read-only file system")


def test_evaluate_output_in_missing_folder_is_created(capsys, tmp_path, digits_npz, tiny_features):
    out = tmp_path / "results" / "deep" / "eval.json"
    code, stdout, err = run_cli(capsys, "evaluate", "--real", "digits", "--fake", digits_npz, "--metrics", "fid",
                                "--features", tiny_features, "--n", "60", "-o", out, "--no-progress")
    assert code == 0, err
    assert "fid" in json.loads(out.read_text()) and f"wrote {out}" in stdout


def test_evaluate_output_under_a_file_fails_before_computing(capsys, a_file, digits_npz, tiny_features):
    code, stdout, err = run_cli(capsys, "evaluate", "--real", "digits", "--fake", digits_npz, "--metrics", "fid",
                                "--features", tiny_features, "--n", "60", "-o", a_file / "eval.json", "--no-progress")
    assert_one_line_error(code, err, f"cannot write {a_file / 'eval.json'}", f"{a_file} is a file, not a folder")
    assert "fid" not in stdout


def test_evaluate_keeps_the_metrics_when_the_write_fails(capsys, tmp_path, monkeypatch, digits_npz, tiny_features):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full)
    code, stdout, err = run_cli(capsys, "evaluate", "--real", "digits", "--fake", digits_npz, "--metrics", "fid",
                                "--features", tiny_features, "--n", "60", "-o", tmp_path / "e.json", "--no-progress")
    assert_one_line_error(code, err, "cannot write", "e.json: No space left on device", "metrics are printed above")
    fid_line = next(line for line in stdout.splitlines() if line.startswith("fid"))
    assert np.isfinite(float(fid_line.split()[1]))


def test_sample_npz_parents_created_or_refused(capsys, tmp_path, a_file, vae_run):
    npz = tmp_path / "new" / "folder" / "s.npz"
    code, _, err = run_cli(capsys, "sample", vae_run, "-n", "4", "-o", tmp_path / "grid.png", "--npz", npz)
    assert code == 0, err
    with np.load(npz) as data:
        assert data["images"].shape == (4, 1, 8, 8)
    code, _, err = run_cli(capsys, "sample", vae_run, "-n", "4", "--npz", a_file / "s.npz")
    assert_one_line_error(code, err, f"cannot write {a_file / 's.npz'}: {a_file} is a file, not a folder")


# ---- B. refused pickles ------------------------------------------------------------------------

def assert_refused_safely(message: str, *fragments: str):
    assert "refused for safety" in message, message
    for fragment in fragments:
        assert fragment in message, message
    for unsafe in ("weights_only", "allow_pickle", "trust"):
        assert unsafe not in message, message


def test_checkpoint_with_code_objects_is_refused_not_corrupted(tmp_path):
    from genrep.training.checkpoint import load_checkpoint

    torch.save({"step": 1, "payload": Evil()}, tmp_path / "evil.ckpt")
    with pytest.raises(UnsafeFileError) as info:
        load_checkpoint(tmp_path / "evil.ckpt")
    assert isinstance(info.value, CheckpointError)
    assert_refused_safely(str(info.value), "evil.ckpt holds pickled Python objects beyond tensors", "getcwd")
    assert "corrupted" not in str(info.value)
    raw = (tmp_path / "evil.ckpt").read_bytes()
    torch.save({"step": 1}, tmp_path / "good.ckpt")
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "good.ckpt").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cut.ckpt is truncated or corrupted") as info:
        load_checkpoint(tmp_path / "cut.ckpt")
    assert "weights_only" not in str(info.value) and raw


def test_resume_from_a_checkpoint_with_code_objects(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "vae", "--dataset", "digits", "--out", str(out), *TINY_VAE]) == 0
    torch.save({"step": 1, "payload": Evil()}, out / "checkpoints" / "last.ckpt")
    code, _, err = run_cli(capsys, "train", "vae", "--dataset", "digits", "--out", out, "--resume", *TINY_VAE)
    line = assert_one_line_error(code, err, "last.ckpt holds pickled Python objects")
    assert_refused_safely(line)


def test_inception_weights_with_code_objects(tmp_path):
    from genrep.metrics.features import load_inception

    torch.save({"layers.conv.weight": torch.zeros(1), "hook": Evil()}, tmp_path / "inception.pt")
    with pytest.raises(UnsafeFileError) as info:
        load_inception(tmp_path / "inception.pt")
    assert_refused_safely(str(info.value), "inception.pt holds pickled Python objects")


def test_feature_net_pickled_as_a_module(capsys, tmp_path, digits_npz):
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(64, 8)), tmp_path / "net.pt")  # a whole nn.Module: code
    code, _, err = run_cli(capsys, "evaluate", "--real", "digits", "--fake", digits_npz, "--metrics", "fid",
                           "--features", tmp_path / "net.pt", "--n", "60", "-o", tmp_path / "e.json", "--no-progress")
    line = assert_one_line_error(code, err, "net.pt holds pickled Python objects", "torch.jit.save")
    assert_refused_safely(line)


def test_npz_with_object_arrays_is_refused(tmp_path):
    images = np.zeros((4, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "obj.npz", images=images, labels=np.array([{"a": 1}] * 4, dtype=object))
    with pytest.raises(UnsafeFileError) as info:
        load_dataset("npz", "train", path=str(tmp_path / "obj.npz"))
    assert isinstance(info.value, DataError)
    assert_refused_safely(str(info.value), "obj.npz: array 'labels' holds Python objects")
    with open(tmp_path / "pickle.npz", "wb") as f:
        pickle.dump({"images": images}, f)
    with pytest.raises(UnsafeFileError) as info:
        load_dataset("npz", "train", path=str(tmp_path / "pickle.npz"))
    assert_refused_safely(str(info.value), "pickle.npz is a Python pickle")


def test_particles_and_zdc_npz_with_object_arrays(tmp_path):
    np.savez(tmp_path / "p.npz", particles=np.array([[object()] * 9], dtype=object))
    with pytest.raises(UnsafeFileError) as info:
        sim.read_particles(tmp_path / "p.npz")
    assert_refused_safely(str(info.value), "array 'particles' holds Python objects")
    np.savez(tmp_path / "zdc.npz", responses=np.array([None], dtype=object), particles=np.zeros((1, 9)))
    with pytest.raises(UnsafeFileError) as info:
        zdc.read_zdc(tmp_path / "zdc.npz")
    assert_refused_safely(str(info.value), "array 'responses' holds Python objects")


# ---- C. stray tracebacks and silent outputs ----------------------------------------------------

@pytest.mark.parametrize("n", ["0", "-4"])
def test_preview_needs_at_least_one_image(capsys, tmp_path, n):
    code, _, err = run_cli(capsys, "data", "preview", "digits", "-n", n, "-o", tmp_path / "p.png")
    assert_one_line_error(code, err, f"-n (number of images to preview) must be >= 1, got {n}")
    assert not (tmp_path / "p.png").exists()


def test_image_folder_with_mixed_sizes_names_two_files(tmp_path):
    for name, size in (("a.png", (8, 8)), ("b.png", (8, 8)), ("c.png", (6, 9))):
        (tmp_path / "cls").mkdir(exist_ok=True)
        Image.new("L", size).save(tmp_path / "cls" / name)
    with pytest.raises(DataError, match=r"c\.png is 6×9 but .*a\.png is 8×8"):
        load_dataset("image_folder", "train", path=str(tmp_path), mode="gray")
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("a.png", "c.png"):
        shutil.copy(tmp_path / "cls" / name, flat / name)
    real = load_dataset("digits", "test")
    with pytest.raises(DataError, match=r"images of different sizes: .*c\.png is 6×9 but .*a\.png is 8×8"):
        load_fake(str(flat), real, seed=0)


def test_corrupt_data_spec_names_the_file(capsys, tmp_path, vae_run):
    run = tmp_path / "run"
    shutil.copytree(vae_run, run)
    (run / "data_spec.json").write_text('{"name": "digits", "image_sh')
    code, _, err = run_cli(capsys, "sample", run, "-n", "2")
    assert_one_line_error(code, err, f"run data spec {run / 'data_spec.json'} is corrupted: not valid JSON (line 1")
    (run / "data_spec.json").write_text('{"name": "digits"}')
    code, _, err = run_cli(capsys, "evaluate", "--real", "digits", "--fake", run, "--metrics", "fid")
    assert_one_line_error(code, err, "data_spec.json is corrupted", "image_shape")


def test_snr_out_that_is_a_file(capsys, a_file):
    code, _, err = run_cli(capsys, "analyze", "snr", "--dataset", "digits", "--steps", "10", "--out", a_file)
    assert_one_line_error(code, err, f"cannot write {a_file}: it is a file, not a folder")


def test_yaml_error_has_line_and_column(capsys, tmp_path):
    (tmp_path / "bad.yaml").write_text("model:\n  latent_dim: 3\n bad: [1, 2\n")
    code, _, err = run_cli(capsys, "train", "vae", "--config", tmp_path / "bad.yaml", "--out", tmp_path / "r")
    assert_one_line_error(code, err, "bad.yaml is not valid YAML: line 3, column 2:")


class StubSimulator(nn.Module):
    """sample(n, cond) -> zeros in [0, 1]; condition statistics like a trained conditional model."""

    value_range = (0.0, 1.0)

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.condition = nn.Module()
        self.condition.register_buffer("mean", torch.full((9,), 300.0))
        self.condition.register_buffer("std", torch.full((9,), 800.0))

    def sample(self, n, cond=None):
        return torch.zeros(n, 1, 44, 44)


def test_simulate_refuses_non_physical_energies(tmp_path):
    particles = zdc.sample_particles(3, seed=0).numpy().astype(np.float64)
    for bad, message in ((-5.0, "Energy must be > 0, not in particle 1"), (np.nan, "NaN or infinite values in particle 1"),
                         (np.inf, "NaN or infinite values in particle 1")):
        rows = particles.copy()
        rows[1, 0] = bad
        path = tmp_path / "p.csv"
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(zdc.PARTICLE_COLUMNS)
            writer.writerows(rows.tolist())
        with pytest.raises(InputError, match=message):
            sim.read_particles(path)
        with pytest.raises(InputError, match=message):
            sim.simulate_with(StubSimulator(), rows)


def test_simulate_warns_outside_the_energy_range(capsys, monkeypatch):
    particles = zdc.sample_particles(3, seed=0).numpy().astype(np.float64)
    particles[:, 0] = (5.0, 1e12, 10.0)
    with pytest.warns(GenrepWarning, match=r"Energy outside \[2, 3000\] GeV .* in particle 1 \(0-based\), e\.g\. 1e\+12"):
        out = sim.simulate_with(StubSimulator(), particles, energy_range=(2.0, 3000.0, "the synthetic simulator's"))
    assert out["responses"].shape == (3, 44, 44)
    with pytest.warns(GenrepWarning, match=r"outside \[0, 4300\] GeV \(the training particles' mean ± 5"):
        sim.simulate_with(StubSimulator(), particles)  # range from the model's condition statistics
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        particles[1, 0] = 100.0
        sim.simulate_with(StubSimulator(), particles)  # inside: no warning

    from genrep.cli import data_cmd

    def warns(args):
        sim.warn_energy_range(np.array([[1e12] + [0.0] * 8]), (2.0, 3000.0, "test"))
        return 0

    monkeypatch.setattr(data_cmd, "list_cmd", warns)
    code, _, err = run_cli(capsys, "data", "list")
    assert code == 0 and err.startswith("genrep: warning: particles: Energy outside [2, 3000] GeV"), err


def test_kid_refuses_too_few_samples(capsys, tmp_path, digits_npz, tiny_features):
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="kid needs at least 50 real and 50 generated samples.*got 3 real and 3"):
        kid(rng.normal(size=(3, 4)), rng.normal(size=(3, 4)))
    with pytest.raises(InputError, match="subset_size ≥ 50"):
        kid(rng.normal(size=(300, 4)), rng.normal(size=(300, 4)), subset_size=3)
    assert np.isfinite(kid(rng.normal(size=(60, 4)), rng.normal(size=(60, 4)), subsets=5)[0])
    code, _, err = run_cli(capsys, "evaluate", "--real", "digits", "--fake", digits_npz, "--metrics", "fid,kid",
                           "--features", tiny_features, "--n", "10", "-o", tmp_path / "e.json", "--no-progress")
    assert_one_line_error(code, err, "metric kid needs at least 50 images per set, got --n 10")


def test_lenet_refuses_images_of_another_size(tmp_path, monkeypatch):
    from genrep.metrics.features import get_extractor, load_lenet, train_lenet
    from genrep.metrics.features.lenet import LeNet
    from genrep.training.checkpoint import save_weights

    monkeypatch.setenv("GENREP_DATA", str(tmp_path))
    trained, _ = train_lenet("digits", epochs=1, progress=False)
    loaded = get_extractor("lenet", dataset="digits")
    mnist_sized = torch.rand(4, 1, 28, 28)
    for net in (trained, loaded):
        assert net.features(torch.rand(4, 1, 8, 8), progress=False).shape == (4, 84)
        with pytest.raises(InputError, match=r"lenet\[digits\] was trained on 8×8 images but got 28×28 images"):
            net.features(mnist_sized, progress=False)
        with pytest.raises(InputError, match="trained on 8×8 images but got 28×28"):
            net(mnist_sized)
    legacy = save_weights(tmp_path / "legacy.safetensors", LeNet())  # no size recorded: the data set's
    with pytest.raises(InputError, match="trained on 8×8 images but got 28×28"):
        load_lenet("digits", path=legacy)(mnist_sized)


# ---- red-team findings (benchmarks/red_team_cli.py): each a one-line error naming what was typed ----

def test_data_source_refuses_options_it_does_not_take(capsys, tmp_path):
    with pytest.raises(DataError, match=r"dataset 'digits' does not take the option path=.*options it takes: none"):
        load_dataset("digits", "train", path=str(tmp_path))
    with pytest.raises(DataError, match=r"dataset 'npz' does not take the option download=True .*options it takes: path"):
        load_dataset("npz", "train", path=str(tmp_path / "x.npz"), download=True)
    code, _, err = run_cli(capsys, "data", "info", "digits", "--path", tmp_path)
    assert_one_line_error(code, err, "dataset 'digits' does not take the option path=")


@pytest.mark.parametrize("key, value", [("model.hidden", "[-3]"), ("model.hidden", "[0]"),
                                        ("model.channels", "[16,0]")])
def test_layer_sizes_must_be_positive(capsys, tmp_path, key, value):
    code, _, err = run_cli(capsys, "train", "vae", "--dataset", "digits", "--steps", "2", "--no-progress",
                           "--out", tmp_path / "run", "--set", f"{key}={value}")
    assert_one_line_error(code, err, f"{key} must be a list of integers >= 1, got {value.replace(',', ', ')}")
    assert not (tmp_path / "run").exists()


def test_layer_sizes_of_every_autoencoder_config():
    from genrep.models.sinkhorn_ae import SinkhornAEConfig
    from genrep.models.vae import VAEConfig
    from genrep.models.wae import WAEConfig

    for cls in (VAEConfig, WAEConfig, SinkhornAEConfig):
        with pytest.raises(ConfigError, match=r"model\.hidden must be a list of integers >= 1, got \[0\]"):
            cls(hidden=[0])
        with pytest.raises(ConfigError, match=r"model\.channels must be a list of integers >= 1, got \[-2\]"):
            cls(channels=[-2])
    with pytest.raises(ConfigError, match=r"model\.noise_hidden must be a list of integers >= 1, got \[128, 0\]"):
        SinkhornAEConfig(noise_hidden=[128, 0])


@pytest.mark.parametrize("flag, value, message", [
    ("--lr", "nan", "train.lr must be a finite number > 0, got nan"),
    ("--lr", "inf", "train.lr must be a finite number > 0, got inf"),
    ("--lr", "0", "train.lr must be a finite number > 0, got 0.0"),
])
def test_lr_must_be_finite_and_positive(capsys, tmp_path, flag, value, message):
    code, _, err = run_cli(capsys, "train", "vae", "--dataset", "digits", "--steps", "2", "--no-progress",
                           "--out", tmp_path / "run", flag, value)
    assert_one_line_error(code, err, message)


def test_every_float_train_setting_refuses_nan_and_inf():
    from genrep.training.config import TrainConfig

    for field in ("lr", "weight_decay", "momentum", "grad_clip", "lr_gamma", "ema_decay"):
        for bad in (float("nan"), float("inf")):
            with pytest.raises(ConfigError, match=rf"train\.{field} must"):
                TrainConfig(**{field: bad})


@pytest.mark.parametrize("setting, message", [
    ("data.validation_fraction=-0.1", "data.validation_fraction must be a number in [0, 1), got -0.1"),
    ("data.validation_fraction=1", "data.validation_fraction must be a number in [0, 1), got 1"),
    ("data.limit=0", "data.limit must be an integer >= 1 or null, got 0"),
    ("data.limit=-3", "data.limit must be an integer >= 1 or null, got -3"),
    ("data.image_size=0", "data.image_size must be an integer >= 1 or null, got 0"),
])
def test_data_config_values(capsys, tmp_path, setting, message):
    code, _, err = run_cli(capsys, "train", "vae", "--dataset", "digits", "--steps", "2", "--no-progress",
                           "--out", tmp_path / "run", "--set", setting)
    assert_one_line_error(code, err, message)
    with pytest.raises(DataError, match=r"validation_fraction must be in \[0, 1\), got -0.1"):
        load_dataset("digits", "train", validation_fraction=-0.1)


def test_precision_16_mixed_on_cpu_is_one_genrep_warning(capsys, caplog, tmp_path):
    import logging

    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as other:
        warnings.simplefilter("always")
        code, _, err = run_cli(capsys, "train", "vae", "--dataset", "digits", "--out", tmp_path / "run",
                               "--precision", "16-mixed", *TINY_VAE)
    assert code == 0, err
    assert err.strip().splitlines() == ["genrep: warning: precision 16-mixed is not supported on CPU; using bf16-mixed"]
    assert not [w for w in other if "16-mixed" in str(w.message)], "Lightning's own warning is silenced"
    assert not [r for r in caplog.records if "Mixed Precision" in r.getMessage()], "and its info line too"


@pytest.mark.parametrize("argv, name", [(["train", "vae", "--dataset", "digits", "--out", ""], "--out"),
                                        (["train", "vae", "--dataset", "digits", "--config", " "], "--config"),
                                        (["sample", "RUN", "-o", ""], "--out")])
def test_empty_paths_are_refused(capsys, argv, name):
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, f"{name} must not be empty")


def test_resume_to_fewer_steps_is_refused_before_anything_changes(capsys, tmp_path):
    out = tmp_path / "run"
    base = ["train", "vae", "--dataset", "digits", "--no-progress", "--out", out, "--set", "model.hidden=[16]"]
    assert run_cli(capsys, *base, "--steps", "2")[0] == 0
    config = (out / "config.yaml").read_text()
    code, _, err = run_cli(capsys, *base, "--steps", "1", "--resume")
    assert_one_line_error(code, err, "--steps 1 (train.steps) is below the step the run has reached (2, in",
                          "pass a larger --steps")
    assert (out / "config.yaml").read_text() == config
    code, out_text, err = run_cli(capsys, *base, "--steps", "3", "--resume")
    assert code == 0 and "steps             3" in out_text, err


def test_sample_out_of_memory_is_one_line(capsys, tmp_path, vae_run, monkeypatch):
    from genrep.experiments import train as train_module

    def too_big(model, n, cond=None, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you "
                           "tried to allocate 25600000000 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(train_module, "sample_in_batches", too_big)
    code, _, err = run_cli(capsys, "sample", vae_run, "-n", "100000000", "-o", tmp_path / "s.png")
    assert_one_line_error(code, err, "out of memory sampling 100000000 images (one allocation of 25.6 GB); "
                                     "lower -n or sample in several calls")


def test_sample_in_batches_matches_one_call(vae_run):
    from genrep.experiments.train import load_trained_model, sample_in_batches

    model = load_trained_model(vae_run)
    torch.manual_seed(3)
    once = model.sample(40)
    torch.manual_seed(3)
    assert torch.equal(sample_in_batches(model, 40, batch_size=50), once)
    batched = sample_in_batches(model, 23, batch_size=5)
    assert batched.shape == (23, *model.image_shape) and torch.isfinite(batched).all()


class _Conditioned(nn.Module):
    """A model conditioned on class labels (num_classes) or on 9-d vectors (num_classes None)."""

    value_range = (0.0, 1.0)
    conditional = True

    def __init__(self, num_classes):
        super().__init__()
        self.condition = nn.Module()
        self.condition.num_classes, self.condition.dim = num_classes, num_classes or 9
        self.image_shape = (1, 8, 8)

    def sample(self, n, cond=None):
        return torch.zeros(n, 1, 8, 8)


def test_sample_labels_must_fit_the_model(capsys, tmp_path, vae_run, monkeypatch):
    from genrep.experiments import train as train_module

    png = tmp_path / "s.png"
    code, _, err = run_cli(capsys, "sample", vae_run, "-n", "4", "--labels", "1,2", "-o", png)
    assert_one_line_error(code, err, f"--labels is only for conditional models; {vae_run}'s vae is unconditional")
    monkeypatch.setattr(train_module, "load_trained_model", lambda run: _Conditioned(None))
    code, _, err = run_cli(capsys, "sample", vae_run, "-n", "4", "--labels", "3", "-o", png)
    assert_one_line_error(code, err, "--labels needs a model conditioned on class labels; ",
                          "takes 9-d condition vectors (sample it without --labels", "genrep simulate")
    monkeypatch.setattr(train_module, "load_trained_model", lambda run: _Conditioned(10))
    code, _, err = run_cli(capsys, "sample", vae_run, "-n", "4", "--labels", "3,12", "-o", png)
    assert_one_line_error(code, err, "--labels must lie in [0, 9] (the run's 10 classes), got '3,12'")
    code, _, err = run_cli(capsys, "sample", vae_run, "-n", "4", "--labels", "3,9", "-o", png)
    assert code == 0 and png.is_file(), err


def test_analysis_flags_are_named(capsys, tmp_path):
    code, _, err = run_cli(capsys, "analyze", "snr", "--dataset", "digits", "--steps", "100000000", "--out", tmp_path)
    assert_one_line_error(code, err, "--steps (number of diffusion steps T) must be an integer ≥ 2 and at most 100,000, "
                                     "got 100000000")
    code, _, err = run_cli(capsys, "analyze", "reconstruction", "--dataset", "digits", "--method", "gaussian",
                           "--n-fit", "0", "--out", tmp_path)
    assert_one_line_error(code, err, "--n-fit (training images to fit the Gaussian) must be >= 1, got 0")
    code, _, err = run_cli(capsys, "analyze", "switching", tmp_path / "no_run", "--dae-channels", "0",
                           "--out", tmp_path)
    assert_one_line_error(code, err, "--dae-channels (base channels of the DAE's UNet) must be >= 1, got 0")


def test_reconstruction_warns_when_an_eval_set_is_resized(capsys, tmp_path, monkeypatch):
    import dataclasses

    import torch.nn.functional as F

    from genrep.data import registry

    digits = load_dataset("digits", "test")

    def load16(split):  # a second offline data set of another size
        return dataclasses.replace(digits, name="digits16", images=F.interpolate(digits.images, size=(16, 16)))

    monkeypatch.setitem(registry._SOURCES, "digits16",
                        registry.Source("digits16", load16, lambda: "test", "digits at 16×16"))
    code, out, err = run_cli(capsys, "analyze", "reconstruction", "--dataset", "digits", "--method", "gaussian",
                             "--eval-dataset", "digits16", "--steps", "50", "--n", "16", "--points", "3",
                             "--out", tmp_path)
    assert code == 0, err
    assert err.strip().splitlines() == ["genrep: warning: digits16 images are 16×16 but digits images are 8×8: "
                                        "digits16 is resized to 8×8 (pass --image-size to choose one size for all)"]
    code, out, err = run_cli(capsys, "analyze", "reconstruction", "--dataset", "digits", "--method", "gaussian",
                             "--eval-dataset", "digits16", "--image-size", "16", "--steps", "50", "--n", "16",
                             "--points", "3", "--out", tmp_path)
    assert code == 0 and "warning" not in err, err


def test_unknown_top_level_flag_is_named(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--bogus-flag"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "genrep: error: unrecognized arguments: --bogus-flag"
    with pytest.raises(SystemExit):
        main([])
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err


CL_SMOKE = ["continual", "finetune", "--scenario", "split-digits", "--scale", "smoke", "--no-progress",
            "--set", "epochs=1"]


def test_continual_device_must_exist(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run_cli(capsys, *CL_SMOKE, "--set", "device=cuda", "--out", tmp_path / "cl")
    assert_one_line_error(code, err, "device cuda is not available here (torch.cuda.is_available() is False); "
                                     "use --set device=cpu")
    assert not (tmp_path / "cl").exists()


def test_continual_out_of_memory_names_the_large_settings(capsys, tmp_path, monkeypatch):
    from genrep.continual import runner

    def too_big(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 320000000000 bytes")

    monkeypatch.setattr(runner, "run_scenario", too_big)
    argv = [a.replace("finetune", "gr") for a in CL_SMOKE]
    code, _, err = run_cli(capsys, *argv, "--set", "latent_dim=100000000", "--set", "gen_iters=1",
                           "--out", tmp_path / "cl")
    assert_one_line_error(code, err, "out of memory running gr on split-digits (seed 0) (one allocation of 320 GB); "
                                     "lower --set latent_dim=100000000 (smoke recipe ")
    assert not (tmp_path / "cl").exists()  # nothing half-made: the corrected command needs no --overwrite


def test_a_failed_continual_run_keeps_folders_that_existed_or_hold_a_checkpoint(tmp_path):
    from genrep.experiments.continual import discard_unstarted

    old, fresh, started = tmp_path / "old", tmp_path / "fresh", tmp_path / "started"
    for folder in (old, fresh / "seed0", started / "seed0"):
        folder.mkdir(parents=True)
    (started / "seed0" / "checkpoint.pt").write_bytes(b"x")
    discard_unstarted([fresh, started / "seed0", started])
    assert old.is_dir() and not fresh.exists() and (started / "seed0" / "checkpoint.pt").is_file()


def test_unreadable_files_are_described_as_they_are(capsys, tmp_path):
    from genrep.utils.safe_load import load_arrays

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(bytes(range(7, 256)) * 8)
    with pytest.raises(DataError, match=r"garbage\.npz: not a valid \.npz/\.npy file") as refused:
        load_arrays(garbage)
    assert not isinstance(refused.value, UnsafeFileError)
    pickled = tmp_path / "pickled.npz"
    pickled.write_bytes(pickle.dumps({"images": [1, 2]}))
    with pytest.raises(UnsafeFileError, match=r"pickled\.npz is a Python pickle"):
        load_arrays(pickled)
    folder = tmp_path / "adir"
    folder.mkdir()
    code, _, err = run_cli(capsys, "train", "vae", "--config", folder, "--out", tmp_path / "run")
    assert_one_line_error(code, err, f"config file {folder} is a folder, not a YAML file")


def test_evaluate_features_file_that_does_not_exist(capsys, tmp_path, digits_npz):
    code, _, err = run_cli(capsys, "evaluate", "--real", "digits", "--fake", digits_npz, "--metrics", "fid",
                           "--features", tmp_path / "missing.pt", "--n", "60", "-o", tmp_path / "e.json",
                           "--no-progress")
    assert_one_line_error(code, err, f"--features {tmp_path / 'missing.pt'} does not exist")
