"""Helper for tests/continual/test_continual_ddp.py: generator learners data parallel on 2 CPU processes.

Run as `python tests/continual_generator_ddp_worker.py OUT METHOD`; Fabric's launcher re-executes it for
rank 1. Each rank learns the first two tasks of split-digits with METHOD's smoke settings (4 epochs) and
writes OUT/rank{r}.pt with the learner's state.
"""

import sys
from pathlib import Path

import torch

from genrep.continual.registry import get_learner
from genrep.continual.scenarios import build_scenario
from genrep.experiments.continual import learner_settings
from genrep.training.fabric import launch_processes


def main(out: Path, method: str) -> None:
    fabric = launch_processes(devices=2)
    scenario = build_scenario("split-digits", seed=0)
    learner = get_learner(method).factory(learner_settings(method, "smoke", {"epochs": 4}))
    learner.setup(scenario)
    for task in scenario.tasks[:2]:
        learner.begin_task(task)
        learner.learn(task)
        learner.end_task(task)
    torch.save({"state": learner.state_dict(), "sample": learner.sample(6, 1)}, out / f"rank{fabric.global_rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
