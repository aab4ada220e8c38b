"""`genrep simulate`: calorimeter responses from a tiny conditional model, particle files and their
errors, the comparison picture, and the synthetic particles export."""

import csv

import numpy as np
import pytest
from PIL import Image

from genrep.cli.main import main
from genrep.data import calorimeter as zdc
from genrep.data import load_dataset
from genrep.data.sources import calorimeter as calorimeter_source
from genrep.errors import InputError
from genrep.experiments import simulate as sim
from genrep.metrics.calorimeter import calorimeter_channels

TINY = ["--no-progress", "--set", "train.batch_size=32", "--set", "train.log_every=25",
        "--set", "train.checkpoint_every=1000", "--set", "data.validation_fraction=0"]


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("genrep: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny cVAE on 300 synthetic showers (50 steps) and a tiny digits VAE (5 steps)."""
    root = tmp_path_factory.mktemp("sim")
    with pytest.MonkeyPatch.context() as mp:  # small synthetic splits for speed
        mp.setitem(calorimeter_source.DEFAULT_N, "train", 300)
        mp.setitem(calorimeter_source.DEFAULT_N, "test", 64)
        assert main(["train", "cvae", "--dataset", "calorimeter", "--steps", "50", "--out", str(root / "calo"),
                     "--set", "model.hidden=[64]", "--set", "model.latent_dim=4", *TINY]) == 0
    assert main(["train", "vae", "--dataset", "digits", "--steps", "5", "--out", str(root / "digits"),
                 "--set", "model.hidden=[16]", *TINY]) == 0
    particles = sim.export_particles(root / "particles.npz", 12, seed=0)
    return {"calo": root / "calo", "digits": root / "digits", "particles": particles}


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_outputs_shapes_channels_and_repetition(runs):
    particles = np.load(runs["particles"])["particles"]
    out = sim.simulate(runs["calo"], particles, n_per_particle=3, seed=1)
    r = out["responses"]
    assert r.shape == (36, 44, 44) and r.dtype == np.float32 and r.min() >= 0 and np.isfinite(r).all()
    assert out["particles"].shape == (36, 9) and out["particles"].dtype == np.float32
    np.testing.assert_array_equal(out["particle_index"], np.repeat(np.arange(12), 3))
    np.testing.assert_array_equal(out["particles"], np.repeat(particles, 3, axis=0))
    assert out["channels"].shape == (36, 5)
    np.testing.assert_allclose(out["channels"], calorimeter_channels(r.astype(np.float64)), rtol=1e-6)
    assert list(out["columns"]) == list(zdc.PARTICLE_COLUMNS)
    assert not np.array_equal(r[0], r[1]), "k responses of one particle are independent draws"


def test_same_seed_same_responses(runs):
    particles = np.load(runs["particles"])["particles"]
    a = sim.simulate(runs["calo"], particles, n_per_particle=2, seed=3, batch_size=5)["responses"]
    b = sim.simulate(runs["calo"], particles, n_per_particle=2, seed=3, batch_size=5)["responses"]
    c = sim.simulate(runs["calo"], particles, n_per_particle=2, seed=4, batch_size=5)["responses"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_cli_with_compare_matches_api(runs, tmp_path, capsys):
    out = tmp_path / "resp.npz"
    code = main(["simulate", str(runs["calo"]), "--particles", str(runs["particles"]), "-o", str(out),
                 "--n-per-particle", "2", "--seed", "7", "--batch-size", "10", "--compare", "--no-progress"])
    stdout = capsys.readouterr().out
    assert code == 0 and "channel MAE" in stdout
    with np.load(out) as data:
        assert {"responses", "particles", "particle_index", "channels"} <= set(data.files)
        expected = sim.simulate(runs["calo"], runs["particles"], n_per_particle=2, seed=7, batch_size=10)
        np.testing.assert_array_equal(data["responses"], expected["responses"])
    picture = tmp_path / "resp_compare.png"
    assert picture.is_file() and Image.open(picture).size[0] > 600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resp.npz", "resp_compare.png"], "no temporary files left"


def test_csv_in_any_column_order_equals_npz(runs, tmp_path):
    particles = np.load(runs["particles"])["particles"]
    order = [6, 0, 8, 3, 1, 7, 2, 5, 4]
    header = ["event"] + [zdc.PARTICLE_COLUMNS[k].upper() for k in order]  # case-insensitive; extra ignored
    rows = [[f"ev{n}"] + [repr(float(p[k])) for k in order] for n, p in enumerate(particles)]
    path = write_csv(tmp_path / "p.csv", header, rows)
    from_csv, real = sim.read_particles(path)
    assert real is None
    np.testing.assert_array_equal(from_csv.astype(np.float32), particles)
    for name, source in (("csv", path), ("npz", runs["particles"])):
        assert main(["simulate", str(runs["calo"]), "--particles", str(source), "-o", str(tmp_path / f"{name}.npz"),
                     "--no-progress"]) == 0
    with np.load(tmp_path / "csv.npz") as a, np.load(tmp_path / "npz.npz") as b:
        np.testing.assert_array_equal(a["responses"], b["responses"])


@pytest.mark.parametrize("case, fragments", [
    ("missing", ["missing column", "Pz"]),
    ("nan", ["NaN", "particle 1"]),
    ("text", ["line 3", "column Vx", "'abc' is not a number"]),
    ("energy", ["Energy must be > 0", "particle 0"]),
    ("pz", ["Pz must be > 0"]),
])
def test_bad_particle_csv_gives_one_line_error(runs, tmp_path, capsys, case, fragments):
    particles = np.load(runs["particles"])["particles"][:3].astype(object)
    header = list(zdc.PARTICLE_COLUMNS)
    if case == "missing":
        header, particles = header[:6] + header[7:], np.delete(particles, 6, axis=1)
    elif case == "nan":
        particles[1, 0] = "nan"
    elif case == "text":
        particles[1, 1] = "abc"
    elif case == "energy":
        particles[0, 0] = -1.0
    elif case == "pz":
        particles[2, 6] = 0.0
    path = write_csv(tmp_path / "bad.csv", header, particles.tolist())
    code = main(["simulate", str(runs["calo"]), "--particles", str(path), "-o", str(tmp_path / "o.npz")])
    assert_one_line_error(code, capsys.readouterr().err, *fragments)
    assert not (tmp_path / "o.npz").exists()


def test_non_calorimeter_run_and_other_misuse_give_one_line_errors(runs, tmp_path, capsys):
    argv = ["simulate", str(runs["digits"]), "--particles", str(runs["particles"]), "-o", str(tmp_path / "o.npz")]
    assert_one_line_error(main(argv), capsys.readouterr().err, "not a calorimeter simulator", "digits")
    csv_path = write_csv(tmp_path / "p.csv", zdc.PARTICLE_COLUMNS, np.load(runs["particles"])["particles"].tolist())
    argv = ["simulate", str(runs["calo"]), "--particles", str(csv_path), "--compare", "-o", str(tmp_path / "o.npz")]
    assert_one_line_error(main(argv), capsys.readouterr().err, "--compare needs real responses")
    assert_one_line_error(main(["simulate", str(runs["calo"])]), capsys.readouterr().err, "--particles")
    np.savez(tmp_path / "wrong.npz", particles=np.ones((3, 8)))
    argv = ["simulate", str(runs["calo"]), "--particles", str(tmp_path / "wrong.npz")]
    assert_one_line_error(main(argv), capsys.readouterr().err, "(N, 9)")
    with pytest.raises(InputError, match="n_per_particle"):
        sim.simulate(runs["calo"], np.load(runs["particles"])["particles"], n_per_particle=0)


def test_exported_particles_are_the_synthetic_test_split(runs, tmp_path, capsys):
    assert main(["simulate", "--export-particles", "12", "-o", str(tmp_path / "p.npz")]) == 0
    with np.load(tmp_path / "p.npz") as exported, np.load(runs["particles"]) as fixture:
        np.testing.assert_array_equal(exported["responses"], fixture["responses"])
        test = load_dataset("calorimeter", "test", n=12)
        np.testing.assert_array_equal(exported["particles"], test.conditions.numpy())
        np.testing.assert_allclose(zdc.from_counts(exported["responses"]).numpy(), test.images[:, 0].numpy())


def test_compare_picture_unpaired_sets(runs, tmp_path):
    with np.load(runs["particles"]) as data:
        real = data["responses"]
    fake = sim.simulate(runs["calo"], runs["particles"], seed=0)["responses"][:7]
    metrics = sim.compare_metrics(real, fake)
    assert "channel_mae" not in metrics and metrics["channel_wasserstein_pooled_log"] >= 0
    assert sim.compare_metrics(real, real)["channel_mae"] == 0
    path = sim.compare_picture(real, fake, tmp_path / "c.png", n_show=2)
    assert path.is_file()
