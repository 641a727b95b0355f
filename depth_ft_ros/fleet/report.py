"""The fleet summary: <out>/summary.md with <out>/summary.png, written at the end of a run (write_summary).

Per bag and overall: frames, held-out LiDAR AbsRel/RMSE (the node's depth model aligned to half of each frame's
points, scored on the other half: fleet.evaluate), ground-truth metrics where bags have them, which alignment
method the frames got, confidence, the run's throughput, and the bags that failed with their reasons.
"""

from __future__ import annotations

import math
from pathlib import Path

from depth_ft_ros.fleet.plots import summary_figure
from depth_ft_ros.fleet.tables import BagStats, RunInfo, pooled_mean, run_info, run_stats

SUMMARY_FILE = "summary.md"
PLOT_FILE = "summary.png"


def fmt(value: float, spec: str = ".4f") -> str:
    return f"{value:{spec}}" if math.isfinite(value) else "–"


def _shares(shares: dict[str, float]) -> str:
    return ", ".join(f"{key} {share:.0%}" for key, share in shares.items()) or "–"


def _median_confidence(bag: BagStats) -> float:
    for key in ("confidence_p50", "confidence_q50", "confidence_median", "confidence_mean"):
        if key in bag.confidence:
            return bag.confidence[key]
    return math.nan


def _overall_shares(bags: dict[str, BagStats], attr: str) -> dict[str, float]:
    total = sum(b.frames for b in bags.values())
    counts: dict[str, float] = {}
    for b in bags.values():
        for key, share in getattr(b, attr).items():
            counts[key] = counts.get(key, 0.0) + share * b.frames
    return {k: v / total for k, v in sorted(counts.items(), key=lambda kv: -kv[1])} if total else {}


def summary_markdown(bags: dict[str, BagStats], run: RunInfo, plot_name: str | None) -> str:
    frames = sum(b.frames for b in bags.values())
    has_gt = any(b.scored.get("gt_absrel") for b in bags.values())
    lines = ["# Fleet summary", ""]
    lines += [f"- bags: {len(bags) + len(run.failed)} ({len(bags)} with output, {len(run.failed)} failed"
              + (f", {len(run.skipped)} skipped as already done" if run.skipped else "") + ")",
              f"- frames: {frames}, {fmt(sum(b.log_s for b in bags.values()) / 3600, '.3f')} h of log",
              f"- throughput: {fmt(run.frames_per_s, '.2f')} frames/s, "
              f"{fmt(run.log_hours_per_hour, '.2f')} hours of log per hour"
              + (f" ({fmt(run.wall_s, '.1f')} s wall)" if math.isfinite(run.wall_s) else "")]
    absrel, n_abs = pooled_mean(bags, "heldout_absrel")
    rmse, _ = pooled_mean(bags, "heldout_rmse_m")
    lines.append(f"- held-out LiDAR (mean over {n_abs} scored frames): AbsRel {fmt(absrel)}, RMSE {fmt(rmse)} m")
    if has_gt:
        gt_abs, n_gt = pooled_mean(bags, "gt_absrel")
        gt_rmse, _ = pooled_mean(bags, "gt_rmse_m")
        lines.append(f"- ground truth (mean over {n_gt} frames): AbsRel {fmt(gt_abs)}, RMSE {fmt(gt_rmse)} m")
    lines += [f"- alignment method: {_shares(_overall_shares(bags, 'methods'))}",
              f"- alignment state: {_shares(_overall_shares(bags, 'states'))}", ""]
    lines += ["Held-out: each frame's relative prediction aligned (the node's alignment settings, one frame's own "
              "fit) to half of its LiDAR points and scored against the other half; the published depth uses all "
              "points. Metrics are per frame, then averaged.", ""]
    if plot_name:
        lines += [f"![per-bag held-out AbsRel and alignment methods]({plot_name})", ""]
    lines += ["## Per bag", ""]
    header = "| bag | cameras | frames | log s | held-out AbsRel | held-out RMSE m |"
    rule = "|---|---|---:|---:|---:|---:|"
    if has_gt:
        header += " GT AbsRel | GT RMSE m |"
        rule += "---:|---:|"
    header += " methods | median confidence |"
    rule += "---|---:|"
    lines += [header, rule]
    for b in bags.values():
        row = (f"| {b.bag} | {', '.join(c or '(single)' for c in b.cameras)} | {b.frames} | {b.log_s:.1f} | "
               f"{fmt(b.means.get('heldout_absrel', math.nan))} | {fmt(b.means.get('heldout_rmse_m', math.nan))} |")
        if has_gt:
            row += f" {fmt(b.means.get('gt_absrel', math.nan))} | {fmt(b.means.get('gt_rmse_m', math.nan))} |"
        row += f" {_shares(b.methods)} | {fmt(_median_confidence(b), '.3f')} |"
        lines.append(row)
    # The chain's stages and each network's total (its sub-stages are the predictor benchmark's business).
    timing_keys = sorted({k for b in bags.values() for k in b.timings_ms if "." not in k or k.endswith(".total")})
    if timing_keys:
        lines += ["", "## Stage timings (mean ms per frame)", "", "| bag | " + " | ".join(timing_keys) + " |",
                  "|---|" + "---:|" * len(timing_keys)]
        lines += [f"| {b.bag} | " + " | ".join(fmt(b.timings_ms.get(k, math.nan), ".1f") for k in timing_keys) + " |"
                  for b in bags.values()]
    lines += ["", "## Failed bags", ""]
    lines += [f"- {bag}: {' '.join(reason.split()) or 'no reason recorded'}"  # one line per bag in the list
              for bag, reason in sorted(run.failed.items())] or ["none"]
    return "\n".join(lines) + "\n"


def write_summary(out_dir: Path) -> Path:
    """Write <out_dir>/summary.md (and summary.png when a bag has output) from the bags' frames.parquet and
    fleet_run.json; returns the Markdown's path. Files are replaced atomically."""
    out_dir = Path(out_dir)
    bags = run_stats(out_dir)
    run = run_info(out_dir, bags)
    plot_name = None
    if bags:
        tmp_png = out_dir / f".{PLOT_FILE}.partial"
        summary_figure(bags, tmp_png).replace(out_dir / PLOT_FILE)
        plot_name = PLOT_FILE
    path = out_dir / SUMMARY_FILE
    tmp = out_dir / f".{SUMMARY_FILE}.partial"
    tmp.write_text(summary_markdown(bags, run, plot_name), encoding="utf-8")
    tmp.replace(path)
    return path
