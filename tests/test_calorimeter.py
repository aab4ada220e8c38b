"""Calorimeter data: channel sums, the synthetic ZDC simulator's determinism and physical trends,
the real-file loader and its errors, and the registered source."""

import numpy as np
import pytest
import torch

from genrep.data import get_source, load_dataset
from genrep.data import calorimeter as zdc
from genrep.errors import ConfigError, DataError, InputError

NEUTRON, PROTON, PHOTON = zdc.PARTICLES[0], zdc.PARTICLES[1], zdc.PARTICLES[2]


def beam(n, kind, energy, *, tx=0.0, ty=0.0, vx=0.0, vy=0.0):
    """n identical particles of `kind` (a PARTICLES row) with direction (tx, ty, 1) and vertex (vx, vy, 0)."""
    _, mass, charge, _ = kind
    p = (energy**2 - mass**2) ** 0.5 / (1 + tx**2 + ty**2) ** 0.5
    row = [energy, vx, vy, 0.0, p * tx, p * ty, p, mass, charge]
    return torch.tensor([row] * n, dtype=torch.float32)


def centroid_mm(responses):
    """Mean intensity-weighted (x, y) in mm over a batch (N, 44, 44)."""
    centres = (torch.arange(zdc.GRID) - zdc.GRID / 2 + 0.5) * zdc.PITCH_MM
    w = responses.sum(0)
    return float((w.sum(0) * centres).sum() / w.sum()), float((w.sum(1) * centres).sum() / w.sum())


def radial_rms_mm(responses):
    """Per-shower rms distance from its own centroid (second moment), averaged: mm."""
    c = (torch.arange(zdc.GRID) - zdc.GRID / 2 + 0.5) * zdc.PITCH_MM
    w = responses / responses.sum((1, 2), keepdim=True)
    mx, my = (w.sum(1) * c).sum(1), (w.sum(2) * c).sum(1)
    var = (w.sum(1) * (c - mx[:, None]) ** 2).sum(1) + (w.sum(2) * (c - my[:, None]) ** 2).sum(1)
    return float(var.sqrt().mean())


# ---- channels -------------------------------------------------------------------------------

def test_channel_sums_hand_made():
    i, j = np.meshgrid(np.arange(44), np.arange(44), indexing="ij")
    quadrant = (i >= 22) * 2 + (j >= 22)  # 0..3 → ch1..ch4
    image = np.where((i + j) % 2 == 0, quadrant + 1.0, 100.0)
    sums = zdc.channel_sums(image[None])
    assert isinstance(sums, np.ndarray) and sums.shape == (1, 5)
    np.testing.assert_allclose(sums[0], [242 * 1, 242 * 2, 242 * 3, 242 * 4, 968 * 100])
    single = torch.zeros(5, 1, 44, 44, dtype=torch.int64)
    for k, (r, c) in enumerate([(0, 0), (0, 22), (23, 1), (43, 43), (0, 1)]):
        single[k, 0, r, c] = 7
    assert torch.equal(zdc.channel_sums(single), 7 * torch.eye(5, dtype=torch.float64))


def test_channel_sums_rejects_wrong_shape():
    with pytest.raises(InputError, match=r"\(N, 44, 44\)"):
        zdc.channel_sums(torch.zeros(3, 44, 43))


# ---- simulator: determinism -----------------------------------------------------------------

def test_same_seed_same_output_other_seed_differs():
    p = zdc.sample_particles(300, seed=5)
    assert torch.equal(p, zdc.sample_particles(300, seed=5))
    assert not torch.equal(p, zdc.sample_particles(300, seed=6))
    r = zdc.simulate_showers(p, seed=1)
    assert r.shape == (300, 44, 44) and r.dtype == torch.float32
    assert torch.equal(r, zdc.simulate_showers(p, seed=1))
    assert not torch.equal(r, zdc.simulate_showers(p, seed=2))
    assert torch.equal(r, r.round()) and r.min() >= 0


def test_chunking_and_thread_invariance():
    p = zdc.sample_particles(2 * zdc.CHUNK + 300, seed=0)
    assert torch.equal(zdc.sample_particles(1500, seed=0), p[:1500])
    full = zdc.simulate_showers(p, seed=3)
    assert torch.equal(zdc.simulate_showers(p[:1500], seed=3), full[:1500])
    other_first_block = torch.cat([zdc.sample_particles(zdc.CHUNK, seed=9), p[zdc.CHUNK :]])
    assert torch.equal(zdc.simulate_showers(other_first_block, seed=3)[zdc.CHUNK :], full[zdc.CHUNK :])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(zdc.simulate_showers(p[:1200], seed=3), full[:1200])
    finally:
        torch.set_num_threads(threads)


