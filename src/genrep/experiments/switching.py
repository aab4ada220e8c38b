"""The two-stage DAED experiment (thesis ch. 5.7.2, Fig. 5.7.2 and 5.7.3): where can a trained DDGM
hand over to a denoising autoencoder?

A DDGM is trained first (any `genrep train ddgm` run). For each switching point, chosen by the
log-SNR of Eq. 5.2 at that step (`genrep.analysis.snr.snr_curve` averaged over the evaluation
images, mapped to the nearest 0-based timestep k of the DDGM's T-step schedule), a `TwoStageDAE`
f_φ is trained to map x_k ~ q(x_k|x_0) back to x_0 (x̂_0-MSE; `genrep.models.daed`), and the pair
generates by `two_stage_sample`: the DDGM runs its full reverse process from x_T down to level k,
then f_φ(x_k) gives x_0 in one deterministic step. FID of every pair against the evaluation split
is plotted against the log-SNR at the switch, with the plain DDGM's FID (its full reverse process
down to x_0, the same starting noise) as the reference line. The thesis finds DAED about as good
as the DDGM for switches up to ~10% of the steps, i.e. log-SNR ≳ 4 (FashionMNIST, CIFAR-10, CelebA).

Protocol details (genrep's choices; the thesis gives no training details for the two-stage DAE):

- the DAE gets the DDGM's own UNet settings unless told otherwise (the thesis uses the same
  architecture for both parts of DAED), is trained on the DDGM run's training data with AdamW for
  `dae_steps` steps (batch `batch_size`, `lr`), by the shared `genrep.training.Trainer`;
- every configuration starts from the same x_T noise (seeded), as in Fig. 5.7.3, and samples with
  the DDGM's full T-step process (not its respaced `sample_steps` process), so the plain DDGM and
  each switch differ only by the steps the DAE replaces; cost: n·(T − 1 − k) DDGM calls per switch;
- FID (METHODS.md §0: Fréchet distance of Gaussian fits in float64) of n generated images against
  a seeded subset of n images of the evaluation split, on one feature extractor for all
  configurations (LeNet of the data set for gray 28×28 / 8×8 data, Inception for RGB);
- trained DAEs are kept as OUT/daes/dae_tKKKK.safetensors with a JSON sidecar; a later call with
  the same DDGM weights and DAE settings reuses them.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrep.data import ImageDataset
from genrep.data.transforms import rescale
from genrep.errors import ConfigError, InputError

DEFAULT_LOG_SNRS = (6.0, 4.0, 2.0, 0.0, -2.0)
CSV_COLUMNS = ("log_snr_target", "t", "fraction_of_steps", "log_snr", "alpha_bar", "beta1_equivalent",
               "ddgm_steps_run", "dae_steps", "dae_final_loss", "fid", "ddgm_fid", "n")
GRID_PER_ROW = 8


@dataclasses.dataclass
class SwitchingSettings:
    """dae_steps / batch_size / lr: the training of each DAE (AdamW). dae_unet: its UNet
    (`genrep.models.UNetSettings`), None = the DDGM's own. n: generated and real images per FID.
    sample_batch_size: images per sampling batch. seed: the DAE training, the starting noise and the
    real subset. dae_mode: `TwoStageDAEConfig.mode` — "thesis" (an x̂_0 DAE trained at level k) or
    "reference" (the authors' script: an ε DAE trained at noise β_1 = 1 − ᾱ_k, after the DDGM's t = 0
    step); docs/diffusion.md."""

    dae_steps: int = 1000
    batch_size: int = 64
    lr: float = 5e-4
    dae_unet: Any = None
    n: int = 1000
    sample_batch_size: int = 250
    seed: int = 0
    dae_mode: str = "thesis"

    def __post_init__(self):
        from genrep.models.daed import TWO_STAGE_MODES

        if self.dae_mode not in TWO_STAGE_MODES:
            raise ConfigError(f"dae-mode must be one of {', '.join(TWO_STAGE_MODES)}, got {self.dae_mode!r}")
        for name in ("dae_steps", "batch_size", "n", "sample_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")


def parse_log_snrs(text: str) -> list[float]:
    """"6,4,2" → [6.0, 4.0, 2.0] (the order is kept)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--switch-log-snr must be comma-separated numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"--switch-log-snr must name at least one finite log-SNR value, got {text!r}")
    return values


