"""Two checkpoints over the same bags: per-bag and overall held-out LiDAR AbsRel, the difference B - A and a
percentile bootstrap interval over bags (the check before a checkpoint goes onto the robots).

The bag is the unit: frames within a bag are strongly correlated, so resampling frames would claim far more
certainty than the data hold. Within a bag, only frames both runs scored (same camera and stamp) are compared.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from depth_ft_ros.errors import InputError
from depth_ft_ros.fleet.plots import compare_figure
from depth_ft_ros.fleet.report import fmt
from depth_ft_ros.fleet.tables import BagComparison, Comparison, bag_tables, read_frames

METRIC = "heldout_absrel"
REPORT_FILE = "compare.md"
PLOT_FILE = "compare.png"
N_RESAMPLES = 10_000
SEED = 0


def bootstrap_mean_ci(values: np.ndarray, confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
                      seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: resample the values with replacement n_resamples times."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_resamples, values.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _scored_frames(path: Path) -> dict[tuple[str, int], float]:
    table = read_frames(path)
    missing = [c for c in ("stamp_ns", METRIC) if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: no column {', '.join(missing)} (not a fleet frames table?)")
    cameras = (table.column("camera").to_pylist() if "camera" in table.column_names else [""] * table.num_rows)
    stamps = table.column("stamp_ns").to_pylist()
    values = table.column(METRIC).to_pylist()
    return {(str(c), int(s)): float(v) for c, s, v in zip(cameras, stamps, values, strict=True)
            if v is not None and math.isfinite(v)}


MANIFEST_FILE = "manifest.json"
MODEL_PARAMS = ("depth_model", "normals_model")  # stated by the manifest's models (id and content hash)


def _manifest(table: Path) -> dict[str, Any] | None:
    """The engine's manifest beside a bag's table (input files, models, parameters), if it is readable."""
    try:
        doc = json.loads((table.parent / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _input_files(manifest: dict[str, Any]) -> list[tuple[str, int]]:
    files = manifest.get("input", {}).get("files", []) if isinstance(manifest.get("input"), dict) else []
    return sorted((str(f.get("name")), int(f.get("size", -1))) for f in files if isinstance(f, dict))


def _model(manifest: dict[str, Any], name: str) -> str:
    model = manifest.get("models", {}).get(name) if isinstance(manifest.get("models"), dict) else None
    if not isinstance(model, dict):
        return "none"
    digest = str(model.get("sha256", ""))[:12]
    return f"{model.get('id', '?')}" + (f" (sha256 {digest})" if digest else "")


def settings_differences(a: dict[str, Any], b: dict[str, Any], label_a: str, label_b: str) -> list[str]:
    """The checkpoints of both runs and every other parameter that differs (which makes the comparison one of
    more than the checkpoint)."""
    lines = [f"{name.replace('_', ' ')}: {label_a} {_model(a, name)}, {label_b} {_model(b, name)}"
             for name in MODEL_PARAMS if _model(a, name) != "none" or _model(b, name) != "none"]
    params_a, params_b = a.get("params", {}) or {}, b.get("params", {}) or {}
    for key in sorted((set(params_a) | set(params_b)) - set(MODEL_PARAMS)):
        if params_a.get(key) != params_b.get(key):
            lines.append(f"parameter {key}: {label_a} {params_a.get(key)!r}, {label_b} {params_b.get(key)!r} "
                         "(not only the checkpoint differs)")
    return lines


def compare_tables(run_a: Path, run_b: Path, label_a: str = "A", label_b: str = "B",
                   confidence: float = 0.95) -> Comparison:
    tables_a, tables_b = bag_tables(run_a), bag_tables(run_b)
    rows: list[BagComparison] = []
    unscored: list[str] = []
    other_input: list[str] = []
    differences: list[str] = []
    for bag in sorted(set(tables_a) & set(tables_b)):
        manifest_a, manifest_b = _manifest(tables_a[bag]), _manifest(tables_b[bag])
        if manifest_a is not None and manifest_b is not None:
            if _input_files(manifest_a) != _input_files(manifest_b):
                other_input.append(bag)  # a re-recorded or truncated copy: not the same bag
                continue
            differences = differences or settings_differences(manifest_a, manifest_b, label_a, label_b)
        a, b = _scored_frames(tables_a[bag]), _scored_frames(tables_b[bag])
        both = sorted(set(a) & set(b))
        if not both:
            unscored.append(bag)
            continue
        rows.append(BagComparison(bag, len(both), float(np.mean([a[k] for k in both])),
                                  float(np.mean([b[k] for k in both]))))
    diff = np.array([r.b - r.a for r in rows])
    low, high = bootstrap_mean_ci(diff, confidence)
    nan = math.nan
    return Comparison(
        label_a, label_b, rows,
        mean_a=float(np.mean([r.a for r in rows])) if rows else nan,
        mean_b=float(np.mean([r.b for r in rows])) if rows else nan,
        mean_diff=float(diff.mean()) if rows else nan, ci_low=low, ci_high=high, confidence=confidence,
        only_a=sorted(set(tables_a) - set(tables_b)), only_b=sorted(set(tables_b) - set(tables_a)),
        unscored=unscored, other_input=other_input, differences=differences)


def verdict(c: Comparison) -> str:
    if not c.rows:
        return "No bag was scored by both runs: nothing to compare."
    interval = f"[{fmt(c.ci_low, '+.4f')}, {fmt(c.ci_high, '+.4f')}]"
    if len(c.rows) < 2:
        return (f"Only one bag was scored by both runs: the difference is {fmt(c.mean_diff, '+.4f')}, with no "
                "interval over bags (a single bag says nothing about the next one).")
    if c.ci_high < 0:
        return f"{c.label_b} has the lower held-out AbsRel: the {c.confidence:.0%} interval {interval} is below 0."
    if c.ci_low > 0:
        return f"{c.label_b} has the higher held-out AbsRel: the {c.confidence:.0%} interval {interval} is above 0."
    return f"No clear difference: the {c.confidence:.0%} interval {interval} contains 0."


def compare_markdown(c: Comparison, plot_name: str, notes: str = "") -> str:
    rel = c.mean_diff / c.mean_a if c.rows and c.mean_a > 0 else math.nan
    lines = [f"# {c.label_b} vs {c.label_a}: held-out LiDAR AbsRel", ""]
    if notes:
        lines += [notes, ""]
    lines += [f"**{verdict(c)}**", ""]
    if c.differences:
        lines += ["Runs:", "", *(f"- {d}" for d in c.differences), ""]
    lines += [
              f"- bags compared: {len(c.rows)}; frames: {sum(r.frames for r in c.rows)}",
              f"- mean over bags: {c.label_a} {fmt(c.mean_a)}, {c.label_b} {fmt(c.mean_b)}; "
              f"difference {fmt(c.mean_diff, '+.4f')} ({fmt(100 * rel, '+.1f')} %), {c.confidence:.0%} bootstrap "
              f"interval over bags [{fmt(c.ci_low, '+.4f')}, {fmt(c.ci_high, '+.4f')}] "
              f"({N_RESAMPLES} resamples, seed {SEED})", "",
              "Held-out: each frame's prediction aligned with the node's settings to half of its LiDAR points and "
              "scored against the other half. Per bag: the mean over the frames both runs scored (same camera "
              "and stamp); overall: the mean over bags, which are the unit the interval resamples.", "",
              f"![per-bag held-out AbsRel and difference]({plot_name})", "",
              f"| bag | frames | {c.label_a} | {c.label_b} | difference | relative |", "|---|---:|---:|---:|---:|---:|"]
    for r in c.rows:
        rel_bag = (r.b - r.a) / r.a if r.a > 0 else math.nan
        lines.append(f"| {r.bag} | {r.frames} | {fmt(r.a)} | {fmt(r.b)} | {fmt(r.b - r.a, '+.4f')} | "
                     f"{fmt(100 * rel_bag, '+.1f')} % |")
    for title, bags in ((f"Bags with output from {c.label_a} only", c.only_a),
                        (f"Bags with output from {c.label_b} only", c.only_b),
                        ("Bags without a frame both runs scored", c.unscored),
                        ("Bags of the same name with other input files (not compared)", c.other_input)):
        if bags:
            lines += ["", f"{title}: " + ", ".join(bags)]
    return "\n".join(lines) + "\n"


def write_comparison(comparison: Comparison, out_dir: Path, notes: str = "") -> Path:
    """<out_dir>/compare.md (and compare.png when a bag was compared), replaced atomically; returns the
    Markdown's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if comparison.rows:
        compare_figure(comparison, out_dir / f".{PLOT_FILE}.partial").replace(out_dir / PLOT_FILE)
    path = out_dir / REPORT_FILE
    tmp = out_dir / f".{REPORT_FILE}.partial"
    tmp.write_text(compare_markdown(comparison, PLOT_FILE, notes), encoding="utf-8")
    tmp.replace(path)
    return path


def compare_runs(run_a_dir: Path, run_b_dir: Path, out_dir: Path, label_a: str = "A", label_b: str = "B",
                 notes: str = "") -> Path:
    """Compare two fleet runs over the same bags; writes <out_dir>/compare.md and compare.png and returns the
    Markdown's path. notes: a paragraph put under the title (what the two checkpoints are)."""
    for run in (run_a_dir, run_b_dir):
        if not Path(run).is_dir():
            raise InputError(f"run folder {run} does not exist")
    return write_comparison(compare_tables(Path(run_a_dir), Path(run_b_dir), label_a, label_b), out_dir, notes)
