"""`eval-alignment`: metric alignment accuracy and speed on the Middlebury Motorcycle frame (real GT).

Relative inputs are made from GT (evaluation.synthetic: small noise, a smooth distortion, or both; in depth and in
disparity space), sparse inputs are simulated on GT (evaluation.lidar_sim: random pixels, N-line LiDAR, 1 % noise,
outliers, see-through points of a LiDAR mounted 0.2 m from the camera), and global and local alignment are
scored over valid GT pixels. Seeds are fixed, so the numbers are reproducible on one machine.

Every metric map comes from MetricAligner with the node's default parameters (node_aligner): the accuracy
reported is that of the code the node runs. The speed table times the stages one by one.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from depth_ft_ros.alignment.aligner import AlignmentOutput, MetricAligner, apply_scale_shift, fit_scale_shift
from depth_ft_ros.alignment.local import local_refine
from depth_ft_ros.config import NodeConfig
from depth_ft_ros.enums import AlignmentMethod, Space
from depth_ft_ros.evaluation import lidar_sim
from depth_ft_ros.evaluation.metrics import depth_metrics
from depth_ft_ros.evaluation.middlebury import MiddleburyFrame, load_motorcycle
from depth_ft_ros.evaluation.synthetic import KINDS, make_relative
from depth_ft_ros.frame.processor import aligner_settings
from depth_ft_ros.geometry.camera import PinholeCamera
from depth_ft_ros.geometry.cloud import cloud_arrays
from depth_ft_ros.geometry.sparse import project_sparse_points

SECTION_TITLE = "## Metric alignment"
BEGIN_MARK = "<!-- BEGIN metric-alignment (written by `depth-ft-ros eval-alignment --write-benchmarks`) -->"
END_MARK = "<!-- END metric-alignment -->"
NOISE_REL = 0.01
T = TypeVar("T")
KIND_TITLES = {"noise": "small noise", "smooth": "smooth distortion", "both": "noise + smooth distortion"}


@dataclass
class Sparse:
    uv: np.ndarray
    z: np.ndarray
    note: str = ""


def node_aligner(method: AlignmentMethod | str, **changes: Any) -> MetricAligner:
    """A MetricAligner with the node's default parameters (alignment=method), changed by `changes` (fields of
    AlignerSettings); a fresh one per frame, so each table cell is a first frame."""
    settings = aligner_settings(NodeConfig(alignment=AlignmentMethod(method)))
    return MetricAligner(dataclasses.replace(settings, **changes))


def align_frame(prediction: np.ndarray, sparse: Sparse, space: Space | str,
                method: AlignmentMethod | str) -> AlignmentOutput:
    """One frame through the node's aligner, as every accuracy table scores it."""
    return node_aligner(method).align(prediction, space, sparse.uv, sparse.z)


NO_METRICS = {"absrel": np.nan, "rmse_m": np.nan, "delta1": np.nan}


def _lidar(frame: MiddleburyFrame, rng: np.random.Generator, n_lines: int, outliers: float = 0.0,
           offset_m: tuple[float, float, float] | None = None, filter_see_through: bool = True) -> Sparse:
    if offset_m is None:
        pts = lidar_sim.lidar_scan(frame.depth_m, frame.camera, n_lines, rng=rng)
        note = ""
    else:
        pts, see_through = lidar_sim.see_through_points(frame.depth_m, frame.camera, n_lines, offset_m, rng=rng)
        note = f"{int(see_through.sum())} of {len(pts)} see-through"
    pts = lidar_sim.add_relative_noise(pts, NOISE_REL, rng)
    pts, _ = lidar_sim.add_outliers(pts, outliers, rng)
    sp = project_sparse_points(pts, frame.camera, filter_see_through=filter_see_through)
    if offset_m is not None:
        note += f", {sp.see_through} removed" if filter_see_through else ", filter off"
    return Sparse(sp.uv, sp.z_m, note)


def _random(frame: MiddleburyFrame, rng: np.random.Generator, n: int, outliers: float = 0.0) -> Sparse:
    uv, z = lidar_sim.random_pixels(frame.depth_m, n, rng)
    z = lidar_sim.add_relative_noise(z, NOISE_REL, rng)
    z, _ = lidar_sim.add_outliers(z, outliers, rng)
    return Sparse(uv, z)


