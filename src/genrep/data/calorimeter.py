"""ALICE Zero Degree Calorimeter (ZDC) responses: channels, a synthetic shower simulator,
a loader for the real (non-public) files, and the log(1+x) preprocessing.

A response is a 44×44 grid of photo-electron counts, one per quartz fibre; row i ↔ y, column
j ↔ x, the face centred on the beam axis. A particle is a row of 9 float attributes
`PARTICLE_COLUMNS` = Energy, Vx, Vy, Vz, Px, Py, Pz, mass, charge.

**The simulator is a stand-in.** The real ZDC data (117,817 GEANT responses) is not public, so
`simulate_showers` reproduces only the *conditional structure* that matters for the models
(energy → intensity, momentum/vertex → position, particle type → shape, charge → a track spot,
checkerboard fibre readout, edge leakage), not ALICE physics: no longitudinal development, no
magnetic optics, no fibre attenuation, no detector calibration. Its units are GeV, GeV/c,
GeV/c², mm and elementary charges; the real files are loaded as they are.

Geometry
    GRID = 44 fibres per side, PITCH_MM = 1.6 mm (face 70.4 mm across), Z_FACE_MM = 112,500 mm
    (112.5 m from the interaction point). Pixel (i, j) covers
    x ∈ [(j−22)·PITCH, (j−21)·PITCH), y ∈ [(i−22)·PITCH, (i−21)·PITCH).

Simulator (per particle; all rows independent given their random draws)
    impact      x0 = Vx + Px/Pz·(Z_FACE − Vz), y0 likewise; Pz ≤ 0 never reaches the face (no
                light).
    type        electromagnetic (EM) if mass < EM_MASS_CUT = 0.01 GeV (γ, e±), else hadronic.
    light       mean photo-electrons μ = YIELD·(E − mass)·G with YIELD_EM = 10 p.e./GeV and
                YIELD_HAD = 5 p.e./GeV (a non-compensating Cherenkov calorimeter: hadrons give
                less light); G ~ Gamma(k, 1/k), mean 1, relative spread s = √(a²/E + b²) with
                (a, b) = RESOLUTION_EM (0.10, 0.01) and RESOLUTION_HAD (0.50, 0.10).
    shape       a sum of 2-D Gaussians integrated exactly over every pixel (error functions), so
                light falling off the grid is lost (edge leakage):
                EM: core σ = 3.5 mm (weight 0.85) + tail σ = 10 mm (0.15): ~90% inside 1 cm,
                    the Molière-radius scale.
                hadronic: core σ = 6 mm with weight f = clip(0.55 + 0.12·z, 0.2, 0.9), displaced
                    from the impact by N(0, 1.5 mm) per axis (the first interaction), plus a halo
                    σ = 20 mm·exp(0.2·z') centred on the impact; z, z' ~ N(0, 1) per shower.
    charge      charged particles add MIP_PE = 5 mean p.e. in a σ = 1 mm spot at the impact (the
                primary's own Cherenkov light before it showers).
    readout     tower fibres ((i+j) even → ch1..ch4) collect with efficiency 1.0, common-PMT
                fibres ((i+j) odd → ch5) with EFF_ODD = 0.7, so the checkerboard is visible and
                ch5 ≈ 0.7·(ch1+ch2+ch3+ch4) on average; counts ~ Poisson(efficiency·light) per
                fibre.

Particle sampler (`sample_particles`)
    types       PARTICLES (name, mass GeV/c², charge, share): n 0.35, p 0.15, γ 0.25, e− 0.05,
                e+ 0.05, π+ 0.075, π− 0.075.
    energy      total energy from a truncated power law dN/dE ∝ E^−(1+0.6) on [2, 3000] GeV
                (median ≈ 6 GeV, 90% below ≈ 80 GeV); 30% of the neutrons are beam spectators at
                2,510 GeV (Pb beam energy per nucleon) with a 3% spread.
    direction   angles θx, θy ~ N(0, 1.2e-4 rad): impacts spread σ ≈ 13.5 mm over the ±35 mm face,
                about 2% of particles land off it; P = √(E²−m²)·(θx, θy, 1)/√(1+θx²+θy²).
    vertex      Vx, Vy ~ N(0, 1 mm), Vz ~ N(0, 10 mm).

Determinism: rows are processed in blocks of CHUNK = 1000 (the last block padded); block b
draws from `torch.Generator`s seeded from (seed, purpose, b) through numpy's `SeedSequence`
(separate streams for particles, per-shower draws and per-fibre Poisson counts).
The same seed gives identical output for any torch thread count, and a row's output does not
depend on the rows after it (prefix-stable; whole blocks are independent of each other).

Preprocessing (the thesis: log(1+x))
    images = log1p(counts) / log1p(COUNT_MAX) with COUNT_MAX = 65,535 photo-electrons per fibre,
    so images are in [0, 1] and the data set's `value_range` is (0, 1) like every other source;
    `load_dataset(..., value_range=...)` then rescales linearly in log space. `from_counts` and
    `to_counts` convert both ways for any value range. Labels are particle-type indices
    (`particle_types`, from mass and charge; "other" when no known type matches).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch

from genrep.data.dataset import ImageDataset
from genrep.data.transforms import rescale
from genrep.errors import DataError, InputError
from genrep.utils.safe_load import load_arrays

GRID = 44
PITCH_MM = 1.6
Z_FACE_MM = 112_500.0
PARTICLE_COLUMNS = ("Energy", "Vx", "Vy", "Vz", "Px", "Py", "Pz", "mass", "charge")
CHANNEL_NAMES = ("ch1", "ch2", "ch3", "ch4", "ch5")

COUNT_MAX = 65_535.0
LOG_MAX = math.log1p(COUNT_MAX)

EM_MASS_CUT = 0.01
YIELD_EM, YIELD_HAD = 10.0, 5.0
RESOLUTION_EM, RESOLUTION_HAD = (0.10, 0.01), (0.50, 0.10)
EM_SIGMAS_MM, EM_CORE_WEIGHT = (3.5, 10.0), 0.85
HAD_CORE_SIGMA_MM, HAD_CORE_WEIGHT, HAD_CORE_WEIGHT_SPREAD = 6.0, 0.55, 0.12
HAD_CORE_OFFSET_MM, HAD_HALO_SIGMA_MM, HAD_HALO_LOG_SPREAD = 1.5, 20.0, 0.2
MIP_PE, MIP_SIGMA_MM = 5.0, 1.0
EFF_EVEN, EFF_ODD = 1.0, 0.7

# name, mass [GeV/c²], charge [e], share of sampled particles
PARTICLES = (
    ("neutron", 0.939565, 0, 0.35),
    ("proton", 0.938272, 1, 0.15),
    ("photon", 0.0, 0, 0.25),
    ("electron", 0.000511, -1, 0.05),
    ("positron", 0.000511, 1, 0.05),
    ("pi+", 0.139570, 1, 0.075),
    ("pi-", 0.139570, -1, 0.075),
)
CLASS_NAMES = [name for name, *_ in PARTICLES] + ["other"]
E_MIN, E_MAX, E_POWER = 2.0, 3000.0, 0.6
SPECTATOR_SHARE, SPECTATOR_E, SPECTATOR_SPREAD = 0.3, 2510.0, 0.03
THETA_SIGMA, VERTEX_XY_MM, VERTEX_Z_MM = 1.2e-4, 1.0, 10.0

CHUNK = 1000
_PURPOSE_PARTICLES, _PURPOSE_SHOWERS, _PURPOSE_PHOTONS = 1, 2, 3
_EDGES_MM = (torch.arange(GRID + 1, dtype=torch.float64) - GRID / 2) * PITCH_MM


def _parity() -> torch.Tensor:
    i = torch.arange(GRID)
    return (i[:, None] + i[None, :]) % 2


def _channel_masks() -> torch.Tensor:
    """(5, 44, 44) 0/1 masks of ch1..ch5."""
    even = _parity() == 0
    half = torch.arange(GRID) < GRID // 2
    quads = [(half[:, None] & half[None, :]), (half[:, None] & ~half[None, :]),
             (~half[:, None] & half[None, :]), (~half[:, None] & ~half[None, :])]
    return torch.stack([q & even for q in quads] + [~even]).double()


_MASKS = _channel_masks()
_EFFICIENCY = torch.where(_parity() == 0, EFF_EVEN, EFF_ODD).float()


def channel_sums(responses):
    """The five ZDC channels of responses (N, 44, 44) or (N, 1, 44, 44), torch or numpy.

    Returns (N, 5) (ch1..ch5), numpy if the input is numpy, in the input's float dtype
    (float64 for integer input): ch5 sums the (i+j)-odd fibres, ch1..ch4 the (i+j)-even fibres of
    the quadrants rows×columns [0,22)×[0,22), [0,22)×[22,44), [22,44)×[0,22), [22,44)×[22,44).
    """
    x = torch.as_tensor(responses)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or tuple(x.shape[1:]) != (GRID, GRID):
        raise InputError(f"responses must have shape (N, 44, 44) or (N, 1, 44, 44), got {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.double()
    sums = x.reshape(len(x), GRID * GRID) @ _MASKS.to(x.dtype).reshape(5, -1).T
    return sums.numpy() if isinstance(responses, np.ndarray) else sums


def _generator(seed: int, purpose: int, block: int) -> torch.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    state = np.random.SeedSequence([int(seed), purpose, block]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> np.uint64(1)))


def _by_blocks(shape: tuple[int, ...], seed: int, purpose: int, make) -> torch.Tensor:
    """A float32 tensor of `shape` filled block by block: rows [b·CHUNK, (b+1)·CHUNK) are the
    first rows of make(generator, b), which returns CHUNK rows."""
    out = torch.empty(shape)
    for b in range(-(-shape[0] // CHUNK)):
        rows = out[b * CHUNK : (b + 1) * CHUNK]
        rows.copy_(make(_generator(seed, purpose, b), b)[: len(rows)])
    return out


def sample_particles(n: int, *, seed: int) -> torch.Tensor:
    """n plausible particles hitting the ZDC: float32 (n, 9) in `PARTICLE_COLUMNS` order.

    Units: Energy GeV (total), V mm, P GeV/c, mass GeV/c², charge e. See the module docstring
    for the distributions. Prefix-stable: sample_particles(m)[:k] == sample_particles(k).
    """
    if n < 0:
        raise InputError(f"number of particles must be >= 0, got {n}")
    table = torch.tensor([[m, q, share] for _, m, q, share in PARTICLES], dtype=torch.float64)

    def block(g: torch.Generator, _: int) -> torch.Tensor:
        kind = torch.multinomial(table[:, 2], CHUNK, replacement=True, generator=g)
        u, spectator_u = torch.rand(2, CHUNK, generator=g, dtype=torch.float64)
        spread, tx, ty, vx, vy, vz = torch.randn(6, CHUNK, generator=g, dtype=torch.float64)
        tail = 1 - (E_MIN / E_MAX) ** E_POWER
        energy = E_MIN * (1 - u * tail) ** (-1 / E_POWER)
        is_neutron = kind == 0  # PARTICLES[0]
        spectator = is_neutron & (spectator_u < SPECTATOR_SHARE)
        energy = torch.where(spectator, SPECTATOR_E * (1 + SPECTATOR_SPREAD * spread), energy)
        mass, charge = table[kind, 0], table[kind, 1]
        p = torch.sqrt(energy**2 - mass**2)
        tx, ty = tx * THETA_SIGMA, ty * THETA_SIGMA
        norm = torch.sqrt(1 + tx**2 + ty**2)
        vertex = torch.stack([vx * VERTEX_XY_MM, vy * VERTEX_XY_MM, vz * VERTEX_Z_MM], 1)
        momentum = p[:, None] * torch.stack([tx, ty, torch.ones_like(tx)], 1) / norm[:, None]
        return torch.cat([energy[:, None], vertex, momentum, mass[:, None], charge[:, None]], 1).float()

    return _by_blocks((n, len(PARTICLE_COLUMNS)), seed, _PURPOSE_PARTICLES, block)


def _pixel_fractions(centre: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Share of a 1-D Gaussian (centre, sigma: (N, K) mm) in each of the 44 pixels: (N, K, 44)."""
    cdf = torch.special.ndtr((_EDGES_MM - centre[..., None]) / sigma[..., None])
    return cdf[..., 1:] - cdf[..., :-1]


