"""What decides BinPlay's accuracy: the greedy code assignment (Alg. 2) or the decoder's budget?

Part A (alignment): the autoencoder phase alone at the reference schedule (width 32, 20 epochs, 3
warm-up, assignment weight 10, real-valued z) on the first split-MNIST task, then the share of the
bits of sign(z) equal to the code each sample is assigned (`bit_agreement`), against the same greedy
pass run on Gaussian-noise embeddings (no images at all) and, with --pull-off, against assignment
weight 0 (the pull term off: z is trained by the reconstruction only).

Part B (what moves the accuracy): BinPlay on split-digits at `smoke` scale (as `genrep continual binplay
--scenario split-digits --scale smoke` runs it), seeds 0..S−1, with the pull term on (weight 10) and off
(0), and with the decoder's epochs tripled or its width doubled.

    OMP_NUM_THREADS=1 python benchmarks/probe_binplay_assignment.py [--images 1000] [--pull-off] [--seeds 3]
        [--part A|B|AB]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from genrep.continual.binplay.assignment import bit_agreement, greedy_assign
from genrep.continual.codes import binary_codes
from genrep.continual.runner import run_scenario
from genrep.continual.scenarios import build_scenario
from genrep.experiments.continual import TRAIN_LIMIT, build_learner, method_settings

REFERENCE_AE = {"width": 32, "ae_epochs": 20, "warmup_epochs": 3, "assignment_weight": 10.0,
                "decoder_epochs": 0, "classifier_epochs": 0}
VARIANTS = {
    "smoke recipe (weight 10)": {},
    "pull term off (weight 0)": {"assignment_weight": 0.0},
    "decoder epochs ×3 (120)": {"decoder_epochs": 120},
    "decoder width ×2 (16)": {"width": 16},
}


def part_a(images: int, pull_off: bool, seed: int = 0) -> list[tuple[str, float, float]]:
    """(variant, bit agreement, seconds) for the reference autoencoder (and with the pull term off) and
    the noise baseline (mean over 3 noise draws)."""
    scenario = build_scenario("split-mnist", seed=seed, limit=images)
    task = scenario.tasks[0]
    rows = []
    variants = [("reference AE, weight 10", 10.0)] + ([("reference AE, weight 0 (pull off)", 0.0)] if pull_off else [])
    for name, weight in variants:
        learner = build_learner("binplay", seed=seed, overrides={**REFERENCE_AE, "assignment_weight": weight})
        learner.setup(scenario)
        started = time.perf_counter()
        learner.learn(task)
        rows.append((name, learner.assignment_agreement[-1], time.perf_counter() - started))
        print(rows[-1], flush=True)
    n = len(task.train)
    codes = binary_codes(torch.arange(n), 200)
    noise = [torch.randn(n, codes.shape[1], generator=torch.Generator().manual_seed(s)) for s in range(3)]
    agreement = statistics.mean(bit_agreement(z, codes[greedy_assign(z, codes)]) for z in noise)
    rows.append(("Gaussian-noise z, same greedy pass (3 draws)", agreement, 0.0))
    print(rows[-1], flush=True)
    return rows


def part_b(seeds: int) -> list[tuple[str, list[float], float]]:
    """(variant, average accuracy % per seed, mean seconds per run) on split-digits at `smoke` scale."""
    rows = []
    for name, change in VARIANTS.items():
        accuracies, seconds = [], []
        for seed in range(seeds):
            scenario = build_scenario("split-digits", seed=seed, limit=TRAIN_LIMIT["smoke"])
            learner = build_learner("binplay", seed=seed, overrides={**method_settings("binplay", "smoke"), **change})
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as out:
                result = run_scenario(learner, scenario, out, progress=False, log=None)
            seconds.append(time.perf_counter() - started)
            accuracies.append(100 * result.summary["accuracy"]["average"])
        rows.append((name, accuracies, statistics.mean(seconds)))
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000, help="images of split-MNIST task {0,1} in part A")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of part B")
    parser.add_argument("--part", default="AB", choices=("A", "B", "AB"))
    parser.add_argument("--pull-off", action="store_true", help="part A: also train with assignment weight 0")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if "A" in args.part:
        rows = part_a(args.images, args.pull_off)
        print(f"\nPart A: split-MNIST task {{0,1}}, {args.images} images, 200-bit codes\n")
        print("| embeddings | bits of sign(z) equal to the assigned code | s |\n|---|---|---|")
        for name, agreement, seconds in rows:
            print(f"| {name} | {agreement:.3f} | {seconds:.0f} |")
    if "B" in args.part:
        rows = part_b(args.seeds)
        print(f"\nPart B: split-digits, `smoke` BinPlay, seeds 0..{args.seeds - 1}\n")
        print("| variant | average accuracy % (mean ± SEM) | per seed | s per run |\n|---|---|---|---|")
        for name, accuracies, seconds in rows:
            sem = statistics.stdev(accuracies) / len(accuracies) ** 0.5 if len(accuracies) > 1 else 0.0
            print(f"| {name} | {statistics.mean(accuracies):.1f} ± {sem:.1f} | "
                  f"{', '.join(f'{a:.1f}' for a in accuracies)} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