def patterns(quick: bool) -> list[tuple[str, Callable[[MiddleburyFrame, np.random.Generator], Sparse]]]:
    """(name, builder) of every sparse pattern; quick keeps two."""
    right, above = (0.2, 0.0, 0.0), (0.0, -0.2, 0.0)
    full: list[tuple[str, Callable[[MiddleburyFrame, np.random.Generator], Sparse]]] = [
        *[(f"random {n}", lambda f, g, n=n: _random(f, g, n)) for n in (50, 100, 500, 1000)],
        *[(f"lidar {n} lines", lambda f, g, n=n: _lidar(f, g, n)) for n in (8, 16, 32, 64)],
        *[(f"random 500, {p}% outliers", lambda f, g, p=p: _random(f, g, 500, p / 100)) for p in (5, 10)],
        *[(f"lidar 16, {p}% outliers", lambda f, g, p=p: _lidar(f, g, 16, p / 100)) for p in (5, 10)],
        ("lidar 16, 0.2 m right", lambda f, g: _lidar(f, g, 16, offset_m=right)),
        ("lidar 16, 0.2 m right, no filter", lambda f, g: _lidar(f, g, 16, offset_m=right, filter_see_through=False)),
        ("lidar 64, 0.2 m right", lambda f, g: _lidar(f, g, 64, offset_m=right)),
        ("lidar 64, 0.2 m right, no filter", lambda f, g: _lidar(f, g, 64, offset_m=right, filter_see_through=False)),
        ("lidar 64, 0.2 m above", lambda f, g: _lidar(f, g, 64, offset_m=above)),
        ("lidar 64, 0.2 m above, no filter", lambda f, g: _lidar(f, g, 64, offset_m=above, filter_see_through=False)),
    ]
    if quick:
        return [p for p in full if p[0] in ("random 500", "lidar 16 lines")]
    return full


def _timed(fn: Callable[[], T], repeats: int) -> tuple[T, float]:
    """(the last result, median ms)."""
    times = []
    for _ in range(max(repeats, 1) - 1):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - t0)
    return out, 1e3 * statistics.median(times)


def _fmt(x: float, digits: int = 4) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.{digits}f}"


def accuracy_tables(frame: MiddleburyFrame, kinds: list[str], spaces: list[str], quick: bool, seed: int,
                    repeats: int) -> list[str]:
    pats = patterns(quick)
    sparse = {name: build(frame, np.random.default_rng([seed, i])) for i, (name, build) in enumerate(pats)}
    lines = []
    for k_i, kind in enumerate(kinds):
        for s_i, space in enumerate(spaces):
            rel = make_relative(frame.depth_m, kind, space, np.random.default_rng([seed, 100 + k_i, s_i]))
            lines += [f"### Input: {kind} ({KIND_TITLES[kind]}), {space} space", "",
                      "| pattern | points | AbsRel global | AbsRel local | RMSE m global | RMSE m local "
                      "| delta1 global | delta1 local | ms global | ms local | note |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"]
            for name, _ in pats:
                sp = sparse[name]
                row = [name, str(len(sp.z))]
                res, ms = {}, {}
                notes = [sp.note]
                for method in ("global", "local"):
                    out, ms[method] = _timed(partial(align_frame, rel.prediction, sp, space, method), repeats)
                    report = out.report
                    if out.depth_m is None:
                        res[method], ms[method] = NO_METRICS, np.nan
                        notes.append(f"{method} refused: {report.reason}")
                        continue
                    res[method] = depth_metrics(out.depth_m, frame.depth_m)
                    if method == "local" and report.method != AlignmentMethod.LOCAL:
                        heldout = (report.local or {}).get("heldout_ratio")
                        notes.append("local = global: " + (f"held-out ratio {heldout:.2f}" if heldout is not None
                                                           else report.reason))
                    elif method == "local" and report.local:
                        notes.append(f"held-out ratio {report.local['heldout_ratio']:.2f}")
                row += [_fmt(res["global"]["absrel"]), _fmt(res["local"]["absrel"]),
                        _fmt(res["global"]["rmse_m"], 3), _fmt(res["local"]["rmse_m"], 3),
                        _fmt(res["global"]["delta1"], 3), _fmt(res["local"]["delta1"], 3),
                        _fmt(ms["global"], 1), _fmt(ms["local"], 1), "; ".join(n for n in notes if n)]
                lines.append("| " + " | ".join(row) + " |")
            lines.append("")
    return lines


