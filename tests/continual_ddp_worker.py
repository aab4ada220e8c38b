"""Helper for tests/continual/test_continual_ddp.py: `fit_classifier` data parallel on 2 CPU processes.

Run as `python tests/continual_ddp_worker.py OUT`; Fabric's launcher re-executes it for rank 1.
Rank 0 first trains a copy in one process (the reference, `distributed.world` seen as (0, 1)), then
both ranks train the same start data parallel; each rank writes OUT/rank{r}.pt with its weights,
rank 0 also the reference's.
"""

import copy
import sys
from pathlib import Path

import torch

from genrep.continual import classifier as C
from genrep.continual import distributed
from genrep.training.fabric import launch_processes


def train(model, images, labels, buffer_x, buffer_y):
    generator = torch.Generator().manual_seed(3)
    replay_generator = torch.Generator().manual_seed(4)

    def replay(n):
        rows = torch.randperm(len(buffer_x), generator=replay_generator)[: n // 2 + 1]
        return buffer_x[rows], buffer_y[rows]

    weights = torch.linspace(0.5, 1.5, len(images))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    return C.fit_classifier(model, images, labels, epochs=2, batch_size=15, generator=generator, replay=replay,
                            replay_ratio=0.3, replay_temperature=2.0, weights=weights, active_classes=[0, 1, 2, 3],
                            optimizer=optimizer, loss="ce")


def main(out: Path) -> None:
    fabric = launch_processes(devices=2)
    data = torch.Generator().manual_seed(0)
    images, labels = torch.rand(47, 1, 8, 8, generator=data), torch.randint(0, 2, (47,), generator=data)
    buffer_x = torch.rand(20, 1, 8, 8, generator=data)
    buffer_y = torch.softmax(torch.randn(20, 10, generator=data), 1) * 0
    buffer_y[:, :4] = torch.softmax(torch.randn(20, 4, generator=data), 1)
    torch.manual_seed(0)
    start = C.build_classifier("mlp", (1, 8, 8), 10)
    state = {}
    if fabric.global_rank == 0:
        world = distributed.world
        distributed.world = lambda: (0, 1)
        try:
            reference = copy.deepcopy(start)
            state["reference_history"] = train(reference, images, labels, buffer_x, buffer_y)
            state["reference"] = reference.state_dict()
        finally:
            distributed.world = world
    model = copy.deepcopy(start)
    state["history"] = train(model, images, labels, buffer_x, buffer_y)
    state["model"] = model.state_dict()
    torch.save(state, out / f"rank{fabric.global_rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
