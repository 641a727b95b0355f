"""The fleet reports' figures (matplotlib, Agg: files only, no display; the fleet extra installs it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

if TYPE_CHECKING:
    from depth_ft_ros.fleet.tables import BagStats, Comparison

_MAX_LABEL = 24


def _label(name: str) -> str:
    return name if len(name) <= _MAX_LABEL else name[: _MAX_LABEL - 1] + "…"


def summary_figure(bags: dict[str, BagStats], path: Path) -> Path:
    """Per bag: held-out AbsRel (box of per-frame values, mean marked) and the share of alignment methods."""
    names = list(bags)
    fig, (ax_err, ax_method) = plt.subplots(2, 1, figsize=(max(6.0, 0.6 * len(names) + 3), 7), sharex=True)
    positions = np.arange(len(names))
    data = [bags[n].per_frame_absrel for n in names]
    with_data = [i for i, d in enumerate(data) if d.size]
    if with_data:
        ax_err.boxplot([data[i] for i in with_data], positions=positions[with_data], widths=0.5, showfliers=False)
        ax_err.plot(positions[with_data], [float(data[i].mean()) for i in with_data], "o", color="tab:red",
                    label="mean")
        ax_err.legend(loc="upper right")
    ax_err.set_ylabel("held-out LiDAR AbsRel")
    ax_err.set_title("Per frame, per bag (box: quartiles, whiskers 1.5 IQR)")
    ax_err.grid(axis="y", alpha=0.3)
    methods = sorted({m for b in bags.values() for m in b.methods})
    bottom = np.zeros(len(names))
    for method in methods:
        share = np.array([bags[n].methods.get(method, 0.0) for n in names])
        ax_method.bar(positions, share, bottom=bottom, label=method, width=0.6)
        bottom += share
    ax_method.set_ylabel("share of frames")
    ax_method.set_title("Alignment method used")
    if methods:
        ax_method.legend(loc="upper right", fontsize="small")
    ax_method.set_xticks(positions, [_label(n) for n in names], rotation=30, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return path


def compare_figure(comparison: Comparison, path: Path) -> Path:
    """Per bag: held-out AbsRel of both runs side by side, and B - A with the overall mean and its interval."""
    rows = comparison.rows
    names = [_label(r.bag) for r in rows]
    x = np.arange(len(rows))
    fig, (ax_abs, ax_diff) = plt.subplots(2, 1, figsize=(max(6.0, 0.7 * len(rows) + 3), 7), sharex=True)
    ax_abs.bar(x - 0.2, [r.a for r in rows], width=0.4, label=comparison.label_a)
    ax_abs.bar(x + 0.2, [r.b for r in rows], width=0.4, label=comparison.label_b)
    ax_abs.set_ylabel("held-out LiDAR AbsRel")
    ax_abs.set_title("Mean over each bag's frames")
    ax_abs.legend()
    ax_abs.grid(axis="y", alpha=0.3)
    diff = np.array([r.b - r.a for r in rows])
    ax_diff.bar(x, diff, width=0.6, color=np.where(diff <= 0, "tab:green", "tab:red"))
    ax_diff.axhline(0.0, color="black", linewidth=0.8)
    ax_diff.axhline(comparison.mean_diff, color="tab:blue", linestyle="--",
                    label=f"mean over bags {comparison.mean_diff:+.4f}")
    ax_diff.axhspan(comparison.ci_low, comparison.ci_high, color="tab:blue", alpha=0.15,
                    label=f"{comparison.confidence:.0%} bootstrap interval")
    ax_diff.set_ylabel(f"{comparison.label_b} - {comparison.label_a}")
    ax_diff.set_title("Difference per bag (below 0: B better)")
    ax_diff.legend(fontsize="small")
    ax_diff.set_xticks(x, names, rotation=30, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return path


def depth_preview_figure(rgb: np.ndarray, gt_depth_m: np.ndarray | None, depths_m: dict[str, np.ndarray | None],
                         path: Path, title: str = "") -> Path:
    """One frame: the image, its ground truth and each run's metric depth on one colour scale (metres)."""
    panels: list[tuple[str, np.ndarray | None]] = [("ground truth", gt_depth_m), *depths_m.items()]
    valid = [d[np.isfinite(d)] for _, d in panels if d is not None and np.isfinite(d).any()]
    lo, hi = (float(np.percentile(np.concatenate(valid), 2)), float(np.percentile(np.concatenate(valid), 98))
              ) if valid else (0.0, 1.0)
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.2 * (len(panels) + 1), 3.0))
    axes[0].imshow(rgb)
    axes[0].set_title("image")
    image = None
    for ax, (label, depth) in zip(axes[1:], panels, strict=True):
        if depth is None:
            ax.text(0.5, 0.5, "no metric depth", ha="center", va="center", transform=ax.transAxes)
        else:
            image = ax.imshow(np.ma.masked_invalid(depth), cmap="turbo", vmin=lo, vmax=hi)
        ax.set_title(label)
    for ax in axes:
        ax.set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label="depth (m)")
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return path
