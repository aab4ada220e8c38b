"""Pictures of the diffusion analyses (thesis Fig. 5.5.1, 5.5.2, 5.7.1): log-SNR and its per-step
change against the fraction of steps, and reconstruction error against the step. Matplotlib, Agg."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"linear": "tab:blue", "cosine": "tab:orange"}


def plot_snr(curves: dict[str, dict[str, np.ndarray]], out: str | Path, *, title: str = "") -> Path:
    """Two panels, x = fraction of steps: (left) averaged log-SNR ± its std over images, the 0 line
    and the crossing point of each schedule; (right) the per-step drop −Δ log-SNR on a log axis, with
    the first 10% of the steps shaded. `curves`: schedule name → `snr_curve` dict."""
    from genrep.analysis.snr import crossing_fraction

    fig, (ax_snr, ax_d) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    for i, (name, c) in enumerate(curves.items()):
        color = COLORS.get(name, f"C{i + 2}")
        f, y, s = c["fraction_of_steps"], c["log_snr"], c["log_snr_std"]
        ax_snr.plot(f, y, color=color, lw=1.8, label=f"{name} schedule")
        ax_snr.fill_between(f, y - s, y + s, color=color, alpha=0.2, lw=0)
        cross = crossing_fraction(c)
        if cross is not None:
            ax_snr.axvline(cross, color=color, ls=":", lw=1)
            ax_snr.annotate(f"log-SNR < 0 after {100 * cross:.1f}%", (cross, 0), xytext=(6, 8 + 16 * i),
                            textcoords="offset points", color=color, fontsize=9,
                            bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
        drop = -c["dlog_snr"]
        ax_d.plot(f[1:], drop[1:], color=color, lw=1.5, label=f"{name} schedule")
    ax_snr.axhline(0, color="black", lw=0.8)
    ax_snr.set_xlabel("fraction of diffusion steps ((t+1) / T)")
    ax_snr.set_ylabel("log SNR(x₀, t)  (natural log)")
    ax_snr.set_title("Log-SNR averaged over the data (band: ±1 std over images)", fontsize=10)
    ax_snr.set_xlim(0, 1)
    ax_snr.grid(alpha=0.3)
    ax_snr.legend(loc="upper right", fontsize=9)
    ax_d.axvspan(0, 0.1, color="grey", alpha=0.15, lw=0, label="first 10% of steps")
    ax_d.set_yscale("log")
    ax_d.set_xlabel("fraction of diffusion steps ((t+1) / T)")
    ax_d.set_ylabel("−Δ log SNR = log SNR(t−1) − log SNR(t)")
    ax_d.set_title("Drop of log-SNR per step (log scale)", fontsize=10)
    ax_d.set_xlim(0, 1)
    ax_d.grid(alpha=0.3, which="both")
    ax_d.legend(loc="upper center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)


def plot_reconstruction(curves: dict[str, dict[str, np.ndarray]], out: str | Path, *, title: str = "",
                        method: str = "") -> Path:
    """Two panels against the fraction of steps: MAE and MS-SSIM between x0 and its reconstruction
    from x_t, one line per evaluated data set, shaded 95% confidence intervals of the mean.
    `curves`: label → `reconstruction_curve` dict. A data set without MS-SSIM (images < 11 px) is
    noted in the right panel."""
    fig, (ax_mae, ax_ms) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    missing = []
    for i, (label, c) in enumerate(curves.items()):
        color = f"C{i}"
        f = c["fraction_of_steps"]
        ax_mae.plot(f, c["mae"], "o-", color=color, ms=3, lw=1.6, label=label)
        ax_mae.fill_between(f, c["mae"] - c["mae_ci95"], c["mae"] + c["mae_ci95"], color=color, alpha=0.2, lw=0)
        if np.isnan(c["ms_ssim"]).all():
            missing.append(label)
            continue
        ax_ms.plot(f, c["ms_ssim"], "o-", color=color, ms=3, lw=1.6, label=label)
        ax_ms.fill_between(f, c["ms_ssim"] - c["ms_ssim_ci95"], c["ms_ssim"] + c["ms_ssim_ci95"], color=color,
                           alpha=0.2, lw=0)
    for ax in (ax_mae, ax_ms):
        ax.set_xlabel("fraction of diffusion steps of x_t ((t+1) / T)")
        ax.grid(alpha=0.3)
    ax_mae.set_ylabel("MAE (pixels in [-1, 1])  ↓")
    ax_mae.set_title("Mean absolute error of the reconstruction", fontsize=10)
    ax_mae.legend(title="evaluated on", fontsize=9, title_fontsize=9)
    ax_ms.set_ylabel("MS-SSIM  ↑")
    ax_ms.set_title("MS-SSIM of the reconstruction", fontsize=10)
    if ax_ms.has_data():
        ax_ms.legend(title="evaluated on", fontsize=9, title_fontsize=9)
    if missing:
        ax_ms.text(0.5, 0.5, "no MS-SSIM for " + ", ".join(missing) + "\n(images smaller than the 11×11 window)",
                   transform=ax_ms.transAxes, ha="center", va="center", fontsize=9, color="grey")
    if title or method:
        fig.suptitle(" — ".join(part for part in (title, method) if part), fontsize=11)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)
