"""The latent-space picture of Fig. 9.3.4: where each learned task's band lies in the global latent z.

For every learned task k, `per_task` draws λ ~ N(0, I), b ~ prior_k are mapped to z = conditioner(λ, b, k) (the
translator for Multiband VAE; [λ, b, code] without one) and all z are projected on their two principal
components; one colour per task. Beside it, one row of decoded samples per task.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from genrep.continual.scenario import Scenario  # noqa: E402
from genrep.utils.plots import save_figure  # noqa: E402

LATENT_PICTURE = "latent_z.png"


def task_latents(learner, per_task: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, task) for `per_task` prior draws of every learned task (the shared generative part)."""
    model = learner.generatives[0]
    generator = torch.Generator().manual_seed(seed)
    tasks = torch.arange(learner.tasks_learned).repeat_interleave(per_task)
    lam = torch.randn(len(tasks), model.latent, generator=generator)
    uniform = torch.rand(len(tasks), model.bits, generator=generator)
    device = model.bit_prior.device
    with torch.no_grad():
        z = model.conditioner(lam.to(device), model.prior_bits(tasks.to(device), uniform), tasks.to(device))
    return z.cpu(), tasks


def latent_picture(learner, scenario: Scenario, folder: str | Path, per_task: int = 300) -> Path:
    """folder/latent_z.png: the 2-D principal-component view of z per task, and samples per task."""
    z, tasks = task_latents(learner, per_task)
    centred = z - z.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    xy = centred @ v[:2].T if v.shape[0] >= 2 else torch.cat([centred, torch.zeros_like(centred)], 1)
    fig, (ax, grid) = plt.subplots(1, 2, figsize=(11, 4.8), dpi=110, gridspec_kw={"width_ratios": [1.2, 1]})
    for k in range(learner.tasks_learned):
        rows = tasks == k
        ax.scatter(xy[rows, 0], xy[rows, 1], s=4, alpha=0.5, color=f"C{k % 10}", label=scenario[k].name)
    ax.set_xlabel("z: principal component 1")
    ax.set_ylabel("z: principal component 2")
    ax.legend(fontsize=7, markerscale=3, loc="best")
    ax.set_title(f"global latent z of {type(learner).__name__} per task ({per_task} prior draws)", fontsize=9)
    torch.manual_seed(0)
    samples = torch.cat([learner.sample(8, k) for k in range(learner.tasks_learned)])
    low, high = scenario.value_range
    images = ((samples - low) / (high - low)).clamp(0, 1)
    c, h, w = images.shape[1:]
    canvas = images.view(learner.tasks_learned, 8, c, h, w).permute(0, 3, 1, 4, 2).reshape(
        learner.tasks_learned * h, 8 * w, c)
    grid.imshow(canvas.squeeze(-1).numpy(), cmap="gray" if c == 1 else None, vmin=0, vmax=1)
    grid.set_yticks([h * (k + 0.5) for k in range(learner.tasks_learned)],
                    [scenario[k].name for k in range(learner.tasks_learned)], fontsize=7)
    grid.set_xticks([])
    grid.set_title("samples per task (rows)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, Path(folder) / LATENT_PICTURE)
