"""Sinkhorn settings of the e2e SAE at the demo's budget: quality (LeNet FID, PRD) against train time.

    python benchmarks/bench_sinkhorn_presets.py [--models e2e-sae ce2e-sae] [--seed 0] [--out /tmp/sk]
        [--settings "ref:0.05,0.95,0.01" "s95:0.05,0.95,none" ...]

Each setting is NAME:BLUR,SCALING,DIAMETER (diameter `none`: geomloss measures the clouds and
anneals ε from their diameter down to blur², i.e. the converged divergence). Every model is trained
with `genrep demo`'s settings (digits, 2,000 Adam steps, batch 128, lr 2e-3) and scored as the demo
scores it; one line per (setting, model) goes to stdout as a Markdown table row.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

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
    parser.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--out", default="/tmp/bench_sinkhorn_presets")
    args = parser.parse_args()
    clf, _ = digit_classifier()
    lenet = digits_lenet(progress=False)
    print("| setting | model | FID (LeNet) | PRD precision | PRD recall | classes covered | train time (s) |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for text in args.settings:
        name, overrides = parse_setting(text)
        for model in args.models:
            run = Path(args.out) / f"{name}_{model}"
            shutil.rmtree(run, ignore_errors=True)
            row, _, _ = train_and_score(model, run, steps=args.steps, seed=args.seed, classifier=clf, lenet=lenet,
                                        model_overrides=overrides)
            print(f"| {name} ({text.split(':')[1]}) | {model} | {row['fid']:.1f} | {row['prd_precision']:.3f} |"
                  f" {row['prd_recall']:.3f} | {row['classes_covered']} | {row['train_time_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
