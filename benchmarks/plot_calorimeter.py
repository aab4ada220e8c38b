"""Picture of the synthetic ZDC simulator for docs/calorimeter.md.

    python benchmarks/plot_calorimeter.py [--out docs/images/calorimeter_examples.png]

Left: one shower per particle type (rows) and energy (columns), centred impacts, log(1+counts)
on a shared colour scale. Right: the centre of the mean of 200 photon showers on a linear scale
(the checkerboard of tower and common-PMT fibres), and the five channel distributions of 20,000
sampled particles.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from genrep.data import calorimeter as zdc  # noqa: E402

KINDS = ("photon", "electron", "neutron", "proton", "pi+")
ENERGIES = (10.0, 100.0, 1000.0)


def example_particles() -> torch.Tensor:
    """One particle per (kind, energy), flying straight along z from the origin: (15, 9)."""
    table = {name: (mass, charge) for name, mass, charge, _ in zdc.PARTICLES}
    rows = []
    for kind in KINDS:
        mass, charge = table[kind]
        for energy in ENERGIES:
            rows.append([energy, 0, 0, 0, 0, 0, (energy**2 - mass**2) ** 0.5, mass, charge])
    return torch.tensor(rows, dtype=torch.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images/calorimeter_examples.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    showers = torch.log1p(zdc.simulate_showers(example_particles(), seed=args.seed)).numpy()
    particles = zdc.sample_particles(20_000, seed=args.seed)
    channels = zdc.channel_sums(zdc.simulate_showers(particles, seed=args.seed)).numpy()

    fig = plt.figure(figsize=(9.5, 6.2), dpi=80)
    grid = fig.add_gridspec(len(KINDS), len(ENERGIES) + 3, wspace=0.08, hspace=0.12)
    vmax = showers.max()
    for r, kind in enumerate(KINDS):
        for c, energy in enumerate(ENERGIES):
            ax = fig.add_subplot(grid[r, c])
            image = ax.imshow(showers[r * len(ENERGIES) + c], cmap="magma", vmin=0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{energy:g} GeV", fontsize=9)
            if c == 0:
                ax.set_ylabel(kind, fontsize=9)
    fig.colorbar(image, ax=fig.axes, location="left", shrink=0.6, pad=0.08,
                 label="log(1 + photo-electrons)")

    photon = example_particles()[len(ENERGIES) - 1 : len(ENERGIES)].expand(200, -1)
    mean = zdc.simulate_showers(photon, seed=args.seed).mean(0)[14:30, 14:30].numpy()
    ax = fig.add_subplot(grid[0:2, len(ENERGIES) + 1 :])
    ax.imshow(mean, cmap="magma")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("mean of 200 1000-GeV photons, centre\n16×16 fibres, linear scale: checkerboard",
                 fontsize=9)

    ax = fig.add_subplot(grid[2:5, len(ENERGIES) + 1 :])
    bins = np.linspace(0, np.log1p(channels.max()), 40)
    for k, name in enumerate(zdc.CHANNEL_NAMES):
        ax.hist(np.log1p(channels[:, k]), bins=bins, histtype="step", lw=1.3, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("log(1 + channel sum)", fontsize=9)
    ax.set_ylabel("responses", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8, title="20,000 sampled\nparticles", title_fontsize=8)
    fig.savefig(args.out, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
