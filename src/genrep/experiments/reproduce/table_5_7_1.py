"""Thesis Table 5.7.1 (FashionMNIST columns): DDGM against DAED, FID / precision / recall.

Six models, each trained with the VLB (Eq. 2.9; learned-range variance, the reference code's
`--use_kl True --learn_sigma True`) and with the simplified objective (Eq. 2.13):

    DDGM                T       a plain linear-schedule DDGM
    DAED β_1 = 0.1      T′      DAE for x_0←x_1 with q(x_1|x_0) = N(√0.9 x_0, 0.1 I) + a DDGM of T′−1 steps
    DAED β_1 = 0.001    T′      the same with β_1 = 0.001 (the appendix' "DAED linear")

The DAED rows are built as the published runs were (REFERENCE_CODE.md §2.2–2.3; `genrep reproduce
table-5.7.1 --scale paper --dry-run` prints every resolved setting):
- β_1 = 0.1: "linear_combine" (a fresh linear schedule of T′ steps with β[0] := 0.1), T′ by
  `DAEDConfig.steps_rule` — "published" at `paper` scale (T = 500 → 468), "argmin" (the reference
  code's rule) at the other scales, whose T has no published length — and the "dae_uniform"
  sampler (`dae_sampler="first-step"`: weight β_1·T′ on t = 0, 1 elsewhere; p(t = 0) = 0.091).
- β_1 = 0.001: the reference ran a plain T-step linear DDGM whose own first step is the DAE's
  (`schedule="plain-linear"`: T′ = T, β[0] = 1e-4·1000/T = 2e-4 at T = 500, i.e. σ = 0.014, not the
  label's 0.032) with the uniform sampler. The published T′ = 499 counts its DDGM steps.
- the DAE predicts ε in both losses (`dae_prediction="eps"`): ε-MSE for "simple", and the
  reference's (T′−1)·MSE(x̂_0(ε̂), x_0) for "vlb" (the thesis' Eq. 5.5 x̂_0-DAE is DAEDConfig's
  default for "vlb").
The thesis text's sampler p(t) ∝ β_t (`Scale.dae_sampler="beta"`) would give the β_1 = 0.001 DAE
p(t = 0) ≈ 1e-4, so that at the small scales it sees almost no data (measured at `smoke`: FID
2600 against 450–700 for the other rows).

Evaluation: n generated images (seeded, the model's configured sampler; `sample_steps` respaced
steps where the scale sets them) against a seeded subset of n FashionMNIST test images:
- FID (METHODS.md §0) on one feature extractor: `paper` the FID Inception (as the thesis);
  `smoke` and `cpu` our LeNet trained on the data set (Inception runs at ~7 images/s on a 2-core
  CPU). LeNet FIDs are on another scale than the published Inception FIDs: compare rankings only.
- Prec / Rec: PRD (Sajjadi et al. 2018; max F_{1/8} / F_8 × 100), what the thesis text cites; the
  improved precision/recall (Kynkäänniemi et al. 2019, k = 3, × 100) is reported beside it
  (columns "IPR"), as the appendix tables may have used it (METHODS.md §0).

Scales (costs measured on this 2-core CPU single-threaded while another job used the other core,
so they are upper bounds; `cpu` is budgeted for all six rows together):
- `smoke`: 8×8 digits, T = 50, a tiny UNet, 150 steps, 200 samples with 10 respaced steps —
  about 1.5 min for the table (≈ 10–14 s per row);
- `cpu`: FashionMNIST 28×28, T = 100, UNet 16 ch × (1, 2, 2), one ResBlock per level, attention
  only in the 7×7 middle block, batch 64, AdamW 5e-4, grad-clip 1, 700 steps (0.43 s/step DDGM,
  0.49 s/step DAED → 5.0 / 5.7 min), 1000 samples with 25 respaced steps (≈ 70 s), the
  end-of-training loss over the 10k test images (≈ 35 s), features + PRD (≈ 20 s): ≈ 6.9 min per
  DDGM row and 7.7 min per DAED row, ≈ 45 min for the table (less on 2 idle cores; not measured), plus
  ~2 min once for the FashionMNIST LeNet when none is cached;
- `paper`: the reference settings (thesis Table 5.9.4, METHODS.md §2): T = 500, UNet 64 ch ×
  (1, 2, 2), 3 ResBlocks, 4 heads with full-resolution attention, dropout 0.3, batch 128, AdamW
  1e-4, 100k steps (~35 h per model on a GTX 1080 Ti), full T-step sampling, 10,000 samples,
  Inception features; training and sampling run on the GPU when there is one.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrep.experiments.reproduce.common import (
    check_inputs,
    check_scale,
    format_cell,
    markdown_table,
    mean_std,
    train_or_reuse,
)

NAME = "table-5.7.1"
TITLE = "Table 5.7.1: DDGM vs DAED on FashionMNIST (FID, precision, recall)"

# (key, model, beta1, loss), in the table's order
ROWS = (
    ("ddgm-vlb", "ddgm", None, "vlb"),
    ("daed-0.1-vlb", "daed", 0.1, "vlb"),
    ("daed-0.001-vlb", "daed", 0.001, "vlb"),
    ("ddgm-simple", "ddgm", None, "simple"),
    ("daed-0.1-simple", "daed", 0.1, "simple"),
    ("daed-0.001-simple", "daed", 0.001, "simple"),
)
LABELS = {"ddgm": "DDGM", 0.1: "DAED β1 = 0.1", 0.001: "DAED β1 = 0.001"}
LOSS_LABELS = {"vlb": "VLB", "simple": "Simple"}
# thesis Table 5.7.1, FashionMNIST: T (T′ for DAED), FID, Prec, Rec
PUBLISHED = {
    "ddgm-vlb": {"T": 500, "fid": 8.9, "precision": 68, "recall": 53},
    "daed-0.1-vlb": {"T": 468, "fid": 9.1, "precision": 71, "recall": 60},
    "daed-0.001-vlb": {"T": 499, "fid": 7.5, "precision": 71, "recall": 64},
    "ddgm-simple": {"T": 500, "fid": 7.8, "precision": 72, "recall": 65},
    "daed-0.1-simple": {"T": 468, "fid": 9.6, "precision": 73, "recall": 58},
    "daed-0.001-simple": {"T": 499, "fid": 5.7, "precision": 69, "recall": 64},
}
METRIC_KEYS = ("fid", "precision", "recall", "ipr_precision", "ipr_recall")
# the published runs (reference README and code), per β_1: DAEDConfig.dae_sampler and .schedule
REFERENCE_DAE_SAMPLERS = {0.1: "first-step", 0.001: "uniform"}
REFERENCE_DAE_SCHEDULES = {0.1: "linear", 0.001: "plain-linear"}


@dataclasses.dataclass(frozen=True)
class Scale:
    """Training and evaluation budget of one scale (per model)."""

    dataset: str
    diffusion_steps: int            # T
    steps_rule: str                 # T′ of DAED: "published" | "argmin"
    unet: dict[str, Any]            # UNetSettings fields (the same for the DAE, as in the thesis)
    train_steps: int
    batch_size: int
    lr: float
    grad_clip: float | None
    train_limit: int | None
    n_eval: int
    sample_steps: int | None        # respaced sampling steps (None: all steps)
    features: str                   # "lenet" (of `dataset`) | "inception"
    accelerator: str                # "cpu" | "auto" (the GPU when there is one)
    quick_lenet: bool               # smoke: a 1-epoch LeNet that is not cached, when none is
    dae_sampler: str = "reference"  # DAED timestep sampler: "reference" (per β_1, see above) | a DAEDConfig name
    dae_prediction: str = "eps"     # the DAE's output (DAEDConfig.dae_prediction): "eps" as the reference | "x0"
    clip_denoised: bool = True      # clamp x̂_0 to [-1, 1] while sampling; paper: False, as the reference
                                    # sampled (image_sample.py, train_util.py); docs/diffusion.md


SMOKE_UNET = {"model_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": [],
              "middle_attention": False, "num_heads": 4, "dropout": 0.0}
CPU_UNET = {"model_channels": 16, "channel_mult": [1, 2, 2], "num_res_blocks": 1, "attention_resolutions": [],
            "middle_attention": True, "num_heads": 4, "dropout": 0.1}
PAPER_UNET = {"model_channels": 64, "channel_mult": [1, 2, 2], "num_res_blocks": 3, "attention_resolutions": None,
              "middle_attention": True, "num_heads": 4, "dropout": 0.3}

SCALES = {
    "smoke": Scale(dataset="digits", diffusion_steps=50, steps_rule="argmin", unet=SMOKE_UNET, train_steps=150,
                   batch_size=64, lr=1e-3, grad_clip=1.0, train_limit=None, n_eval=200, sample_steps=10,
                   features="lenet", accelerator="cpu", quick_lenet=True),
    "cpu": Scale(dataset="fashion_mnist", diffusion_steps=100, steps_rule="argmin", unet=CPU_UNET, train_steps=700,
                 batch_size=64, lr=5e-4, grad_clip=1.0, train_limit=None, n_eval=1000, sample_steps=25,
                 features="lenet", accelerator="cpu", quick_lenet=False),
    "paper": Scale(dataset="fashion_mnist", diffusion_steps=500, steps_rule="published", unet=PAPER_UNET,
                   train_steps=100_000, batch_size=128, lr=1e-4, grad_clip=None, train_limit=None, n_eval=10_000,
                   sample_steps=None, features="inception", accelerator="auto", quick_lenet=False,
                   clip_denoised=False),
}


def row_of(key: str) -> tuple[str, str, float | None, str]:
    for row in ROWS:
        if row[0] == key:
            return row
    raise KeyError(f"unknown row {key!r}; rows: {', '.join(r[0] for r in ROWS)}")


def run_config(key: str, scale: str, seed: int, *, progress: bool = False) -> dict[str, Any]:
    """The RunConfig (as a nested dict) of one row of the table."""
    s = SCALES[check_scale(scale)]
    _, model, beta1, loss = row_of(key)
    unet = dict(s.unet)
    if model == "ddgm":
        model_cfg: dict[str, Any] = {"steps": s.diffusion_steps, "schedule": "linear", "loss": loss,
                                     "timestep_sampler": "uniform", "sample_steps": s.sample_steps, "unet": unet,
                                     "clip_denoised": s.clip_denoised}
    else:
        model_cfg = {"steps": s.diffusion_steps, "beta1": beta1, "schedule": REFERENCE_DAE_SCHEDULES[beta1],
                     "steps_rule": s.steps_rule, "loss": loss, "dae_prediction": s.dae_prediction,
                     "dae_sampler": REFERENCE_DAE_SAMPLERS[beta1] if s.dae_sampler == "reference" else s.dae_sampler,
                     "sample_steps": s.sample_steps, "unet": unet,
                     "dae_unet": dict(s.unet), "clip_denoised": s.clip_denoised}
    data = {"name": s.dataset, "value_range": "01", "limit": s.train_limit, "validation_fraction": 0.0}
    train = {"steps": s.train_steps, "batch_size": s.batch_size, "lr": s.lr, "optimizer": "adamw",
             "grad_clip": s.grad_clip, "seed": seed, "accelerator": s.accelerator,
             "log_every": max(1, s.train_steps // 50), "checkpoint_every": max(1, s.train_steps // 10),
             "progress": progress}
    return {"model_name": model, "model": model_cfg, "data": data, "train": train}


def diffusion_length(key: str, scale: str) -> int:
    """T of a DDGM row, T′ of a DAED row, at `scale`."""
    from genrep.models import DAEDConfig

    s = SCALES[check_scale(scale)]
    _, model, beta1, _ = row_of(key)
    if model == "ddgm":
        return s.diffusion_steps
    return DAEDConfig(steps=s.diffusion_steps, beta1=beta1, steps_rule=s.steps_rule,
                      schedule=REFERENCE_DAE_SCHEDULES[beta1]).shortened_steps


def plan(scale: str) -> dict[str, Any]:
    """The resolved settings of every row at `scale` (what `--dry-run` prints), without training:
    schedule, T / T′, β[0], timestep sampler with p(t = 0), DAE parameterisation and loss, sampling
    (steps, clip), training and evaluation."""
    from genrep.config import to_dict
    from genrep.experiments.run_config import run_config_from_dict

    s = SCALES[check_scale(scale)]
    rows: dict[str, Any] = {}
    for key, model, beta1, loss in ROWS:
        cfg = run_config_from_dict(run_config(key, scale, seed=0)).model
        process, sampler = _process_and_sampler(cfg, model)
        weights = sampler.weights() / sampler.weights().sum()
        row = {"model": model, "loss": loss, "published_T": PUBLISHED[key]["T"], **process,
               "timestep_sampler": {"name": cfg.timestep_sampler if model == "ddgm" else cfg.dae_sampler,
                                    "p_t0": float(weights[0]), "importance_weight_t0": float(1 / (len(weights) * weights[0]))},
               "sampling": {"steps": cfg.sample_steps or "all", "sampler": cfg.sampler, "clip_denoised": cfg.clip_denoised},
               "unet": to_dict(cfg.unet)}
        if model == "daed":
            prediction = cfg.resolved_dae_prediction
            row["dae"] = {"beta1_label": beta1, "noise_variance": cfg.first_step_beta, "prediction": prediction,
                          "loss": _dae_loss_formula(prediction, loss), "unet": to_dict(cfg.dae_unet)}
        rows[key] = row
    return {"table": NAME, "scale": scale, "dataset": s.dataset,
            "train": {"steps": s.train_steps, "batch_size": s.batch_size, "optimizer": "adamw", "lr": s.lr,
                      "weight_decay": 0.0, "grad_clip": s.grad_clip, "accelerator": s.accelerator},
            "evaluation": {"n": s.n_eval, "features": s.features, "metrics": list(METRIC_KEYS)}, "rows": rows}


def _process_and_sampler(cfg, model: str):
    from genrep.diffusion import get_betas
    from genrep.diffusion.samplers import UniformSampler
    from genrep.models.daed import daed_betas, daed_timestep_sampler

    if model == "ddgm":
        betas = get_betas(cfg.schedule, cfg.steps)
        sampler = UniformSampler(cfg.steps)
        name = cfg.schedule
    else:
        betas = daed_betas(cfg.shortened_steps, cfg.beta1, cfg.schedule)
        sampler = daed_timestep_sampler(cfg)
        name = {"linear": "linear_combine (fresh linear schedule of T′ steps, β[0] := β_1)",
                "plain-linear": "plain linear schedule of T steps (β[0] its own)"}.get(cfg.schedule, cfg.schedule)
    process = {"schedule": name, "T": int(len(betas)), "beta_0": float(betas[0]), "beta_1": float(betas[1]),
               "beta_last": float(betas[-1])}
    if model == "daed":
        process["ddgm_steps"] = int(len(betas)) - 1
    return process, sampler


def _dae_loss_formula(prediction: str, loss: str) -> str:
    if prediction == "x0":
        return "MSE(x0, f(x1))"
    return "MSE(eps, eps_hat)" if loss == "simple" else "(T'-1)·MSE(x0, x0_hat(eps_hat))"


def feature_extractor(scale: str, progress: bool):
    """(extractor, note): the FID Inception at `paper` scale; else the cached LeNet of the scale's
    data set, trained (and cached) now if there is none — `smoke` trains a quick 1-epoch one that
    is not cached."""
    from genrep.errors import CheckpointError
    from genrep.metrics import get_extractor
    from genrep.metrics.features import load_lenet, train_lenet

    s = SCALES[scale]
    if s.features == "inception":
        return (get_extractor("inception", resize="torch"),  # the reference's pytorch-fid input path (§0.2)
                "Inception (FID port, 2048-d; pytorch-fid preprocessing: bilinear interpolate to 299, 2x − 1)")
    try:
        return load_lenet(s.dataset), f"LeNet[{s.dataset}] (cached)"
    except CheckpointError:
        quick = s.quick_lenet
        model, accuracy = train_lenet(s.dataset, epochs=1 if quick else None, save=not quick, progress=progress)
        return model, (f"LeNet[{s.dataset}] ({'quick 1-epoch, not cached' if quick else 'trained now'}, "
                       f"test accuracy {accuracy:.4f})")


def _device(scale: str) -> torch.device:
    if SCALES[scale].accelerator != "cpu" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@torch.no_grad()
def generate(run_dir: Path, n: int, seed: int, device: torch.device, *, batch_size: int = 500,
             progress: bool = False) -> torch.Tensor:
    """n images in [0, 1] (N×C×H×W, CPU) from a trained run, seeded; cached as uint8 in
    run_dir/eval_samples_n{n}_seed{seed}.npz (a retrained run gets a fresh folder)."""
    from genrep.data.transforms import rescale
    from genrep.experiments.train import load_trained_model

    path = run_dir / f"eval_samples_n{n}_seed{seed}.npz"
    if path.is_file():
        from genrep.utils.safe_load import load_arrays  # allow_pickle=False, errors name the file

        return torch.from_numpy(load_arrays(path)["images"]).float() / 255.0
    model = load_trained_model(run_dir).to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    chunks = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        x = model.sample(m, generator=generator, progress=progress)
        chunks.append(rescale(x.float().cpu(), model.value_range, (0.0, 1.0)).clamp_(0.0, 1.0))
    images = (torch.cat(chunks) * 255.0).round().to(torch.uint8)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, images=images.numpy())
    tmp.replace(path)
    return images.float() / 255.0


def metrics_of(f_real: torch.Tensor, f_fake: torch.Tensor, seed: int) -> dict[str, float]:
    """FID, PRD precision/recall (×100) and improved precision/recall (×100, k = 3)."""
    from genrep import metrics as M

    precision, recall = M.prd(real=f_real, fake=f_fake, seed=seed)
    ipr_p, ipr_r = M.improved_precision_recall(real=f_real, fake=f_fake, k=3)
    return {"fid": M.fid(f_real, f_fake), "precision": 100 * precision, "recall": 100 * recall,
            "ipr_precision": 100 * ipr_p, "ipr_recall": 100 * ipr_r}


def run(*, scale: str, seeds: int = 1, out: str | Path, progress: bool = True, log=print) -> dict[str, Any]:
    """Train and evaluate every row for seeds 0..seeds−1 into `out` (run folders and their samples
    are reused when the config matches); writes results.json and results.md there."""
    from genrep.data import load_dataset
    from genrep.experiments.evaluate import choose_real
    from genrep.runs import write_json

    check_scale(scale)
    out = check_inputs(scale=scale, seeds=seeds, out=out, datasets=[(SCALES[scale].dataset, {})])
    s = SCALES[scale]
    device = _device(scale)
    extractor, features_note = feature_extractor(scale, progress)
    extractor = extractor.to(device)
    log(f"features: {features_note}")
    test = load_dataset(s.dataset, "test")
    n = min(s.n_eval, len(test))
    values: dict[str, dict[str, list[float]]] = {key: {m: [] for m in METRIC_KEYS} for key, *_ in ROWS}
    timings: dict[str, float | None] = {}
    for seed in range(seeds):
        real = choose_real(test, n, seed)
        f_real = extractor.features(real.images, progress=progress)
        for key, model, beta1, loss in ROWS:
            run_dir = out / f"seed{seed}" / key
            T = diffusion_length(key, scale)
            log(f"[seed {seed}] {key}: training ({s.train_steps} steps, T={T}) → {run_dir}")
            started = time.perf_counter()
            summary = train_or_reuse(run_config(key, scale, seed, progress=progress), run_dir)
            timings[f"seed{seed}/{key}/train_s"] = summary.get("wall_time_s")
            sampled = time.perf_counter()
            fake = generate(run_dir, n, seed, device, progress=progress)
            timings[f"seed{seed}/{key}/sample_s"] = round(time.perf_counter() - sampled, 1)
            result = metrics_of(f_real, extractor.features(fake, progress=progress), seed)
            timings[f"seed{seed}/{key}/total_s"] = round(time.perf_counter() - started, 1)
            for metric, value in result.items():
                values[key][metric].append(value)
            log(f"[seed {seed}] {key}: " + ", ".join(f"{k}={v:.2f}" for k, v in result.items()))
    table = results_table(values, seeds, scale)
    footnote = footnote_of(scale, features_note, n)
    results = {"table": NAME, "scale": scale, "seeds": list(range(seeds)), "settings": dataclasses.asdict(s),
               "features": features_note, "n_eval": n,
               "T": {key: diffusion_length(key, scale) for key, *_ in ROWS}, "values": values,
               "published": PUBLISHED, "timings_s": timings}
    write_json(out / "results.json", results)
    (out / "results.md").write_text(f"# {TITLE}\n\nscale `{scale}`, seeds {list(range(seeds))}, {s.dataset}, "
                                    f"{n} samples vs the test split, features: {features_note}\n\n{table}\n\n"
                                    f"{footnote}\n")
    return {**results, "markdown": f"{table}\n\n{footnote}"}


def results_table(values: dict[str, dict[str, list[float]]], n_seeds: int, scale: str) -> str:
    features = "Inception" if SCALES[scale].features == "inception" else f"LeNet[{SCALES[scale].dataset}]"
    header = ["model", "loss", "T", f"FID ({features})", "Prec (PRD)", "Rec (PRD)", "IPR prec", "IPR rec"]
    rows = []
    for key, model, beta1, loss in ROWS:
        v, pub = values.get(key, {}), PUBLISHED[key]
        rows.append([LABELS["ddgm" if model == "ddgm" else beta1], LOSS_LABELS[loss],
                     f"{diffusion_length(key, scale)} [{pub['T']}]",
                     format_cell(mean_std(v.get("fid", [])), pub["fid"], n_seeds),
                     format_cell(mean_std(v.get("precision", [])), pub["precision"], n_seeds),
                     format_cell(mean_std(v.get("recall", [])), pub["recall"], n_seeds),
                     format_cell(mean_std(v.get("ipr_precision", [])), None, n_seeds),
                     format_cell(mean_std(v.get("ipr_recall", [])), None, n_seeds)])
    return markdown_table(header, rows)


def footnote_of(scale: str, features_note: str, n: int) -> str:
    s = SCALES[scale]
    text = (f"ours: mean ± std over seeds [published, thesis Table 5.7.1, FashionMNIST]. {n} generated images vs "
            f"{n} {s.dataset} test images. T: our T (DDGM) or T′ (DAED, rule '{s.steps_rule}') [published]. "
            "Prec/Rec: PRD (Sajjadi et al.) ×100, the thesis' metric; IPR: improved precision/recall (k=3) ×100, "
            "no published value. ")
    if s.features != "inception":
        text += (f"FID here uses {features_note} features, not the Inception features of the published numbers "
                 "(Inception is too slow on this CPU): the values are on another scale; compare rankings only. ")
    if s.dataset != "fashion_mnist":
        text += f"This scale trains on {s.dataset}, not FashionMNIST: a pipeline check, not a reproduction."
    return text.strip()