def switching_points(ddgm, images: torch.Tensor, log_snrs, *, log=print) -> list[dict[str, float]]:
    """The timestep k of the DDGM's schedule nearest to each target log-SNR (Eq. 5.2, averaged over
    `images`, N×C×H×W in the DDGM's value range). Targets that map to the same k are merged (the
    first one is kept); targets outside the schedule's range map to its first or last step (logged).
    Returns dicts with log_snr_target, t, fraction_of_steps ((t + 1)/T), log_snr, alpha_bar,
    beta1_equivalent (1 − ᾱ_t: the variance a DAED's single first step would need), in the given order."""
    from genrep.analysis.snr import snr_curve
    from genrep.models.ddgm import to_model_range

    betas = ddgm.diffusion.betas.double().cpu().numpy()
    curve = snr_curve(to_model_range(images.float().cpu(), ddgm.value_range), betas)
    points, seen = [], set()
    lo, hi = float(curve["log_snr"].min()), float(curve["log_snr"].max())
    for target in log_snrs:
        k = int(np.argmin(np.abs(curve["log_snr"] - target)))
        if not lo <= target <= hi:
            log(f"log-SNR {target:g} lies outside the schedule's range [{lo:.2f}, {hi:.2f}]: using step {k}")
        if k in seen:
            log(f"log-SNR {target:g} maps to step {k} like an earlier value: skipped")
            continue
        seen.add(k)
        points.append({"log_snr_target": float(target), "t": k,
                       "fraction_of_steps": float(curve["fraction_of_steps"][k]),
                       "log_snr": float(curve["log_snr"][k]), "alpha_bar": float(curve["alpha_bar"][k]),
                       "beta1_equivalent": float(1.0 - curve["alpha_bar"][k])})
    return points


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of a model's state dict (names and bytes): which DDGM a stored DAE belongs to."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32 if tensor.is_floating_point() else tensor.dtype)
                      .contiguous().numpy().tobytes())
    return digest.hexdigest()


