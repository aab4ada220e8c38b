"""One cell of Table 4.3.1 with changed settings: what moves a baseline's score at `cpu` scale.

    python benchmarks/probe_table_4_3_1_cell.py cvae --dataset mnist --set train.steps=8000 \\
        --set model.likelihood=gaussian [--seed 0] [--scale cpu] [--out /tmp/probe_4_3_1]

Trains the cell's run config (`genrep reproduce table-4.3.1`'s, overridden by each `--set a.b=v`,
values parsed as YAML) and evaluates it exactly as the table does (MNIST: LeNet FID and Sinkhorn on
10,000 test images vs samples for the test labels; calorimeter: channel MAE and Wasserstein). Prints
one Markdown row: the overrides, the metrics, the train time and steps/s.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import yaml

from genrep.experiments.reproduce import table_4_3_1 as table
from genrep.experiments.run_config import run_config_from_dict
from genrep.experiments.train import train_run


def apply(config: dict, assignment: str) -> None:
    key, value = assignment.split("=", 1)
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = yaml.safe_load(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=table.MODELS)
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "calorimeter"))
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", default="cpu")
    parser.add_argument("--out", default="/tmp/probe_4_3_1")
    args = parser.parse_args()
    config = table.run_config(args.model, args.dataset, args.scale, args.seed)
    for assignment in args.overrides:
        apply(config, assignment)
    run_dir = Path(args.out) / "_".join([args.model, args.dataset, f"seed{args.seed}", *args.overrides]).replace("/", "-")
    shutil.rmtree(run_dir, ignore_errors=True)
    summary = train_run(run_config_from_dict(config), run_dir)
    lenet, _ = table.lenet_for_mnist(args.scale, progress=False)
    metrics = table._evaluate_run(args.dataset, run_dir, lenet, table.SCALES[args.scale].n_eval[args.dataset],
                                  args.seed, progress=False)
    steps = config["train"]["steps"]
    print(f"| {args.model} | {args.dataset} | {' '.join(args.overrides) or '(cpu recipe)'} | "
          + " | ".join(f"{k}={v:.2f}" for k, v in metrics.items())
          + f" | {summary['wall_time_s']:.0f} s | {steps / summary['wall_time_s']:.1f} steps/s |", flush=True)


if __name__ == "__main__":
    main()