def test_simulator_rejects_bad_particles():
    with pytest.raises(InputError, match=r"\(N, 9\)"):
        zdc.simulate_showers(torch.zeros(4, 8), seed=0)
    with pytest.raises(InputError, match="NaN"):
        zdc.simulate_showers(torch.full((4, 9), float("nan")), seed=0)


# ---- simulator: physics trends --------------------------------------------------------------

def test_mean_total_rises_with_energy():
    for kind in (NEUTRON, PHOTON):
        totals = [float(zdc.simulate_showers(beam(200, kind, e), seed=0).sum((1, 2)).mean())
                  for e in (5, 20, 80, 320, 1280)]
        assert all(b > 1.5 * a for a, b in zip(totals, totals[1:])), totals


def test_centroid_follows_momentum_and_vertex():
    tilt = 10.0 / zdc.Z_FACE_MM  # 10 mm at the face
    cases = [(dict(), (0, 0)), (dict(tx=tilt), (10, 0)), (dict(ty=-tilt), (0, -10)),
             (dict(vx=8.0), (8, 0)), (dict(tx=tilt, vy=-6.0), (10, -6))]
    for kwargs, expected in cases:
        x, y = centroid_mm(zdc.simulate_showers(beam(200, PHOTON, 500.0, **kwargs), seed=0))
        assert abs(x - expected[0]) < 0.5 and abs(y - expected[1]) < 0.5, (kwargs, x, y)


def test_em_showers_narrower_than_hadronic():
    em = radial_rms_mm(zdc.simulate_showers(beam(300, PHOTON, 500.0), seed=0))
    had = radial_rms_mm(zdc.simulate_showers(beam(300, NEUTRON, 500.0), seed=0))
    assert em < 8 < 12 < had, (em, had)


def test_hadronic_fluctuations_larger():
    def relative_spread(kind):
        totals = zdc.simulate_showers(beam(500, kind, 500.0), seed=0).sum((1, 2))
        return float(totals.std() / totals.mean())

    assert relative_spread(NEUTRON) > 2 * relative_spread(PHOTON)


def test_edge_leakage_reduces_total():
    tilt = 32.0 / zdc.Z_FACE_MM  # 32 mm: 3 mm inside the 35.2 mm half-width
    centre = zdc.simulate_showers(beam(300, NEUTRON, 500.0), seed=0).sum((1, 2)).mean()
    edge = zdc.simulate_showers(beam(300, NEUTRON, 500.0, tx=tilt), seed=0).sum((1, 2)).mean()
    outside = zdc.simulate_showers(beam(50, PHOTON, 500.0, tx=3 * tilt), seed=0)
    assert edge < 0.8 * centre
    assert outside.sum() == 0


def test_charged_particles_add_light():
    neutral = zdc.simulate_showers(beam(2000, NEUTRON, 5.0), seed=0).sum((1, 2)).mean()
    charged = zdc.simulate_showers(beam(2000, PROTON, 5.0), seed=0).sum((1, 2)).mean()
    assert 2 < charged - neutral < 7  # MIP_PE = 5 at a mean efficiency of 0.85


def test_checkerboard_ratio():
    r = zdc.simulate_showers(zdc.sample_particles(2000, seed=1), seed=1)
    ch = zdc.channel_sums(r).sum(0)
    assert abs(float(ch[4] / ch[:4].sum()) - zdc.EFF_ODD / zdc.EFF_EVEN) < 0.01


def test_sampled_particles_are_plausible():
    p = zdc.sample_particles(5000, seed=0)
    energy, pz = p[:, 0], p[:, 6]
    assert energy.min() >= zdc.E_MIN * 0.999 and energy.median() < 20 and energy.max() > 2000
    assert (pz > 0).all() and (p[:, 4:6].abs() < 1e-3 * pz[:, None]).all()
    low = p[energy < 50].double()  # float32 cannot resolve the mass of a TeV particle
    mass_shell = low[:, 0] ** 2 - low[:, 4:7].pow(2).sum(1)
    torch.testing.assert_close(mass_shell.clamp_min(0).sqrt(), low[:, 7], atol=2e-2, rtol=0)
    kinds = zdc.particle_types(p)
    assert (kinds < len(zdc.PARTICLES)).all() and len(kinds.unique()) == len(zdc.PARTICLES)
    impact = p[:, 1:3] + p[:, 4:6] / pz[:, None] * (zdc.Z_FACE_MM - p[:, 3:4])
    on_face = (impact.abs() < zdc.GRID * zdc.PITCH_MM / 2).all(1).float().mean()
    assert 0.95 < on_face < 1.0


# ---- preprocessing and real files -----------------------------------------------------------

