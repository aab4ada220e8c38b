"""Sharded sampling throughput and the cost of sharded evaluation, 1 vs N processes (issue 17).

Trains two smoke-size runs (the e2e Sinkhorn autoencoder on the synthetic calorimeter data, 44×44,
and a DDGM on digits, 8×8, T = 100, ancestral sampling), then times whole commands, as a user runs them:

- `genrep sample RUN -n N --out DIR --devices D` for D = 1 and 2: images/s over the whole command, and
  net of the start-up (the same command for one shard of the smallest size, subtracted);
- `genrep evaluate --real calorimeter --fake DIR --n 1000 --features inception --metrics fid,prd,ipr
  --devices D` on the e2e SAE's shard folder: wall time, and that the numbers agree.

    python benchmarks/bench_distributed.py [--devices 2] [--out /tmp/bench_distributed]

Each command runs with OMP_NUM_THREADS = cores / D (so D processes use the same cores as one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

LAUNCH_ENV_KEYS = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "LOCAL_WORLD_SIZE")


def genrep(*argv, threads: int) -> float:
    """Run `python -m genrep ARGV` with `threads` OpenMP threads per process; its wall time in seconds."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV_KEYS}
    env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "genrep", *map(str, argv)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"genrep {' '.join(map(str, argv))} failed:\n{done.stderr[-3000:]}")
    return wall


def sampling(run: Path, n: int, shard: int, devices: int, out: Path, cores: int) -> dict:
    """Wall time of sampling n images (and of one small shard, the start-up) with `devices` processes."""
    threads = max(cores // devices, 1)
    shutil.rmtree(out, ignore_errors=True)
    startup = genrep("sample", run, "-n", devices, "--shard-size", 1, "--out", out / "startup", "--devices", devices,
                     "--no-progress", threads=threads)
    wall = genrep("sample", run, "-n", n, "--shard-size", shard, "--out", out / "all", "--devices", devices,
                  "--no-progress", threads=threads)
    return {"devices": devices, "threads_per_process": threads, "n": n, "shard_size": shard, "wall_s": round(wall, 2),
            "startup_s": round(startup, 2), "images_per_s": round(n / wall, 1),
            "images_per_s_net": round(n / max(wall - startup, 1e-9), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--out", default="/tmp/bench_distributed")
    parser.add_argument("--eval-n", type=int, default=1000)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    runs = {"e2e-sae": (out / "e2e-sae", ["--dataset", "calorimeter", "--steps", "20"], 20000, 1000),
            "ddgm": (out / "ddgm", ["--dataset", "digits", "--set", "model.steps=100", "--steps", "5"], 200, 50)}
    results: dict = {"cores": cores, "sampling": {}, "evaluation": {}}
    for name, (run, options, n, shard) in runs.items():
        if not (run / "model.safetensors").is_file():
            genrep("train", name, *options, "--out", run, "--overwrite", "--no-progress", threads=cores)
        results["sampling"][name] = [sampling(run, n, shard, d, out / f"{name}-samples-{d}", cores)
                                     for d in (1, args.devices)]
        print(json.dumps({name: results["sampling"][name]}), flush=True)

    shards = out / "e2e-sae-samples-1" / "all"
    metrics = {}
    for devices in (1, args.devices):
        report = out / f"eval-{devices}.json"
        wall = genrep("evaluate", "--real", "calorimeter", "--fake", shards, "--n", args.eval_n,
                      "--features", "inception", "--metrics", "fid,prd,ipr", "--devices", devices, "--no-progress",
                      "-o", report, threads=max(cores // devices, 1))
        metrics[devices] = json.loads(report.read_text())
        results["evaluation"][devices] = {"wall_s": round(wall, 2), "fid": metrics[devices]["fid"],
                                          "prd_precision": metrics[devices]["prd_precision"],
                                          "precision": metrics[devices]["precision"]}
        print(json.dumps({"evaluate": {devices: results["evaluation"][devices]}}), flush=True)
    one, many = metrics[1], metrics[args.devices]
    results["evaluation"]["fid_relative_difference"] = abs(many["fid"] - one["fid"]) / one["fid"]
    results["evaluation"]["other_metrics_equal"] = all(one[k] == many[k] for k in one if k != "fid")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
