"""Run the cells of the chapter-9 tables (9.4.1, 9.4.4, 9.4.2) in several processes that share one folder: each
worker claims the next unclaimed cell (an O_EXCL claim file), so `--workers` processes fill the table in priority
order; `genrep reproduce table-9.4.x --scale S --seeds N` afterwards reuses the finished cells and writes the
tables.

    OMP_NUM_THREADS=1 python benchmarks/run_ch9_cells.py --scale cpu --seeds 3 &   # once per core
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from genrep.experiments.reproduce import table_9_4_1, table_9_4_2, table_9_4_4
from genrep.experiments.reproduce.multiband_cells import SHARED_RUNS, run_cell


FIRST = ("si-vae-split-mnist", "ewc-vae-split-mnist", "gr-vae-split-mnist", "multiband-split-mnist",
         "gr-vae-dirichlet-mnist", "multiband-dirichlet-mnist", "si-vae-dirichlet-mnist", "ewc-vae-dirichlet-mnist",
         "gr-vae-calorimeter-energy", "multiband-calorimeter-energy", "separate-vae-calorimeter-energy",
         "ablation-two-step-dirichlet-mnist", "ablation-translator-dirichlet-mnist", "ablation-binary-dirichlet-mnist",
         "gr-vae-split-fashion-mnist", "multiband-split-fashion-mnist", "multiband-warm-split-mnist",
         "gr-vae-dirichlet-fashion-mnist", "multiband-dirichlet-fashion-mnist", "multiband-warm-dirichlet-mnist",
         "multiband-conv-dirichlet-mnist")


def priority_cells(scale: str) -> list:
    """The cells of the three tables, those named in `FIRST` first (in that order: the comparisons the issue asks
    for before the rest), then every other cell of Table 9.4.1, the ablation and Table 9.4.2."""
    cells = list(table_9_4_1.table_cells(scale, table_9_4_1.SCALES[scale]).values())
    cells += list(table_9_4_4.ablation_cells(table_9_4_4.SCALES[scale]).values())
    cells += [table_9_4_2.column_cell(row, column) for column in table_9_4_2.SCALES[scale] for row in table_9_4_2.ROWS]
    unique = list({c.key: c for c in cells}.values())
    rank = {key: i for i, key in enumerate(FIRST)}
    return sorted(unique, key=lambda c: rank.get(c.key, len(rank)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", default="cpu")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default=None)
    p.add_argument("--only", default=None, help="comma-separated cell keys (default: all, in priority order)")
    args = p.parse_args()
    out = Path(args.out or f"runs/reproduce/{SHARED_RUNS}-{args.scale}")
    claims = out / ".claims"
    claims.mkdir(parents=True, exist_ok=True)
    cells = priority_cells(args.scale)
    if args.only:
        wanted = args.only.split(",")
        cells = [c for c in cells if c.key in wanted]
    for c in cells:
        try:
            os.close(os.open(claims / c.key, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        run_cell(c, scale=args.scale, seeds=args.seeds, out=out, progress=False,
                 log=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