def test_counts_round_trip():
    counts = torch.tensor([0.0, 1.0, 10.0, 1000.0, zdc.COUNT_MAX])
    images = zdc.from_counts(counts)
    assert images[0] == 0 and abs(float(images[-1]) - 1) < 1e-6
    torch.testing.assert_close(zdc.to_counts(images), counts, rtol=1e-4, atol=1e-3)
    signed = zdc.from_counts(counts, (-1.0, 1.0))
    torch.testing.assert_close(zdc.to_counts(signed, (-1.0, 1.0)), counts, rtol=1e-4, atol=1e-3)
    assert zdc.to_counts(torch.tensor([-1.5]), (-1.0, 1.0)) == 0
    with pytest.raises(InputError):
        zdc.from_counts(torch.tensor([-1.0]))


def fake_real(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return rng.poisson(3.0, (n, 44, 44)).astype(np.int32), rng.normal(size=(n, 9)).astype(np.float64)


def test_real_file_round_trip(tmp_path):
    responses, particles = fake_real()
    path = tmp_path / "zdc.npz"
    np.savez(path, responses=responses, particles=particles)
    train = load_dataset("calorimeter", "train", path=str(path))
    test = load_dataset("calorimeter", "test", path=str(path))
    assert (len(train), len(test)) == (40, 10) and train.image_shape == (1, 44, 44)
    assert train.condition_names == list(zdc.PARTICLE_COLUMNS)
    both = torch.cat([train.conditions, test.conditions])
    order = torch.as_tensor(particles, dtype=torch.float32)
    assert sorted(map(tuple, both.tolist())) == sorted(map(tuple, order.tolist()))
    rows = [int((order == c).all(1).nonzero()) for c in train.conditions]
    expected = torch.as_tensor(responses[rows], dtype=torch.float32)
    torch.testing.assert_close(zdc.to_counts(train.images[:, 0]), expected, rtol=1e-4, atol=1e-3)
    again = load_dataset("calorimeter", "train", path=str(path), split_seed=1)
    assert not torch.equal(again.conditions, train.conditions)


def test_real_file_explicit_splits_and_pairs(tmp_path):
    (r1, p1), (r2, p2) = fake_real(30, 1), fake_real(7, 2)
    split_file = tmp_path / "splits.npz"
    np.savez(split_file, responses_train=r1, particles_train=p1,
             responses_test=r2[:, None], particles_test=p2)
    assert len(load_dataset("calorimeter", "test", path=str(split_file))) == 7
    np.save(tmp_path / "resp.npy", r1)
    np.savez(tmp_path / "part.npz", particles=p1)
    data = zdc.read_zdc((tmp_path / "resp.npy", tmp_path / "part.npz"))
    assert len(data["train"][0]) + len(data["test"][0]) == 30


BAD_FILES = {
    "missing key": (dict(responses=fake_real()[0], particle=fake_real()[1]), "'particles'"),
    "responses shape": (dict(responses=np.zeros((50, 40, 44)), particles=fake_real()[1]),
                        r"'responses'.*\(N, 44, 44\)"),
    "particles shape": (dict(responses=fake_real()[0], particles=np.zeros((50, 8))),
                        r"'particles'.*\(N, 9\)"),
    "row mismatch": (dict(responses=fake_real()[0], particles=np.zeros((49, 9))), "49"),
    "NaN": (dict(responses=fake_real()[0], particles=np.full((50, 9), np.nan)), "'particles'.*NaN"),
    "negative counts": (dict(responses=-fake_real()[0] - 1, particles=fake_real()[1]),
                        "'responses'.*counts"),
    "dtype": (dict(responses=fake_real()[0].astype(complex), particles=fake_real()[1]),
              "'responses'.*dtype"),
    "split key": (dict(responses_train=fake_real()[0], particles_train=fake_real()[1]), "'responses_test'"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_real_files_raise_data_error(tmp_path, case):
    arrays, message = BAD_FILES[case]
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset("calorimeter", "train", path=str(path))


def test_unreadable_or_missing_file(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    for path in (tmp_path / "junk.npz", tmp_path / "absent.npz"):
        with pytest.raises(DataError, match="ZDC file"):
            zdc.read_zdc(path)


# ---- registered source ----------------------------------------------------------------------

def test_synthetic_source():
    train = load_dataset("calorimeter", "train", n=120, seed=4)
    test = load_dataset("calorimeter", "test", n=120, seed=4)
    assert len(train) == 120 and train.images.min() >= 0 and train.images.max() <= 1
    assert train.class_names == zdc.CLASS_NAMES and train.conditions.shape == (120, 9)
    assert not torch.isin(train.conditions[:, 0], test.conditions[:, 0]).any()
    assert torch.equal(train.images, load_dataset("calorimeter", "train", n=120, seed=4).images)
    assert "synthetic" in get_source("calorimeter").status()
    with pytest.raises(ConfigError):
        load_dataset("calorimeter", "train", path="x.npz", n=10)