def wrong_space_table(frame: MiddleburyFrame, seed: int) -> list[str]:
    """Each prediction fitted in its own space and in the other one. Fitting the other space means inverting
    the prediction first (a disparity model's output turned into "depth" by 1/p, or the reverse): the affine
    ambiguity of the original space is not an affine ambiguity after inversion, so two parameters cannot
    absorb it. The raw prediction fitted in the other space is refused (the scale comes out negative)."""
    uv, z = lidar_sim.random_pixels(frame.depth_m, 500, np.random.default_rng([seed, 7]))
    lines = ["### Fitting in the wrong space (noise input, 500 random points, global robust fit)", "",
             "| prediction | fitted | AbsRel | RMSE m | delta1 |", "|---|---|---|---|---|"]
    other = {"depth": "disparity", "disparity": "depth"}
    for true_space in ("depth", "disparity"):
        rel = make_relative(frame.depth_m, "noise", true_space, np.random.default_rng([seed, 8]))
        p = rel.prediction - rel.prediction.min()
        p = p / p.max() + 0.1  # positive range [0.1, 1.1] so that 1/p exists
        for label, pred, fit_space in ((f"in {true_space} space (right)", p, true_space),
                                       (f"1/p in {other[true_space]} space (wrong)", 1.0 / p, other[true_space]),
                                       (f"p in {other[true_space]} space (wrong)", p, other[true_space])):
            out = node_aligner(AlignmentMethod.GLOBAL).align(pred, fit_space, uv, z)
            if out.depth_m is None:
                lines.append(f"| {true_space} | {label} | refused: {out.report.reason} | | |")
                continue
            m = depth_metrics(out.depth_m, frame.depth_m)
            lines.append(f"| {true_space} | {label} | {_fmt(m['absrel'])} | {_fmt(m['rmse_m'], 3)} "
                         f"| {_fmt(m['delta1'], 3)} |")
    return [*lines, ""]


def robust_table(frame: MiddleburyFrame, seed: int, repeats: int) -> list[str]:
    rel = make_relative(frame.depth_m, "noise", "depth", np.random.default_rng([seed, 9]))
    lines = ["### Robust fit: IRLS (Huber) vs LMedS (200 pairs) vs plain least squares (noise input, depth space)",
             "", "| points | outliers | AbsRel LS | AbsRel IRLS | AbsRel LMedS | ms LS | ms IRLS | ms LMedS |",
             "|---|---|---|---|---|---|---|---|"]
    for label, n in (("random 500", 500), ("random 5000", 5000)):
        for frac in (0.0, 0.1, 0.3):
            rng = np.random.default_rng([seed, 10, n, int(frac * 100)])
            uv, z = lidar_sim.random_pixels(frame.depth_m, n, rng)
            z, _ = lidar_sim.add_outliers(lidar_sim.add_relative_noise(z, NOISE_REL, rng), frac, rng)
            cells, times = [], []
            for robust, method in ((False, "irls"), (True, "irls"), (True, "lmeds")):
                # ms: the fit alone (what the robust methods differ in); AbsRel: the node's aligner with it.
                _, ms = _timed(partial(fit_scale_shift, rel.prediction, uv, z, "depth", robust=robust,
                                       robust_method=method), max(repeats, 5))
                out = node_aligner(AlignmentMethod.GLOBAL, robust=robust, robust_method=method).align(
                    rel.prediction, Space.DEPTH, uv, z)
                metrics = NO_METRICS if out.depth_m is None else depth_metrics(out.depth_m, frame.depth_m)
                cells.append(_fmt(metrics["absrel"]))
                times.append(_fmt(ms, 2))
            lines.append(f"| {label} | {int(frac * 100)}% | " + " | ".join(cells + times) + " |")
    return [*lines, ""]


def _timed_both(fn: Callable[[], T], repeats: int) -> tuple[T, float, float]:
    """(the last result, median ms, min ms): the minimum shows the cost without other processes on a shared
    machine."""
    times = []
    for _ in range(max(repeats, 1) - 1):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - t0)
    return out, 1e3 * statistics.median(times), 1e3 * min(times)