def train_switch_dae(ddgm, train: ImageDataset, k: int, settings: SwitchingSettings, *, progress: bool = False,
                     store: Path | None = None, fingerprint: str | None = None, log=print):
    """A `TwoStageDAE` for switching step k of `ddgm`, trained on `train` (images in the DDGM's value
    range) as `settings` say; with `store` (a folder) the weights go to store/dae_tKKKK.safetensors
    and are reused when the sidecar JSON matches (DDGM `fingerprint`, settings). Returns
    (dae in eval mode, final training loss or None when reused, reused flag)."""
    import json

    from genrep.config import to_dict
    from genrep.models import TwoStageDAE
    from genrep.runs import write_json
    from genrep.training import TrainConfig, Trainer, launch_fabric, load_weights, save_weights

    unet = settings.dae_unet if settings.dae_unet is not None else ddgm.config.unet
    torch.manual_seed(settings.seed)
    beta1 = float(1.0 - ddgm.diffusion.alphas_cumprod[k])  # the noise of level k, as one DAED step
    dae = TwoStageDAE.for_ddgm(ddgm, beta1=beta1, switch_step=k, unet=unet, mode=settings.dae_mode)
    identity = {"switch_step": k, "dae_mode": settings.dae_mode, "dae_steps": settings.dae_steps, "batch_size": settings.batch_size,
                "lr": settings.lr, "seed": settings.seed, "unet": to_dict(unet), "ddgm": fingerprint}
    weights = None if store is None else store / f"dae_t{k:04d}.safetensors"
    sidecar = None if weights is None else weights.with_suffix(".json")
    if weights is not None and weights.is_file() and sidecar.is_file() and fingerprint is not None:
        stored = json.loads(sidecar.read_text())
        if stored.get("identity") == json.loads(json.dumps(identity)):
            load_weights(weights, dae)
            log(f"step {k}: reusing the trained DAE {weights}")
            return dae.eval(), stored.get("final_loss"), True
    if len(train) < settings.batch_size:
        raise ConfigError(f"the DAE's training set has {len(train)} images, fewer than the batch size "
                          f"{settings.batch_size}: lower --batch-size")
    cfg = TrainConfig(steps=settings.dae_steps, batch_size=settings.batch_size, lr=settings.lr, optimizer="adamw",
                      seed=settings.seed, log_every=max(1, settings.dae_steps // 10), checkpoint_every=0,
                      progress=progress)
    result = Trainer(cfg, fabric=launch_fabric(cfg), run_dir=None).fit(dae, train)
    dae.eval()
    if weights is not None:
        save_weights(weights, dae)
        write_json(sidecar, {"identity": identity, "final_loss": result.final_loss, "wall_time_s": result.wall_time_s})
    return dae, result.final_loss, False


@torch.no_grad()
def generate(ddgm, dae, k: int | None, noise: torch.Tensor, *, seed: int = 0, batch_size: int = 250,
             progress: bool = False) -> torch.Tensor:
    """Images in [0, 1] (N×C×H×W, CPU) from the starting noise x_T (N×C×H×W): the two-stage pair
    (`dae` switching at step k) or, with `dae=None`, the DDGM's full reverse process to x_0.
    `seed` fixes the noise of the reverse steps."""
    from genrep.models import two_stage_sample
    from genrep.models.ddgm import from_model_range

    device = ddgm.device
    generator = torch.Generator(device=device).manual_seed(seed)
    chunks = []
    for start in range(0, len(noise), batch_size):
        x_T = noise[start:start + batch_size].to(device)
        if dae is None:
            x0 = from_model_range(ddgm.sample_to(len(x_T), 0, noise=x_T, generator=generator, progress=progress),
                                  ddgm.value_range)
        else:
            x0 = two_stage_sample(ddgm, dae, k, len(x_T), noise=x_T, generator=generator, progress=progress)
        chunks.append(rescale(x0.float().cpu(), ddgm.value_range, (0.0, 1.0)).clamp_(0.0, 1.0))
    return torch.cat(chunks)


def switching_experiment(ddgm, train: ImageDataset, test: ImageDataset, out: str | Path, *, features,
                         log_snrs=DEFAULT_LOG_SNRS, settings: SwitchingSettings | None = None,
                         progress: bool = False, title: str = "", log=print) -> dict[str, Any]:
    """Fig. 5.7.2 for a trained `ddgm` (a `genrep.models.DDGM`): for each target log-SNR, a DAE at
    the nearest step, trained on `train`, FID of the pair's samples against `test` (both data sets in
    the DDGM's value range; a seeded subset of `settings.n` test images, all of them when fewer),
    beside the plain DDGM's FID. `features`: a `genrep.metrics.FeatureExtractor`.

    Writes OUT/switching.csv (`CSV_COLUMNS`, one row per switching point), OUT/switching.png (FID
    against the log-SNR at the switch, the DDGM's FID as a dashed line), OUT/switching_samples.png
    (first row the DDGM, then one row per switch, the same starting noise: Fig. 5.7.3),
    OUT/switching.json, and OUT/daes/. Returns {"ddgm_fid", "rows", "n", "features", ...}."""
    from genrep.data.transforms import random_subset
    from genrep.metrics import FeatureExtractor, fid
    from genrep.runs import write_json
    from genrep.utils.images import save_grid

    settings = settings or SwitchingSettings()
    if not callable(getattr(ddgm, "sample_to", None)) or not hasattr(ddgm, "config"):
        raise ConfigError("the two-stage experiment needs a trained DDGM run (model 'ddgm'), "
                          f"got {type(ddgm).__name__}")
    if not isinstance(features, FeatureExtractor):
        raise InputError("features must be a genrep.metrics.FeatureExtractor "
                         "(e.g. get_extractor('lenet', dataset=...))")
    if tuple(test.image_shape) != tuple(ddgm.image_shape):
        raise InputError(f"the evaluation images are {'×'.join(map(str, test.image_shape))} but the DDGM generates "
                         f"{'×'.join(map(str, ddgm.image_shape))}")
    from genrep.utils.files import output_dir

    out = output_dir(out)
    ddgm.eval()
    n = min(settings.n, len(test))
    if n < settings.n:
        log(f"{test.name}[{test.split}] has {len(test)} images: FID on {n} instead of {settings.n}")
    if n < 2:
        raise ConfigError("FID needs at least 2 images")
    real = random_subset(test, n, seed=settings.seed)
    f_real = features.features(rescale(real.images.float(), real.value_range, (0.0, 1.0)).clamp(0.0, 1.0),
                               progress=False)
    points = switching_points(ddgm, real.images, log_snrs, log=log)
    noise = torch.randn((n, *ddgm.image_shape), generator=torch.Generator().manual_seed(settings.seed))
    T = ddgm.diffusion.num_timesteps

    log(f"plain DDGM: {T} reverse steps for {n} images")
    reference = generate(ddgm, None, None, noise, seed=settings.seed + 1, batch_size=settings.sample_batch_size,
                         progress=progress)
    ddgm_fid = fid(f_real, features.features(reference, progress=False))
    log(f"plain DDGM: FID {ddgm_fid:.3f}")
    grid = [reference[:GRID_PER_ROW]]
    fingerprint = weights_fingerprint(ddgm)
    rows = []
    for point in points:
        k = point["t"]
        log(f"switch at step {k} ({100 * point['fraction_of_steps']:.1f}% of steps, log-SNR {point['log_snr']:.2f}): "
            f"training the DAE ({settings.dae_steps} steps)")
        dae, final_loss, _ = train_switch_dae(ddgm, train, k, settings, progress=progress, store=out / "daes",
                                              fingerprint=fingerprint, log=log)
        images = generate(ddgm, dae, k, noise, seed=settings.seed + 1, batch_size=settings.sample_batch_size,
                          progress=progress)
        value = fid(f_real, features.features(images, progress=False))
        rows.append({**point, "ddgm_steps_run": T - 1 - k, "dae_steps": settings.dae_steps,
                     "dae_final_loss": final_loss, "fid": value, "ddgm_fid": ddgm_fid, "n": n})
        grid.append(images[:GRID_PER_ROW])
        log(f"switch at step {k}: FID {value:.3f} (DDGM {ddgm_fid:.3f})")
    write_switching_csv(rows, out / "switching.csv")
    plot_switching(rows, ddgm_fid, out / "switching.png",
                   title=title or f"Two-stage DAED: FID against the log-SNR at the switch (T={T}, n={n})",
                   feature_name=features.name)
    save_grid(torch.cat(grid), out / "switching_samples.png", value_range=(0.0, 1.0),
              nrow=min(GRID_PER_ROW, n))
    result = {"T": T, "n": n, "features": features.name, "ddgm_fid": ddgm_fid, "rows": rows,
              "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k != "dae_unet"},
              "dae_unet": "the DDGM's" if settings.dae_unet is None else dataclasses.asdict(settings.dae_unet)}
    write_json(out / "switching.json", result)
    log(f"wrote {out / 'switching.csv'}, {out / 'switching.png'}, {out / 'switching_samples.png'}")
    return result


def write_switching_csv(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow(["" if row[c] is None else (f"{row[c]:.10g}" if isinstance(row[c], float) else row[c])
                             for c in CSV_COLUMNS])
    return path


def plot_switching(rows: list[dict], ddgm_fid: float, out: str | Path, *, title: str = "",
                   feature_name: str = "") -> Path:
    """FID against the log-SNR at the switching step (x axis descending: later switches to the
    right), each point labelled with its step and fraction of steps; the DDGM's FID dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(rows, key=lambda r: -r["log_snr"])
    x = [r["log_snr"] for r in ordered]
    y = [r["fid"] for r in ordered]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.plot(x, y, "o-", color="tab:blue", lw=1.6, label="two-stage DAED (DDGM → DAE)")
    for r in ordered:
        ax.annotate(f"t={r['t']} ({100 * r['fraction_of_steps']:.0f}%)", (r["log_snr"], r["fid"]),
                    xytext=(4, 6), textcoords="offset points", fontsize=8)
    ax.axhline(ddgm_fid, color="black", ls="--", lw=1, label=f"DDGM ({ddgm_fid:.2f})")
    if len(x) > 1:
        ax.set_xlim(max(x) + 0.05 * (max(x) - min(x) + 1), min(x) - 0.05 * (max(x) - min(x) + 1))
    else:
        ax.invert_xaxis()
    ax.set_xlabel("log SNR at the switching step (Eq. 5.2)")
    ax.set_ylabel(f"FID{f' ({feature_name} features)' if feature_name else ''}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)


def switching_analysis(run_dir: str | Path, out: str | Path, *, dataset: str | None = None,
                       log_snrs=DEFAULT_LOG_SNRS, features: Any = "lenet", settings: SwitchingSettings | None = None,
                       progress: bool = True, log=print) -> dict[str, Any]:
    """`genrep analyze switching`: `switching_experiment` for the DDGM of run folder `run_dir`, with
    the DAEs trained on the train split and FID on the test split of `dataset` (default the run's
    own), both prepared like the run's training data. `features`: "lenet" (the cached LeNet of the
    data set), "inception", a TorchScript file, or a FeatureExtractor."""
    from genrep.experiments.evaluate import resolve_extractor
    from genrep.experiments.latent_pictures import load_run_and_data

    model, test, cfg = load_run_and_data(run_dir, dataset, "test")
    if cfg.model_name != "ddgm":
        raise ConfigError(f"{run_dir} trains {cfg.model_name!r}: the two-stage experiment needs an unconditional "
                          "DDGM run (model 'ddgm')")
    _, train, _ = load_run_and_data(run_dir, dataset, "train")
    probe = rescale(test.images[:2].float(), test.value_range, (0.0, 1.0))
    extractor = resolve_extractor(features, test.name, probe)
    title = (f"Two-stage DAED on {test.name}: {Path(run_dir).name} (T={model.diffusion.num_timesteps}), "
             f"{(settings or SwitchingSettings()).dae_steps}-step DAEs")
    return switching_experiment(model, train, test, out, features=extractor, log_snrs=log_snrs, settings=settings,
                                progress=progress, title=title, log=log)
