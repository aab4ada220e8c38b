"""How large genrep's LeNet FID is for real and for slightly blurred MNIST, per split-MNIST task: the scale that
the chapter-9 FIDs (VAE samples are blurry) must be read against.

For each class-incremental task: FID and PRD of 1000 training images against 1000 test images (the floor), and
FID of the same training images after a 3×3 box blur.

    python benchmarks/probe_lenet_fid_scale.py      # needs the cached MNIST LeNet (genrep features train --dataset mnist)
"""

from __future__ import annotations

import torch

from genrep.continual.scenarios import build_scenario
from genrep.metrics.features.registry import get_extractor
from genrep.metrics.frechet import fid
from genrep.metrics.prd_curves import prd


def main() -> None:
    torch.manual_seed(0)
    lenet = get_extractor("lenet", dataset="mnist")
    for task in build_scenario("split-mnist", limit=2000):
        real, train = task.test.images[:1000], task.train.images[:1000]
        with torch.no_grad():
            f_real, f_train = lenet(real), lenet(train)
            f_blur = lenet(torch.nn.functional.avg_pool2d(train, 3, 1, 1))
        precision, recall = prd(real=f_real, fake=f_train)
        print(f"{task.name}: train vs test FID {fid(f_real, f_train):.1f} (precision {100 * precision:.1f}, recall "
              f"{100 * recall:.1f}); 3x3-blurred train vs test FID {fid(f_real, f_blur):.1f}")


if __name__ == "__main__":
    main()