def speed_table(frame: MiddleburyFrame, seed: int, repeats: int) -> list[str]:
    """Per-stage times at 640x480 (the frame resized; the camera scaled to match)."""
    w, h = 640, 480
    gt = cv2.resize(np.nan_to_num(frame.depth_m, nan=0.0), (w, h), interpolation=cv2.INTER_NEAREST)
    gt[gt <= 0] = np.nan
    cam: PinholeCamera = frame.camera.scaled(w, h)
    rel = make_relative(gt, "both", "depth", np.random.default_rng([seed, 11]))
    rgb = cv2.resize(np.asarray(frame.rgb), (w, h), interpolation=cv2.INTER_AREA)
    normals = np.random.default_rng(0).standard_normal((h, w, 3)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=2, keepdims=True)
    n_rep = max(repeats * 7, 20)
    lines = [f"### Speed at 640x480 ({n_rep} runs each; median and minimum)", "",
             "| stage | points | ms median | ms min |", "|---|---|---|---|"]
    inputs = {"random 500": lidar_sim.random_pixels(gt, 500, np.random.default_rng([seed, 12])),
              "random 5000": lidar_sim.random_pixels(gt, 5000, np.random.default_rng([seed, 15]))}
    sp = project_sparse_points(lidar_sim.lidar_scan(gt, cam, 16, rng=np.random.default_rng([seed, 13])), cam)
    inputs["lidar 16 lines"] = (sp.uv, sp.z_m)
    pts = lidar_sim.lidar_scan(gt, cam, 64, rng=np.random.default_rng([seed, 14]))
    _, med, low = _timed_both(partial(project_sparse_points, pts, cam), n_rep)
    lines.append(f"| project_sparse_points (64 lines, see-through filter) | {len(pts)} | {med:.2f} | {low:.2f} |")
    for name, (uv, z) in inputs.items():
        fit, fit_med, fit_min = _timed_both(partial(fit_scale_shift, rel.prediction, uv, z, "depth"), n_rep)
        depth, app_med, app_min = _timed_both(
            partial(apply_scale_shift, rel.prediction, fit.scale, fit.shift, "depth"), n_rep)
        _, loc_med, loc_min = _timed_both(partial(local_refine, depth, uv, z, fit), n_rep)
        lines += [f"| global fit (IRLS) | {name} ({len(z)}) | {fit_med:.2f} | {fit_min:.2f} |",
                  f"| apply scale/shift | {name} | {app_med:.2f} | {app_min:.2f} |",
                  f"| local correction | {name} | {loc_med:.2f} | {loc_min:.2f} |",
                  f"| global total | {name} | {fit_med + app_med:.2f} | {fit_min + app_min:.2f} |",
                  f"| local total | {name} | {fit_med + app_med + loc_med:.2f} | {fit_min + app_min + loc_min:.2f} |"]
    # What the held-out test costs when it keeps the global map (a prediction right up to noise).
    noise_rel = make_relative(gt, "noise", "depth", np.random.default_rng([seed, 16])).prediction
    uv, z = inputs["lidar 16 lines"]
    fit = fit_scale_shift(noise_rel, uv, z, "depth")
    kept = apply_scale_shift(noise_rel, fit.scale, fit.shift, "depth")
    refused, med, low = _timed_both(partial(local_refine, kept, uv, z, fit), n_rep)
    assert refused.depth_m is None, "the held-out test should keep the global map of a noise-only prediction"
    lines.append(f"| local correction, global map kept by the held-out test (noise-only prediction) | lidar 16 lines "
                 f"| {med:.2f} | {low:.2f} |")
    depth = apply_scale_shift(rel.prediction, 1.0, 0.0, "depth")
    cloud_inputs: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = {
        "xyz": (None, None), "xyz + rgb": (rgb, None), "xyz + rgb + normals": (rgb, normals)}
    for label, (rgb_in, normals_in) in cloud_inputs.items():
        _, med, low = _timed_both(partial(cloud_arrays, depth, cam, rgb=rgb_in, normals=normals_in), n_rep)
        lines.append(f"| cloud_arrays {label} | dense | {med:.2f} | {low:.2f} |")
    return [*lines, ""]