def _mean_light(particles: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Expected photo-electrons per fibre before readout efficiency: (N, 44, 44) float32."""
    n = len(particles)
    energy, vx, vy, vz, px, py, pz, mass, charge = particles.double().T
    z_core, z_halo, dx, dy = torch.randn(4, n, generator=g, dtype=torch.float64)
    em = mass < EM_MASS_CUT
    hits = pz > 0
    t = torch.where(hits, (Z_FACE_MM - vz) / torch.where(hits, pz, 1.0), 0.0)
    x0, y0 = vx + px * t, vy + py * t

    e_vis = (energy - mass).clamp_min(0)
    a, b = (torch.where(em, em_v, had_v) for em_v, had_v in zip(RESOLUTION_EM, RESOLUTION_HAD))
    k = 1 / (a**2 / e_vis.clamp_min(1e-3) + b**2)
    gain = torch._standard_gamma(k, generator=g) / k  # the sampler behind torch.distributions.Gamma
    light = torch.where(em, YIELD_EM, YIELD_HAD) * e_vis * gain * hits

    core_w = torch.where(em, EM_CORE_WEIGHT,
                         (HAD_CORE_WEIGHT + HAD_CORE_WEIGHT_SPREAD * z_core).clamp(0.2, 0.9))
    core_sigma = torch.where(em, EM_SIGMAS_MM[0], HAD_CORE_SIGMA_MM)
    halo_sigma = torch.where(em, EM_SIGMAS_MM[1],
                             HAD_HALO_SIGMA_MM * torch.exp(HAD_HALO_LOG_SPREAD * z_halo))
    shift = torch.where(em, 0.0, HAD_CORE_OFFSET_MM)
    mip = MIP_PE * ((charge.round() != 0) & hits)

    cx = torch.stack([x0 + shift * dx, x0, x0], 1)
    cy = torch.stack([y0 + shift * dy, y0, y0], 1)
    sigma = torch.stack([core_sigma, halo_sigma, torch.full_like(x0, MIP_SIGMA_MM)], 1)
    amplitude = torch.stack([light * core_w, light * (1 - core_w), mip], 1)
    rows = (_pixel_fractions(cy, sigma) * amplitude[..., None]).float()
    cols = _pixel_fractions(cx, sigma).float()
    return rows.transpose(1, 2) @ cols


def simulate_showers(particles: torch.Tensor, *, seed: int) -> torch.Tensor:
    """ZDC-like responses of `particles` (N, 9) (`PARTICLE_COLUMNS`, simulator units):
    float32 photo-electron counts (N, 44, 44). Deterministic per seed; see the module docstring.
    """
    p = torch.as_tensor(particles)
    if p.ndim != 2 or p.shape[1] != len(PARTICLE_COLUMNS):
        columns = ", ".join(PARTICLE_COLUMNS)
        raise InputError(f"particles must have shape (N, 9) ({columns}), got {tuple(p.shape)}")
    if not torch.isfinite(p).all():
        raise InputError("particles contain NaN or infinite values")
    def block(g: torch.Generator, b: int) -> torch.Tensor:
        rows = p[b * CHUNK : (b + 1) * CHUNK]
        if len(rows) < CHUNK:
            rows = torch.cat([rows, rows[-1:].expand(CHUNK - len(rows), -1)])
        light = _mean_light(rows, g) * _EFFICIENCY
        return torch.poisson(light, generator=_generator(seed, _PURPOSE_PHOTONS, b))

    return _by_blocks((len(p), GRID, GRID), seed, _PURPOSE_SHOWERS, block)


def particle_types(particles: torch.Tensor) -> torch.Tensor:
    """Index into CLASS_NAMES (int64, (N,)) from mass (within 0.1 MeV + 5%) and charge; the last
    index ("other") where no known particle matches."""
    p = torch.as_tensor(particles).double()
    mass, charge = p[:, 7], p[:, 8].round()
    out = torch.full((len(p),), len(PARTICLES), dtype=torch.int64)
    for index, (_, m, q, _) in reversed(list(enumerate(PARTICLES))):
        match = ((mass - m).abs() <= 1e-4 + 0.05 * m) & (charge == q)
        out[match] = index
    return out


def from_counts(counts, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Photo-electron counts (any shape, >= 0) → images log1p(counts)/log1p(COUNT_MAX) mapped
    linearly to `value_range` (counts above COUNT_MAX land above its top)."""
    x = torch.as_tensor(counts, dtype=torch.float32)
    if (x < 0).any():
        raise InputError("photo-electron counts must be >= 0")
    return rescale(torch.log1p(x) / LOG_MAX, (0.0, 1.0), value_range)


def to_counts(images: torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Inverse of `from_counts`: images in `value_range` → counts (float32, same shape); values
    below the range (e.g. from a generator) give 0."""
    x = rescale(torch.as_tensor(images, dtype=torch.float32), value_range, (0.0, 1.0))
    return torch.expm1(x * LOG_MAX).clamp_min(0)


def make_dataset(responses: torch.Tensor, particles: torch.Tensor, *, split: str,
                 name: str = "calorimeter") -> ImageDataset:
    """ImageDataset of preprocessed responses: images (N, 1, 44, 44) in [0, 1], conditions the 9
    particle attributes (float32), labels the particle types."""
    return ImageDataset(from_counts(responses).unsqueeze(1), particle_types(particles),
                        torch.as_tensor(particles, dtype=torch.float32), name=name, split=split,
                        class_names=CLASS_NAMES, condition_names=list(PARTICLE_COLUMNS))


# ---- real ZDC files -------------------------------------------------------------------------

TEST_FRACTION = 0.2
SHAPES = {"responses": "(N, 44, 44)", "particles": "(N, 9)"}


def _read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Arrays in a .npy (key = file stem) or .npz file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"ZDC file {path!r} does not exist")
    return load_arrays(path, label=f"ZDC file {path!r}")


def _take(arrays: dict[str, np.ndarray], key: str, where: str) -> np.ndarray:
    shape = SHAPES[key.split("_")[0]]
    if key not in arrays:
        found = ", ".join(arrays) or "nothing"
        raise DataError(f"{where}: missing key {key!r} (expected {key} {shape}); found: {found}")
    a = arrays[key]
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise DataError(f"{where}: {key!r} has dtype {a.dtype}; expected real numbers, {key} {shape}")
    return a


def _check_pair(responses: np.ndarray, particles: np.ndarray, where: str,
                suffix: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """Validate one (responses, particles) pair (keys named with `suffix`); float32 tensors."""
    r, p = f"responses{suffix}", f"particles{suffix}"
    if responses.ndim == 4 and responses.shape[1] == 1:
        responses = responses[:, 0]
    if responses.ndim != 3 or responses.shape[1:] != (GRID, GRID):
        raise DataError(f"{where}: {r!r} has shape {responses.shape}; expected (N, 44, 44)")
    if particles.ndim != 2 or particles.shape[1] != len(PARTICLE_COLUMNS):
        columns = ", ".join(PARTICLE_COLUMNS)
        raise DataError(f"{where}: {p!r} has shape {particles.shape}; expected (N, 9) = {columns}")
    if len(responses) != len(particles):
        raise DataError(f"{where}: {r!r} has {len(responses)} rows but {p!r} has {len(particles)}")
    for key, a in ((r, responses), (p, particles)):
        if not np.isfinite(a).all():
            raise DataError(f"{where}: {key!r} contains NaN or infinite values")
    if responses.size and (responses.min() < 0 or responses.max() > COUNT_MAX):
        raise DataError(f"{where}: {r!r} must be photon counts in [0, {COUNT_MAX:g}], "
                        f"got [{responses.min():g}, {responses.max():g}]")
    return torch.from_numpy(responses.astype(np.float32)), torch.from_numpy(particles.astype(np.float32))


def read_zdc(path, *, split_seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Real ZDC data: {"train": (responses, particles), "test": (...)}, float32 (N, 44, 44) and (N, 9).

    path: an .npz with `responses` (N, 44, 44) (or (N, 1, 44, 44)) and `particles` (N, 9) —
        split 80/20 by a permutation seeded with `split_seed` (test = the first 20%, rows keep
        file order) — or with explicit splits `responses_train`, `particles_train`,
        `responses_test`, `particles_test`; or a pair (responses file, particles file), each a
        .npy or an .npz holding that key (or a single array).
    """
    if isinstance(path, Sequence) and not isinstance(path, (str, bytes)):
        if len(path) != 2:
            raise DataError(f"a ZDC file pair must be (responses, particles), got {len(path)} paths")
        arrays = {}
        for key, file in zip(SHAPES, path):
            found = _read_arrays(file)
            if len(found) == 1:
                found = {key: next(iter(found.values()))}
            arrays[key] = _take(found, key, os.fspath(file))
        where = " + ".join(map(os.fspath, path))
    else:
        arrays, where = _read_arrays(path), os.fspath(path)
    if "responses_train" in arrays or "responses_test" in arrays:
        return {s: _check_pair(_take(arrays, f"responses_{s}", where),
                               _take(arrays, f"particles_{s}", where), where, f"_{s}")
                for s in ("train", "test")}
    responses, particles = _check_pair(_take(arrays, "responses", where),
                                       _take(arrays, "particles", where), where)
    perm = torch.randperm(len(responses), generator=torch.Generator().manual_seed(split_seed))
    n_test = int(round(len(responses) * TEST_FRACTION))
    parts = {"test": perm[:n_test].sort().values, "train": perm[n_test:].sort().values}
    return {s: (responses[rows], particles[rows]) for s, rows in parts.items()}
