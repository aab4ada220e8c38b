"""Fast simulation of ZDC calorimeter responses with a trained conditional model (thesis ch.4, ch.9).

A physicist gives particles (the 9 attributes of `genrep.data.calorimeter.PARTICLE_COLUMNS`:
Energy, Vx, Vy, Vz, Px, Py, Pz, mass, charge, in the units of the data the model was trained on)
and gets k generated responses per particle as raw photo-electron counts.

Particle files (`read_particles`)
    .csv  a header row naming the 9 columns, in any order; names match case-insensitively and
          ignoring surrounding spaces; **extra columns are ignored** (e.g. an event id), missing
          ones are an error that names them; every cell must be a finite number.
    .npz  key `particles` (N, 9) in PARTICLE_COLUMNS order; optionally `responses` (N, 44, 44) raw
          counts of the same particles (real or simulator responses, used by `--compare`).
    Checks: finite values, Energy > 0, mass >= 0, Pz != 0 and Pz of the sign of the training
    particles (the synthetic ZDC sits at z = +112.5 m, so its particles all have Pz > 0: a particle
    with Pz <= 0 never reaches it and has no response to learn). Non-physical values are refused
    (InputError); energies outside the range the model was built for (`simulator_energy_range`:
    [2, 3000] GeV for the synthetic simulator, else within 5 standard deviations of the training
    particles' mean) give a `GenrepWarning` naming the rows: the model extrapolates there, and its
    responses (often all zeros) mean nothing.
    `export_particles` writes such an .npz from the synthetic simulator (with `responses`).

Output (`simulate`, `write_responses`): for N particles and k = n_per_particle, rows ordered
particle by particle (row m belongs to particle m // k):
    responses       (N·k, 44, 44) float32  photo-electron counts ≥ 0: the model's images mapped
                    back with `to_counts(images, model.value_range)` (expm1 of the log(1+x) scale;
                    continuous, not rounded to integers)
    particles       (N·k, 9) float32       the particle of each row (input rows repeated k times)
    particle_index  (N·k,) int64           the input row of each response
    channels        (N·k, 5) float64       ch1..ch5 = calorimeter_channels(responses)
    columns, channel_names                 the column names of `particles` and `channels`
Determinism: the same run, particles, seed and batch_size give the same responses (the torch
RNG is seeded with `seed` once and the batches are drawn in order; the global RNG state is
restored afterwards). A different batch_size draws different noise.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrep.data import calorimeter as zdc
from genrep.errors import ConfigError, DataError, GenrepWarning, InputError
from genrep.utils.files import output_file, write_npz, writing
from genrep.utils.safe_load import load_arrays

COLUMNS = zdc.PARTICLE_COLUMNS
ENERGY, PZ, MASS = COLUMNS.index("Energy"), COLUMNS.index("Pz"), COLUMNS.index("mass")
RESPONSE_SHAPE = (zdc.GRID, zdc.GRID)


# ---- particles --------------------------------------------------------------------------------

def _rows(mask: np.ndarray) -> str:
    """'particles 3, 7, 12 and 4 more (0-based)' for a boolean mask over particles."""
    bad = np.flatnonzero(mask)
    shown = ", ".join(map(str, bad[:5])) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    return f"particle{'s' if len(bad) > 1 else ''} {shown} (0-based)"


def check_particles(particles, *, pz_sign: int = 1, where: str = "particles") -> np.ndarray:
    """Validate particles (N, 9) in COLUMNS order; returns them as float64 numpy.

    pz_sign: +1 (the synthetic ZDC) or −1: the sign every Pz must have (0 is never allowed)."""
    p = np.asarray(particles)
    if not (np.issubdtype(p.dtype, np.integer) or np.issubdtype(p.dtype, np.floating)):
        raise InputError(f"{where}: particles must be numbers, got dtype {p.dtype}")
    p = p.astype(np.float64)
    if p.ndim != 2 or p.shape[1] != len(COLUMNS):
        raise InputError(f"{where}: particles must have shape (N, 9) = {', '.join(COLUMNS)}; got {p.shape}")
    if len(p) == 0:
        raise InputError(f"{where}: there are no particles")
    finite = np.isfinite(p).all(1)
    if not finite.all():
        raise InputError(f"{where}: NaN or infinite values in {_rows(~finite)}")
    if (p[:, ENERGY] <= 0).any():
        raise InputError(f"{where}: Energy must be > 0, not in {_rows(p[:, ENERGY] <= 0)}")
    if (p[:, MASS] < 0).any():
        raise InputError(f"{where}: mass must be >= 0, not in {_rows(p[:, MASS] < 0)}")
    wrong = np.sign(p[:, PZ]) != pz_sign
    if wrong.any():
        side = "> 0" if pz_sign > 0 else "< 0"
        raise InputError(f"{where}: Pz must be {side} (the model's training particles fly towards the "
                         f"calorimeter at z {'+' if pz_sign > 0 else '-'}112.5 m), not in {_rows(wrong)}")
    return p


def _read_csv(path: Path) -> np.ndarray:
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            lines = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if not lines:
        raise DataError(f"{path}: empty file; expected a header with the columns {', '.join(COLUMNS)}")
    header = [name.strip().lower() for name in lines[0][1]]
    duplicates = sorted({name for name in header if header.count(name) > 1 and name})
    if duplicates:
        raise DataError(f"{path}: duplicate column{'s' if len(duplicates) > 1 else ''} {', '.join(duplicates)}")
    missing = [c for c in COLUMNS if c.lower() not in header]
    if missing:
        raise DataError(f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                        f"(the header must name {', '.join(COLUMNS)}; order is free, other columns are ignored)")
    where = [header.index(c.lower()) for c in COLUMNS]
    out = np.empty((len(lines) - 1, len(COLUMNS)))
    for r, (line, row) in enumerate(lines[1:]):
        if len(row) != len(header):
            raise DataError(f"{path}: line {line} has {len(row)} cells but the header has {len(header)}")
        for c, k in enumerate(where):
            try:
                out[r, c] = float(row[k])
            except ValueError:
                raise DataError(f"{path}: line {line}, column {COLUMNS[c]}: {row[k]!r} is not a number") from None
    return out


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    arrays = load_arrays(path)
    if "particles" not in arrays:
        raise DataError(f"{path}: missing key 'particles' (N, 9 = {', '.join(COLUMNS)}); "
                        f"found: {', '.join(arrays) or 'nothing'}")
    return arrays


def read_particles(path: str | os.PathLike, *, pz_sign: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """Particles (N, 9) float64 from a .csv or .npz (see the module docstring) and the real
    responses (N, 44, 44) float32 counts stored beside them in an .npz (None otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"particle file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return check_particles(_read_csv(path), pz_sign=pz_sign, where=str(path)), None
    if suffix != ".npz":
        raise DataError(f"{path}: particle files must be .csv (with a header) or .npz (key 'particles')")
    arrays = _read_npz(path)
    particles = check_particles(arrays["particles"], pz_sign=pz_sign, where=str(path))
    responses = arrays.get("responses")
    if responses is not None:
        responses = _check_responses(responses, len(particles), str(path))
    return particles, responses


def _check_responses(responses: np.ndarray, n: int, where: str) -> np.ndarray:
    r = np.asarray(responses)
    if r.ndim == 4 and r.shape[1] == 1:
        r = r[:, 0]
    if r.ndim != 3 or r.shape[1:] != RESPONSE_SHAPE or len(r) != n:
        raise DataError(f"{where}: 'responses' must have shape ({n}, 44, 44) (one per particle), got {r.shape}")
    if not (np.issubdtype(r.dtype, np.integer) or np.issubdtype(r.dtype, np.floating)):
        raise DataError(f"{where}: 'responses' must be photon counts, got dtype {r.dtype}")
    if not np.isfinite(r).all() or (r.size and r.min() < 0):
        raise DataError(f"{where}: 'responses' must be finite photon counts >= 0")
    return r.astype(np.float32)


def export_particles(path: str | os.PathLike, n: int, *, seed: int = 0) -> Path:
    """Write n synthetic particles and their simulator responses to an .npz (`particles`,
    `responses`, `columns`): the first n rows of the synthetic calorimeter *test* split of data
    seed `seed` (what `load_dataset("calorimeter", "test", seed=...)` builds), as raw counts.
    A model trained on the synthetic train split has not seen them."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"the number of particles to export must be a positive integer, got {n!r}")
    stream = 2 * seed + 1  # the test split's stream, see genrep.data.sources.calorimeter
    particles = zdc.sample_particles(n, seed=stream)
    responses = zdc.simulate_showers(particles, seed=stream)
    return _write_npz(path, particles=particles.numpy(), responses=responses.numpy(), columns=np.array(COLUMNS))


# ---- the model ----------------------------------------------------------------------------------

def load_simulator(run_dir: str | os.PathLike):
    """The trained model of a run, checked to be a calorimeter simulator: 1×44×44 images and 9-d
    condition vectors. Returns (model, pz_sign) where pz_sign is the sign of Pz in its training
    particles (+1 when the model does not store condition statistics)."""
    from genrep.experiments.train import load_trained_model
    from genrep.runs import read_data_spec

    model = load_trained_model(run_dir)
    spec = read_data_spec(run_dir)
    if tuple(spec.image_shape) != (1, *RESPONSE_SHAPE) or spec.cond_dim != len(COLUMNS):
        shape = "×".join(map(str, spec.image_shape))
        cond = f"{spec.cond_dim}-d condition vectors" if spec.cond_dim else "no condition vectors"
        raise ConfigError(f"{run_dir} is not a calorimeter simulator: it was trained on {spec.name} "
                          f"({shape} images, {cond}); train a conditional model on 1×44×44 calorimeter "
                          f"data with 9 particle attributes, e.g. genrep train cvae --dataset calorimeter")
    if hasattr(model, "condition") and (model.condition is None
                                        or getattr(model.condition, "num_classes", None) is not None):
        kind = "unconditional" if model.condition is None else "conditioned on class labels"
        raise ConfigError(f"{run_dir} cannot simulate given particles: its model is {kind}; train a model "
                          "conditioned on the particle attributes, e.g. genrep train cvae --dataset calorimeter")
    mean = getattr(getattr(model, "condition", None), "mean", None)
    pz_sign = -1 if isinstance(mean, torch.Tensor) and float(mean[PZ]) < 0 else 1
    return model, pz_sign


ENERGY_SIGMAS = 5.0


def simulator_energy_range(run_dir: str | os.PathLike | None, model) -> tuple[float, float, str] | None:
    """(lo, hi, what) GeV: the energies the model of `run_dir` was built for. A run trained on the
    synthetic calorimeter (no data path) saw [E_MIN, E_MAX] = [2, 3000] GeV; otherwise the range is
    the training particles' mean ± 5 standard deviations (from the model's condition statistics),
    cut at 0. None when neither is known."""
    if run_dir is not None:
        from genrep.experiments.train import load_run_config

        data = load_run_config(run_dir).data
        if data.name == "calorimeter" and data.path is None:
            return zdc.E_MIN, zdc.E_MAX, "the energies of the synthetic ZDC simulator's particles"
    condition = getattr(model, "condition", None)
    mean, std = getattr(condition, "mean", None), getattr(condition, "std", None)
    if not isinstance(mean, torch.Tensor) or not isinstance(std, torch.Tensor) or len(mean) != len(COLUMNS):
        return None
    m, s = float(mean[ENERGY]), float(std[ENERGY])
    return max(0.0, m - ENERGY_SIGMAS * s), m + ENERGY_SIGMAS * s, (
        f"the training particles' mean ± {ENERGY_SIGMAS:g} standard deviations")


def warn_energy_range(particles: np.ndarray, energy_range: tuple[float, float, str] | None, *,
                      where: str = "particles") -> None:
    """A GenrepWarning naming the particles whose Energy lies outside `energy_range` (see
    `simulator_energy_range`); nothing when all lie inside or the range is unknown."""
    if energy_range is None:
        return
    lo, hi, what = energy_range
    energy = np.asarray(particles, dtype=np.float64)[:, ENERGY]
    outside = (energy < lo) | (energy > hi)
    if outside.any():
        first = float(energy[np.flatnonzero(outside)[0]])
        warnings.warn(f"{where}: Energy outside [{lo:.4g}, {hi:.4g}] GeV ({what}, the range the model was "
                      f"built for) in {_rows(outside)}, e.g. {first:.4g} GeV: the model extrapolates there "
                      "and its responses (often all zeros) are not meaningful", GenrepWarning, stacklevel=3)


@torch.no_grad()
def _generate(model, particles: np.ndarray, k: int, seed: int, batch_size: int, progress: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    cond = torch.from_numpy(particles.astype(np.float32)).repeat_interleave(k, 0)
    out = np.empty((len(cond), *RESPONSE_SHAPE), dtype=np.float32)
    model.eval()
    device = next(model.parameters()).device
    with torch.random.fork_rng(), tqdm(total=len(cond), unit="shower", desc="simulate",
                                       disable=not progress or len(cond) <= batch_size) as bar:
        torch.manual_seed(seed)
        for start in range(0, len(cond), batch_size):
            c = cond[start : start + batch_size].to(device)
            images = model.sample(len(c), c)
            out[start : start + len(c)] = zdc.to_counts(images.float().cpu(), model.value_range).reshape(
                len(c), *RESPONSE_SHAPE).numpy()
            bar.update(len(c))
    return out


def simulate(run_dir: str | os.PathLike, particles, n_per_particle: int = 1, seed: int = 0, *,
             batch_size: int = 1000, progress: bool = False) -> dict[str, np.ndarray]:
    """Generate n_per_particle responses per particle with the model of `run_dir`.

    particles: (N, 9) in PARTICLE_COLUMNS order (numpy, torch or nested lists), or the path of a
    .csv/.npz particle file. Returns the arrays described in the module docstring (`responses`,
    `particles`, `particle_index`, `channels`, `columns`, `channel_names`)."""
    model, pz_sign = load_simulator(run_dir)
    where = "particles"
    if isinstance(particles, (str, os.PathLike)):
        where = str(particles)
        particles, _ = read_particles(particles, pz_sign=pz_sign)
    return simulate_with(model, particles, n_per_particle, seed, batch_size=batch_size, progress=progress,
                         pz_sign=pz_sign, energy_range=simulator_energy_range(run_dir, model), where=where)


def simulate_with(model, particles, n_per_particle: int = 1, seed: int = 0, *, batch_size: int = 1000,
                  progress: bool = False, pz_sign: int = 1, energy_range: tuple[float, float, str] | None = None,
                  where: str = "particles") -> dict[str, np.ndarray]:
    """`simulate` with an already loaded model (see `load_simulator`): any module with
    `sample(n, cond)` taking float conditions n×9 and returning n×1×44×44 images in
    `model.value_range`. `energy_range` (lo, hi, description; default: from the model's condition
    statistics, see `simulator_energy_range`): energies outside it give a GenrepWarning."""
    from genrep.metrics.calorimeter import calorimeter_channels

    for name, value in (("n_per_particle", n_per_particle), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(particles, torch.Tensor):
        particles = particles.detach().cpu().numpy()
    particles = check_particles(particles, pz_sign=pz_sign, where=where)
    warn_energy_range(particles, energy_range if energy_range is not None else simulator_energy_range(None, model),
                      where=where)
    responses = _generate(model, particles, int(n_per_particle), int(seed), int(batch_size), progress)
    index = np.repeat(np.arange(len(particles)), n_per_particle)
    return {
        "responses": responses,
        "particles": particles.astype(np.float32)[index],
        "particle_index": index.astype(np.int64),
        "channels": np.asarray(calorimeter_channels(responses.astype(np.float64))),
        "columns": np.array(COLUMNS),
        "channel_names": np.array(zdc.CHANNEL_NAMES),
    }


# ---- output -------------------------------------------------------------------------------------

def _write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """np.savez_compressed to a temporary file beside `path`, then an atomic rename."""
    return write_npz(path, **arrays)


def write_responses(path: str | os.PathLike, result: dict[str, np.ndarray]) -> Path:
    """Write the output of `simulate` to an .npz atomically (temporary file + rename)."""
    return _write_npz(path, **result)


# ---- comparison with real responses -------------------------------------------------------------

def compare_metrics(real_responses, fake_responses, particle_index=None) -> dict[str, Any]:
    """Channel metrics of generated vs real raw counts (genrep.metrics.calorimeter).

    particle_index (M,): the real row of each generated response (None: row m ↔ row m when both
    sets have the same size, else unpaired). Returns channel_wasserstein (pooled-log convention,
    log(1+x) units) and, when paired, channel_mae (photo-electrons, averaged over M×5 entries)."""
    from genrep.metrics.calorimeter import channel_mae, channel_wasserstein

    real, fake = np.asarray(real_responses), np.asarray(fake_responses)
    out: dict[str, Any] = {"real": len(real), "generated": len(fake),
                           "channel_wasserstein_pooled_log": channel_wasserstein(real, fake)}
    index = _pairing(len(real), len(fake), particle_index)
    if index is not None:
        out["channel_mae"] = channel_mae(real[index], fake)
    return out


def _pairing(n_real: int, n_fake: int, particle_index) -> np.ndarray | None:
    if particle_index is None:
        return np.arange(n_real) if n_real == n_fake else None
    index = np.asarray(particle_index)
    if index.shape != (n_fake,) or (len(index) and (index.min() < 0 or index.max() >= n_real)):
        raise InputError(f"particle_index must hold one real row in [0, {n_real}) per generated response "
                         f"({n_fake}), got shape {index.shape}")
    return index.astype(np.int64)


def compare_picture(real_responses, fake_responses, path: str | os.PathLike, *, particle_index=None,
                    particles=None, n_show: int = 4) -> Path:
    """PNG: `n_show` real showers above generated ones for the same particles (log(1+counts)
    colour scale, shared per column), and the distributions of the 5 channels, real vs
    generated, as histograms of log(1+ch) (densities, so sets of different sizes compare).

    real_responses (N, 44, 44), fake_responses (M, 44, 44): raw counts ≥ 0. particle_index: see
    `compare_metrics`. The showers shown are real ones at the 30%…99% quantiles of the total light
    (dim to bright) and the first generated response of the same particle (the same row when
    unpaired). particles (N, 9) adds Energy and mass to the column titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genrep.metrics.calorimeter import calorimeter_channels

    real = np.asarray(real_responses, dtype=np.float64)
    fake = np.asarray(fake_responses, dtype=np.float64)
    if len(real) == 0 or len(fake) == 0:
        raise InputError("compare_picture needs at least one real and one generated response")
    real_ch = np.asarray(calorimeter_channels(real))
    fake_ch = np.asarray(calorimeter_channels(fake))
    metrics = compare_metrics(real, fake, particle_index)
    index = _pairing(len(real), len(fake), particle_index)
    candidates = np.unique(index) if index is not None else np.arange(min(len(real), len(fake)))
    by_light = candidates[np.argsort(real[candidates].sum((1, 2)), kind="stable")]
    picks = np.unique(np.round(np.linspace(0.3, 0.99, n_show) * (len(by_light) - 1)).astype(int))
    shown_real = [int(r) for r in by_light[picks]]  # real showers from dim to bright
    shown_fake = [int(np.flatnonzero(index == r)[0]) for r in shown_real] if index is not None else shown_real
    fig = plt.figure(figsize=(max(2.4 * len(shown_real), 11.5), 9.6), dpi=100, layout="constrained")
    top_fig, bottom_fig = fig.subfigures(2, 1, height_ratios=[2.1, 1])
    axes = top_fig.subplots(2, len(shown_real), squeeze=False)
    for c, (r, f) in enumerate(zip(shown_real, shown_fake)):
        top = max(np.log1p(real[r]).max(), np.log1p(fake[f]).max(), 1e-6)  # one scale per column
        for row, (image, kind, number) in enumerate(((real[r], "real", r), (fake[f], "generated", f))):
            ax = axes[row, c]
            shown = ax.imshow(np.log1p(image), cmap="inferno", vmin=0, vmax=top, origin="lower")
            title = f"{kind} #{number}"
            if particles is not None and row == 0:
                p = np.asarray(particles)[r]
                title += f"\nE={p[ENERGY]:.3g} GeV, m={p[MASS]:.3g} GeV"
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("column j (x)" if row == 1 else "", fontsize=8)
            ax.set_ylabel("row i (y)" if c == 0 else "", fontsize=8)
            ax.tick_params(labelsize=7)
        bar = top_fig.colorbar(shown, ax=axes[:, c], orientation="horizontal", shrink=0.85, aspect=25)
        bar.set_label("log(1 + photo-electrons)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    hist_axes = bottom_fig.subplots(1, len(zdc.CHANNEL_NAMES))
    logs = np.log1p(np.concatenate([real_ch, fake_ch]))
    for c, name in enumerate(zdc.CHANNEL_NAMES):
        ax = hist_axes[c]
        bins = np.linspace(logs[:, c].min(), max(logs[:, c].max(), logs[:, c].min() + 1e-3), 31)
        ax.hist(np.log1p(real_ch[:, c]), bins=bins, density=True, histtype="stepfilled", alpha=0.4,
                color="tab:blue", label=f"real ({len(real)})")
        ax.hist(np.log1p(fake_ch[:, c]), bins=bins, density=True, histtype="step", lw=1.6,
                color="tab:orange", label=f"generated ({len(fake)})")
        ax.set_title(name + (" (common PMT)" if c == 4 else " (tower)"), fontsize=9)
        ax.set_xlabel(f"log(1 + {name}) [p.e.]", fontsize=8)
        ax.set_ylabel("density" if c == 0 else "", fontsize=8)
        ax.tick_params(labelsize=7)
        if c == 0:
            ax.legend(fontsize=7)
    summary = f"channel W1 (pooled, log(1+x)) = {metrics['channel_wasserstein_pooled_log']:.3f}"
    if "channel_mae" in metrics:
        summary += f"    channel MAE (same particle) = {metrics['channel_mae']:.4g} p.e."
    top_fig.suptitle("ZDC responses for the same particles: real (top row) vs generated (bottom row)", fontsize=11)
    bottom_fig.suptitle(f"Channel distributions, real vs generated — {summary}", fontsize=11)
    path = output_file(path)
    try:
        with writing(path):
            fig.savefig(path, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def default_compare_path(out: str | os.PathLike) -> Path:
    """responses.npz → responses_compare.png (beside the output)."""
    out = Path(out)
    return out.with_name(out.stem + "_compare.png")