def machine_name() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cpu}, {n} cores available, Python {platform.python_version()}, numpy {np.__version__}, "
            f"OpenCV {cv2.__version__}")


def write_benchmarks(path: Path, body: list[str]) -> None:
    """Replace our section (between our markers) in BENCHMARKS.md, keeping everything else."""
    section = "\n".join([BEGIN_MARK, SECTION_TITLE, "", *body, END_MARK])
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(BEGIN_MARK) + r".*?" + re.escape(END_MARK), re.S)
    found = pattern.search(text) is not None
    text = pattern.sub(lambda _m: section, text) if found else text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a small subset (one input, two patterns)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per cell (median reported)")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=None, help="relative input kinds")
    parser.add_argument("--spaces", nargs="+", choices=("depth", "disparity"), default=None)
    parser.add_argument("--no-speed", action="store_true", help="skip the 640x480 speed table")
    parser.add_argument("--write-benchmarks", action="store_true",
                        help="write/update the '## Metric alignment' section of BENCHMARKS.md")
    parser.add_argument("--benchmarks-path", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument("--confidence-plot", type=Path, metavar="PNG",
                        help="only the confidence evaluation: sparsification curves to PNG, tables printed "
                        "(BENCHMARKS.md, 'Confidence')")
    parser.add_argument("--confidence-seed", type=int, default=1, help="confidence: seed of the simulation")
    parser.add_argument("--smear-factor", type=float, default=2.0, help="confidence: network output smear")
    parser.add_argument("--margin-rad", type=float, default=0.0,
                        help="confidence: narrow the LiDAR's vertical field of view by this at both ends")
    parser.add_argument("--confidence-timing", action="store_true",
                        help="confidence: also time confidence + flying-pixel filter at 640x480")


def _confidence(args: argparse.Namespace) -> int:
    from depth_ft_ros.evaluation.confidence_eval import markdown, sparsification_report, time_confidence

    results = sparsification_report(args.confidence_plot, seed=args.confidence_seed, smear_factor=args.smear_factor,
                                    margin_rad=args.margin_rad)
    print("\n".join(markdown(results)))
    print(f"plot: {args.confidence_plot}")
    if args.confidence_timing:
        print({k: round(v, 3) for k, v in time_confidence().items()})
    return 0


def run(args: argparse.Namespace) -> int:
    if args.confidence_plot is not None:
        return _confidence(args)
    t0 = time.perf_counter()
    frame = load_motorcycle()
    kinds = args.kinds or (["both"] if args.quick else list(KINDS))
    spaces = args.spaces or (["depth"] if args.quick else ["depth", "disparity"])
    repeats = 1 if args.quick else args.repeats
    body = [f"Machine: {machine_name()}.", "",
            f"Data: Middlebury 2014 Motorcycle (skimage), {frame.depth_m.shape[1]}x{frame.depth_m.shape[0]}, "
            f"GT valid {100 * np.isfinite(frame.depth_m).mean():.1f}%. Sparse depths carry {NOISE_REL:.0%} "
            "relative noise; outliers are uniform between the 10th and 90th depth percentile. Metrics over "
            "valid GT pixels; every map from MetricAligner with the node's default parameters (one frame); "
            "ms = median wall time per frame of fit + apply (+ local correction).", ""]
    warm_uv, warm_z = lidar_sim.random_pixels(frame.depth_m, 100, np.random.default_rng(0))
    align_frame(make_relative(frame.depth_m, "noise", "depth", np.random.default_rng(0)).prediction,
                Sparse(warm_uv, warm_z), "depth", "local")  # warm-up
    body += accuracy_tables(frame, kinds, spaces, args.quick, args.seed, repeats)
    if not args.quick:
        body += wrong_space_table(frame, args.seed)
        body += robust_table(frame, args.seed, repeats)
    if not args.no_speed:
        body += speed_table(frame, args.seed, 1 if args.quick else repeats)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    body.append(f"Total eval time {time.perf_counter() - t0:.1f} s (1-minute load average at the end: {load:.2f}).")
    print("\n".join([SECTION_TITLE, "", *body]))
    if args.write_benchmarks:
        write_benchmarks(args.benchmarks_path, body)
        print(f"\nwrote the metric alignment section of {args.benchmarks_path}")
    return 0
