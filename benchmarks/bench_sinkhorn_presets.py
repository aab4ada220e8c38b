"""Sinkhorn settings of the e2e SAE at the demo's budget: quality (LeNet FID, PRD) against train time.

    python benchmarks/bench_sinkhorn_presets.py [--models e2e-sae ce2e-sae] [--baselines vae cvae]
        [--seeds 0 1 2] [--settings "ref:0.05,0.95,0.01" "s95:0.05,0.95,none" ...]
        [--set condition_scale=3] [--out /tmp/sk]
    python benchmarks/bench_sinkhorn_presets.py --convergence     # solver error and time per setting

Each setting is NAME:BLUR,SCALING,DIAMETER (diameter `none`: geomloss measures the clouds and
anneals ε from their diameter down to blur², i.e. the converged divergence). Every model is trained
with `genrep demo`'s settings (digits, 2,000 Adam steps, batch 128, lr 2e-3) and scored as the demo
scores it; the baselines are trained once per seed. One line per (setting, model, seed) goes to stdout as a Markdown table row.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import yaml

from genrep.experiments.demo import digit_classifier, digits_lenet, train_and_score

DEFAULT_SETTINGS = ("reference:0.05,0.95,0.01", "s0.95:0.05,0.95,none", "s0.9:0.05,0.9,none",
                    "s0.8:0.05,0.8,none", "s0.7:0.05,0.7,none", "s0.5:0.05,0.5,none")


def parse_setting(text: str) -> tuple[str, dict]:
    name, values = text.split(":")
    blur, scaling, diameter = values.split(",")
    return name, {"sinkhorn_preset": "thesis", "sinkhorn_blur": float(blur), "sinkhorn_scaling": float(scaling),
                  "sinkhorn_diameter": None if diameter.lower() == "none" else float(diameter)}


def convergence(settings: list[str], batch: int = 128, dim: int = 16) -> None:
    """Per setting: time of one forward + backward of S_ε on two batch×dim clouds (spread 0.5, 2, 5:
    the range of latent scales), its relative error against the exact ½W₂² (POT's network simplex;
    at blur 0.05 the entropic bias is far below these errors), and the cosine between its gradient
    and that of a nearly exact solve (scaling 0.995): the direction the encoder is pushed in."""
    import time

    import ot
    import torch

    from genrep.models.sae_losses import sinkhorn_loss

    print(f"| setting | cloud spread | S_ε − ½W₂² (relative) | gradient cosine | fwd+bwd (ms, "
          f"{torch.get_num_threads()} threads) |")
    print("|---|---|---|---|---|")
    for spread in (0.5, 2.0, 5.0):
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(batch, dim, generator=gen) * spread
        b = torch.randn(batch, dim, generator=gen) * spread * 1.2 + 0.3 * spread
        weights = torch.full((batch,), 1.0 / batch, dtype=torch.float64)
        exact = float(ot.emd2(weights, weights, 0.5 * torch.cdist(a.double(), b.double()) ** 2))
        x = a.clone().requires_grad_(True)
        sinkhorn_loss(0.05, 0.995, None)(x, b).backward()
        accurate_grad = x.grad.flatten()
        for text in settings:
            loss = sinkhorn_loss(*(parse_setting(text)[1][k] for k in ("sinkhorn_blur", "sinkhorn_scaling",
                                                                        "sinkhorn_diameter")))
            x = a.clone().requires_grad_(True)
            start = time.perf_counter()
            for _ in range(5):
                value = loss(x, b)
                value.backward()
            ms = (time.perf_counter() - start) / 5 * 1e3
            cosine = float(torch.nn.functional.cosine_similarity(x.grad.flatten(), accurate_grad, dim=0))
            print(f"| {text} | {spread} | {(float(value.detach()) - exact) / exact:+.2%} | {cosine:.3f} | {ms:.1f} |",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["e2e-sae", "ce2e-sae"])
    parser.add_argument("--baselines", nargs="*", default=["vae", "cvae"], help="trained once, for comparison")
    parser.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", nargs="*", default=[], dest="extra", metavar="KEY=VALUE",
                        help="extra model settings for the e2e models, e.g. condition_scale=3")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--out", default="/tmp/bench_sinkhorn_presets")
    parser.add_argument("--convergence", action="store_true",
                        help="only time each setting and compare it with the exact ½W₂² on synthetic clouds")
    args = parser.parse_args()
    if args.convergence:
        return convergence(args.settings)
    clf, _ = digit_classifier()
    lenet = digits_lenet(progress=False)
    print("| setting | model | seed | FID (LeNet) | PRD precision | PRD recall | classes covered | train time (s) |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    extra = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.extra)}
    cells = [("–", model, {}) for model in args.baselines]
    for text in args.settings:
        name, overrides = parse_setting(text)
        cells += [(text, model, {**overrides, **extra}) for model in args.models]
    for seed in args.seeds:
        for text, model, overrides in cells:
            run = Path(args.out) / f"{text.split(':')[0]}_{model}_seed{seed}"
            shutil.rmtree(run, ignore_errors=True)
            row, _, _ = train_and_score(model, run, steps=args.steps, seed=seed, classifier=clf, lenet=lenet,
                                        model_overrides=overrides)
            print(f"| {text} {' '.join(args.extra) if overrides else ''} | {model} | {seed} | {row['fid']:.1f} |"
                  f" {row['prd_precision']:.3f} | {row['prd_recall']:.3f} | {row['classes_covered']} |"
                  f" {row['train_time_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
