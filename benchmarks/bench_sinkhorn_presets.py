"""Sinkhorn settings of the e2e SAE at the demo's budget: quality (LeNet FID, PRD) against train time.

    python benchmarks/bench_sinkhorn_presets.py [--models e2e-sae ce2e-sae] [--baselines vae cvae]
        [--seeds 0 1 2] [--settings "ref:0.05,0.95,0.01" "s95:0.05,0.95,none" ...]
        [--set condition_scale=3] [--out /tmp/sk]

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
    args = parser.parse_args()
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
