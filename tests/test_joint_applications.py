"""Applications of the joint diffusion model (thesis ch. 6): counterfactual explanations (Sec. 6.6.6),
the α sweep (Fig. 6.6.1), classifier decisions per sampling step (Fig. 6.6.3) and `genrep joint`."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from genrep.cli.main import main
from genrep.errors import InputError
from genrep.experiments.joint import sampling_analysis as sa
from genrep.experiments.joint.counterfactual import (counterfactuals, default_targets, noising_index,
                                                     pick_balanced, plot_counterfactuals, summary)
from genrep.models.ddgm import DDGM, DDGMConfig, from_model_range, to_model_range
from genrep.models.joint_diffusion import JointDiffusion, JointDiffusionConfig

UNET = {"model_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": [],
        "middle_attention": False, "dropout": 0.0}
TINY = ["--set", "model.steps=40", "--set", "model.unet.model_channels=16", "--set", "model.unet.channel_mult=[1,2]",
        "--set", "model.unet.num_res_blocks=1", "--set", "model.unet.attention_resolutions=[]",
        "--set", "model.unet.middle_attention=false", "--set", "model.sample_steps=10"]
STRONG_ALPHA = 1e4  # this tiny model's head moves Z only a little per unit of α


def halves(n, seed):
    """Two easy classes of 8×8 images in [0, 1]: class 0 bright on the left half, class 1 on the right
    (uniform texture in [0, 0.3] elsewhere); labels 0, 1, 0, 1, …"""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.3
    x[y == 0, :, :, :4] += 0.7
    x[y == 1, :, :, 4:] += 0.7
    return x.clamp(0, 1), y


@pytest.fixture(scope="module")
def model():
    """A joint-noisy model (Eq. 6.10 noisy classifiers) on the two classes of `halves`, T = 40, 10
    sampling steps, 150 training steps of 32."""
    torch.manual_seed(0)
    x, y = halves(400, seed=0)
    config = JointDiffusionConfig(steps=40, sample_steps=10, clip_denoised=False, unet=dict(UNET),
                                  classifier={"noisy": "thesis", "augmentation": False})
    m = JointDiffusion(config, image_shape=(1, 8, 8), value_range=(0.0, 1.0), num_classes=2)
    optimizer = torch.optim.AdamW(m.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    m.train()
    for _ in range(150):
        rows = torch.randint(len(x), (32,), generator=g)
        loss = m({"x": x[rows], "y": y[rows]}).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return m.eval()


@pytest.fixture(scope="module")
def test_images():
    return halves(6, seed=1)


# ------------------------------------------------------------------------------------- counterfactuals

def test_noising_index_is_the_step_closest_to_the_fraction(model):
    process = model.sampling_diffusion
    timesteps = process.timestep_map.numpy()
    for fraction in (0.05, 0.2, 0.5, 1.0):
        expected = int(np.argmin(np.abs(timesteps - fraction * (40 - 1))))
        assert noising_index(process, fraction) == expected
    assert timesteps[noising_index(process, 0.2)] == 9  # kept steps 0, 4, 9, …: 9 is closest to 7.8
    assert noising_index(process, 1.0) == len(timesteps) - 1
    assert noising_index(model.diffusion, 0.2) == 8  # a plain process: round(0.2·39) = 8
    for bad in (0, -0.1, 1.5, float("nan"), True, "0.2"):
        with pytest.raises(InputError, match=r"fraction .*\(0, 1\]"):
            noising_index(process, bad)


def test_counterfactual_noises_x0_with_q_sample_at_k(model, test_images):
    x, y = test_images
    result = counterfactuals(model, x, default_targets(y, 2), generator=torch.Generator().manual_seed(3))
    process = model.sampling_diffusion
    k = noising_index(process, 0.2)
    assert result["k"] == k and result["timestep"] == int(process.timestep_map[k])
    x0 = to_model_range(x, model.value_range)
    noise = process.noise_like(x0.shape, generator=torch.Generator().manual_seed(3))
    x_k = process.q_sample(x0, torch.full((len(x),), k), noise)
    assert torch.equal(result["noise"], noise)
    assert torch.equal(result["noised"], from_model_range(x_k, model.value_range))
    assert torch.equal(result["original"], x)
    assert torch.equal(result["difference"], result["counterfactual"] - result["original"])
    for key in ("original", "noised", "counterfactual"):
        assert result[key].shape == x.shape and 0 <= float(result[key].min()) <= float(result[key].max()) <= 1
    assert result["alpha"] == model.config.sampling_alpha
    for key in ("p_target_before", "p_target_after"):
        assert result[key].shape == (len(x),) and bool(((result[key] >= 0) & (result[key] <= 1)).all())
    numbers = summary(result, y)
    assert len(numbers["images"]) == len(x) and 0 <= numbers["flipped_share"] <= 1
    assert json.dumps(numbers)


def test_counterfactual_starts_at_k_not_at_T_minus_1(model, test_images, monkeypatch):
    x, y = test_images
    calls = []
    original = model.conditional_model

    def spy(target, alpha, *, on_step=None):
        inner = original(target, alpha, on_step=on_step)

        def call(x_t, t, **kw):
            calls.append(int(t[0]))
            return inner(x_t, t, **kw)
        return call

    monkeypatch.setattr(model, "conditional_model", spy)
    counterfactuals(model, x, default_targets(y, 2), fraction=0.2, generator=torch.Generator().manual_seed(0))
    timestep_map = model.sampling_diffusion.timestep_map.tolist()
    k = noising_index(model.sampling_diffusion, 0.2)
    assert calls[0] == timestep_map[k] == 9  # not T − 1 = 39
    assert calls == timestep_map[:k + 1][::-1]  # steps k, …, 0 and nothing above


def test_alpha_zero_counterfactual_is_plain_partial_sampling(model, test_images):
    x, y = test_images
    result = counterfactuals(model, x, default_targets(y, 2), alpha=0.0, generator=torch.Generator().manual_seed(5))
    process, k = model.sampling_diffusion, result["k"]
    g = torch.Generator().manual_seed(5)
    x0 = to_model_range(x, model.value_range)
    x_k = process.q_sample(x0, torch.full((len(x),), k), process.noise_like(x0.shape, generator=g))
    with torch.no_grad():
        plain = process.sample_loop(model.unet, tuple(x.shape), noise=x_k, t_start=k, clip_denoised=False, generator=g)
    assert torch.equal(result["counterfactual"], from_model_range(plain, model.value_range))
    guided = counterfactuals(model, x, default_targets(y, 2), alpha=STRONG_ALPHA,
                             generator=torch.Generator().manual_seed(5))
    assert not torch.equal(guided["counterfactual"], result["counterfactual"])  # α is used


def test_counterfactual_input_errors(model, test_images):
    x, y = test_images
    for bad in (0.0, 1.2, -1):
        with pytest.raises(InputError, match=r"fraction .*\(0, 1\]"):
            counterfactuals(model, x, default_targets(y, 2), fraction=bad)
    with pytest.raises(InputError, match=r"class ids must lie in \[0, 1\]"):
        counterfactuals(model, x, torch.full((len(x),), 2))
    with pytest.raises(InputError, match="alpha must be a number >= 0"):
        counterfactuals(model, x, default_targets(y, 2), alpha=-1.0)
    ddgm = DDGM(DDGMConfig(steps=40, unet=dict(UNET)), image_shape=(1, 8, 8))
    with pytest.raises(InputError) as info:
        counterfactuals(ddgm, x, default_targets(y, 2))
    message = str(info.value)
    assert message == ("conditional sampling needs a joint diffusion model with a classifier head; DDGM has none")


def test_default_targets_and_balanced_picks():
    assert default_targets(torch.tensor([0, 1, 1, 0]), 2).tolist() == [1, 0, 0, 1]
    assert default_targets(torch.tensor([0, 9, 3]), 10).tolist() == [1, 0, 4]
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 10)
    picked = pick_balanced(labels, 9, seed=1)
    counts = torch.bincount(labels[picked], minlength=3).tolist()
    assert counts == [3, 3, 3] and len(set(picked.tolist())) == 9
    picked = pick_balanced(labels, 15, seed=1)  # class 1 runs out after 3
    assert torch.bincount(labels[picked], minlength=3).tolist() == [6, 3, 6]
    assert torch.equal(pick_balanced(labels, 15, seed=1), picked)
    with pytest.raises(InputError):
        pick_balanced(labels, 24, seed=0)


def test_counterfactual_plots_gray_and_rgb(model, test_images, tmp_path):
    x, y = test_images
    result = counterfactuals(model, x[:3], default_targets(y[:3], 2), generator=torch.Generator().manual_seed(0))
    path = plot_counterfactuals(result, tmp_path / "cf.png", class_names=["zero", "one"], value_range=(0.0, 1.0),
                                labels=y[:3])
    assert Image.open(path).size[0] > 100
    rgb = {key: torch.rand(2, 3, 8, 8) for key in ("original", "noised", "counterfactual")}
    rgb["difference"] = rgb["counterfactual"] - rgb["original"]
    rgb.update(targets=torch.tensor([1, 0]), predicted_before=torch.tensor([0, 1]), p_target_after=torch.rand(2),
               fraction=0.2, timestep=9, alpha=200.0)
    assert Image.open(plot_counterfactuals(rgb, tmp_path / "rgb.png", value_range=(0.0, 1.0))).size[0] > 100


# ------------------------------------------------------------------------------------- α and decisions

def test_decisions_over_steps(model, tmp_path):
    result = sa.decisions_over_steps(model, alphas=[0, STRONG_ALPHA], n_per_class=16, seed=0)
    steps = len(model.sampling_diffusion.timestep_map)
    assert result["timesteps"] == model.sampling_diffusion.timestep_map.tolist()[::-1]  # noise first
    assert result["targets"].tolist() == [0] * 16 + [1] * 16
    for run in result["runs"]:
        assert run["p_target"].shape == (steps, 2)
        assert ((run["p_target"] >= 0) & (run["p_target"] <= 1)).all()
        assert run["final_p_target"].shape == (2,)
        assert ((run["final_p_target"] >= 0) & (run["final_p_target"] <= 1)).all()
        assert run["samples"].shape == (32, 1, 8, 8)
    plain, guided = result["runs"]
    assert np.allclose(plain["p_target"][0], guided["p_target"][0])  # the same starting noise for every α
    assert not np.allclose(plain["p_target"][1:], guided["p_target"][1:])  # α is used
    assert not torch.equal(plain["samples"], guided["samples"])
    unguided = model.sample(32, result["targets"], alpha=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(plain["samples"], unguided)
    assert json.dumps(sa.decisions_summary(result))
    path = sa.plot_decisions(result, tmp_path / "decisions.png", class_names=["left", "right"])
    assert Image.open(path).size[0] > 100
    with pytest.raises(InputError, match="alphas must be numbers >= 0"):
        sa.decisions_over_steps(model, alphas=[-1], n_per_class=2, seed=0)


def test_descend_ce_moves_this_model_toward_the_target(model):
    """Which sign of the Z update helps depends on the trained model (benchmarks/RESULTS.md, "Joint
    diffusion: the sign of the representation step"): on this two-class model Z − α∇_Z CE (the thesis
    prose) raises the final p(target) and the reference's Z + α∇_Z CE lowers it (0.51 → 0.38 at
    α = 1e4 over seeds 0–2); tests/test_joint_diffusion.py has a model where the reference sign helps."""
    model.config.sampling_step = "descend-ce"
    try:
        result = sa.decisions_over_steps(model, alphas=[0, STRONG_ALPHA], n_per_class=32, seed=0)
    finally:
        model.config.sampling_step = "ascend-ce"
    plain, guided = (float(run["final_p_target"].mean()) for run in result["runs"])
    assert guided > plain + 0.03, (plain, guided)


def test_alpha_sweep_rows_and_plot(model, tmp_path):
    from genrep.experiments.joint.evaluation import balanced_labels, generate, generation_metrics
    from genrep.metrics.features import LeNet

    torch.manual_seed(0)
    extractor = LeNet().eval()  # random weights: enough to check the plumbing
    real, _ = halves(20, seed=2)
    f_real = extractor.features(real, progress=False)
    rows = sa.alpha_sweep(model, f_real, extractor, alphas=[0, STRONG_ALPHA], n=20, seed=0)
    assert [r["alpha"] for r in rows] == [0.0, STRONG_ALPHA]
    for row in rows:
        assert set(row) == {"alpha", "precision", "recall", "fid"}
        assert 0 <= row["precision"] <= 100 and 0 <= row["recall"] <= 100 and row["fid"] >= 0
    assert rows[0]["fid"] != rows[1]["fid"]  # α reaches the sampler
    plain = generate(model, 20, 0, labels=balanced_labels(20, 2), alpha=0.0)
    expected = generation_metrics(f_real, extractor.features(plain, progress=False), 0)
    assert rows[0] == {"alpha": 0.0, **expected}
    assert Image.open(sa.plot_alpha_sweep(rows, tmp_path / "sweep.png")).size[0] > 100
    for bad in ([], [-1.0], [float("nan")], [True]):
        with pytest.raises(InputError, match="alphas must be numbers >= 0"):
            sa.alpha_sweep(model, f_real, extractor, alphas=bad, n=20, seed=0)


def test_match_extractor_resizes_to_the_trained_size():
    from genrep.metrics.features import LeNet

    images = torch.rand(3, 1, 16, 16)
    assert sa.match_extractor(images, LeNet()) is images
    resized = sa.match_extractor(images, LeNet(input_size=(28, 28)))
    assert resized.shape == (3, 1, 28, 28) and 0 <= float(resized.min()) <= float(resized.max()) <= 1


# ------------------------------------------------------------------------------------- command line

@pytest.fixture(scope="module")
def joint_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "joint"
    assert main(["train", "joint-ddgm", "--dataset", "digits", "--steps", "40", "--batch-size", "32", "--out",
                 str(out), "--no-progress", *TINY]) == 0
    return out


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("genrep: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_cli_counterfactual(joint_run, tmp_path, capsys):
    out = tmp_path / "cf"
    assert main(["joint", "counterfactual", str(joint_run), "--out", str(out), "--n", "4", "--seed", "1"]) == 0
    assert "flipped to the target" in capsys.readouterr().out
    numbers = json.loads((out / "counterfactuals.json").read_text())
    assert numbers["n"] == 4 and len(numbers["images"]) == 4 and numbers["timestep"] == 9
    assert len({row["label"] for row in numbers["images"]}) == 4  # class-balanced picks
    for row in numbers["images"]:
        assert row["target"] == (row["label"] + 1) % 10
        assert set(row) >= {"label", "target", "predicted_before", "predicted_after", "p_target_before",
                            "p_target_after", "flipped"}
    assert 0 <= numbers["flipped_share"] <= 1
    assert Image.open(out / "counterfactuals.png").size[0] > 100
    assert main(["joint", "counterfactual", str(joint_run), "--out", str(out), "--n", "2", "--targets", "3",
                 "--alpha", "0", "--fraction", "0.5"]) == 0
    numbers = json.loads((out / "counterfactuals.json").read_text())
    assert [row["target"] for row in numbers["images"]] == [3, 3] and numbers["alpha"] == 0


def test_cli_sample(joint_run, tmp_path, capsys):
    out = tmp_path / "sample"
    assert main(["joint", "sample", str(joint_run), "--out", str(out), "--alphas", "0,100", "--n", "20",
                 "--n-per-class", "2", "--no-progress"]) == 0
    assert "precision" in capsys.readouterr().out
    sweep = json.loads((out / "alpha_sweep.json").read_text())
    assert [row["alpha"] for row in sweep["rows"]] == [0, 100] and sweep["n"] == 20
    decisions = json.loads((out / "decisions.json").read_text())
    assert decisions["num_classes"] == 10 and len(decisions["runs"]) == 2
    assert np.asarray(decisions["runs"][0]["p_target"]).shape == (10, 10)
    for name in ("alpha_sweep.png", "decisions.png"):
        assert Image.open(out / name).size[0] > 100


def test_cli_errors(joint_run, tmp_path_factory, capsys):
    out = str(tmp_path_factory.mktemp("errors"))
    code = main(["joint", "sample", str(joint_run), "--out", out, "--alphas", "0,-5"])
    assert_one_line_error(code, capsys.readouterr().err, "--alphas must be numbers >= 0")
    code = main(["joint", "sample", str(joint_run), "--out", out, "--alphas", "a,b"])
    assert_one_line_error(code, capsys.readouterr().err, "--alphas must be numbers >= 0")
    for fraction in ("0", "1.5", "-0.2"):
        code = main(["joint", "counterfactual", str(joint_run), "--out", out, "--fraction", fraction])
        assert_one_line_error(code, capsys.readouterr().err, "--fraction", "(0, 1]")
    code = main(["joint", "counterfactual", str(joint_run), "--out", out, "--targets", "10"])
    assert_one_line_error(code, capsys.readouterr().err, "class ids must lie in [0, 9]")
    code = main(["joint", "counterfactual", str(joint_run), "--out", out, "--targets", "cat"])
    assert_one_line_error(code, capsys.readouterr().err, "--targets must be 'other' or a class id")
    code = main(["joint", "counterfactual", str(joint_run), "--out", out, "--alpha", "-1"])
    assert_one_line_error(code, capsys.readouterr().err, "--alpha")
    ddgm = tmp_path_factory.mktemp("runs") / "ddgm"
    assert main(["train", "ddgm", "--dataset", "digits", "--steps", "2", "--batch-size", "8", "--out", str(ddgm),
                 "--no-progress", *TINY]) == 0
    capsys.readouterr()
    for command in ("counterfactual", "sample"):
        code = main(["joint", command, str(ddgm), "--out", out])
        assert_one_line_error(code, capsys.readouterr().err, "'ddgm'", "joint diffusion model", "joint-ddgm run")
