"""How well the confidence ranks the errors of the aligned depth, and what the flying-pixel filter removes.

Experiment (Middlebury Motorcycle, real GT): a model-like relative prediction (make_relative "both": smooth
distortion + noise, depth space) is smeared as a network's low-resolution output is: area-resized down by
smear_factor and back up bilinearly. A co-located N-line LiDAR (1 % range noise) is projected with the runtime
projection, and the prediction aligned by the node's MetricAligner with the node's parameters (global or local;
the node's default is `NodeConfig().alignment`).

- Sparsification: pixels are removed least confident first; the curve is the mean AbsRel of those kept at removed
  fractions 0..0.99, for the confidence, for the distance to the nearest LiDAR pixel alone (larger = less
  confident), for a random order and for the oracle (largest true error first). AUSE = area between a curve and
  the oracle's (trapezoid over the fractions); ties are broken at random.
- Flying pixels: GT depth edges are pixels whose depth differs from a 4-neighbour by more than gt_edge_rel
  (5 %: at f ~ 1000 px a surface would have to be seen within ~3 deg of grazing to change that much from one
  pixel to the next). Near = within 2 px of a GT edge. Reported: the share of near cloud points with error
  > 10 % that the filter removes, and the share of the other cloud points it removes. The same shares for the
  cloud as published (edge filter + cloud_min_confidence together), for the edge mask one pixel wider, and for
  it one pixel wider only where the confidence is below BAND_CONFIDENCE. And why a filter misses near-edge
  points: a near point with error > 10 % is "caused by the smear" when the unsmeared prediction, aligned the
  same way, is within 10 % there; otherwise the alignment's own smooth error makes it wrong, as it makes
  bad_rate_elsewhere of the points away from any edge wrong.
- Threshold table for cloud_min_confidence: points kept and AbsRel of kept vs dropped points.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy import ndimage

from depth_ft_ros.alignment.aligner import MetricAligner
from depth_ft_ros.alignment.confidence import ConfidenceSettings, cloud_keep_mask, confidence_map, depth_edges
from depth_ft_ros.config import NodeConfig
from depth_ft_ros.enums import AlignmentMethod
from depth_ft_ros.errors import InputError
from depth_ft_ros.evaluation import lidar_sim
from depth_ft_ros.evaluation.middlebury import load_motorcycle
from depth_ft_ros.evaluation.synthetic import make_relative
from depth_ft_ros.frame.processor import aligner_settings
from depth_ft_ros.geometry.camera import PinholeCamera
from depth_ft_ros.geometry.sparse import project_sparse_points

FRACTIONS = np.round(np.arange(100) / 100, 2)  # 0.00 .. 0.99
ORDERS = ("confidence", "distance", "random", "oracle")
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
ERROR_REL = 0.10
NEAR_EDGE_PX = 2.0
BAND_CONFIDENCE = 0.2  # a variant measured for the flying-pixel proof: wider edge band where less confident


@dataclass
class Case:
    """One aligned frame with its ground truth and sparse points."""

    depth_m: np.ndarray  # aligned metric depth, NaN invalid
    gt_m: np.ndarray
    uv: np.ndarray
    z_m: np.ndarray
    n_lines: int
    method: str
    unsmeared_depth_m: np.ndarray  # the same prediction without the smear, aligned the same way


@dataclass
class CaseResult:
    n_lines: int
    method: str
    absrel: float  # of all scored pixels
    curves: dict[str, np.ndarray]  # order -> mean AbsRel of kept pixels at FRACTIONS
    ause: dict[str, float]  # order -> area above the oracle
    flying_removed_bad: float  # near GT edges: share of > 10 % error points the filter removes
    flying_removed_other: float  # elsewhere: share of points the filter removes
    n_near_bad: int
    flying_removed_smear: float  # near GT edges: share of the > 10 % error points the smear caused (<= 10 % without)
    near_bad_alignment_share: float  # share of the near > 10 % points that are > 10 % without the smear too
    flying_removed_alignment: float  # the filter's share of those
    bad_rate_elsewhere: float  # share of the points away from GT edges with error > 10 %
    cloud_removed_bad: float  # edge filter + cloud_min_confidence (the cloud as published): near > 10 % points
    cloud_removed_other: float  # ... and elsewhere
    wider_removed_bad: float  # edge mask dilated by 1 px more: near > 10 % points
    wider_removed_other: float  # ... and elsewhere
    banded_removed_bad: float  # edge mask 1 px wider only where the confidence is below BAND_CONFIDENCE: near
    banded_removed_other: float  # ... and elsewhere
    thresholds: list[tuple[float, float, float, float]] = field(default_factory=list)  # t, kept, AbsRel kept/dropped


def smear(prediction: np.ndarray, factor: float) -> np.ndarray:
    """A network's low-resolution output upsampled bilinearly: area-resize down by factor, bilinear back up."""
    h, w = prediction.shape
    if factor <= 1:
        return prediction.copy()
    small = cv2.resize(prediction, (max(1, round(w / factor)), max(1, round(h / factor))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def frame_at(downsample: int) -> tuple[np.ndarray, PinholeCamera]:
    """The Motorcycle GT depth (nearest-resized by 1/downsample) and its camera scaled to match."""
    frame = load_motorcycle()
    gt = np.array(frame.depth_m)
    if downsample > 1:
        h, w = gt.shape
        size = (w // downsample, h // downsample)
        gt = cv2.resize(np.nan_to_num(gt, nan=0.0), size, interpolation=cv2.INTER_NEAREST)
        gt[gt <= 0] = np.nan
        return gt, frame.camera.scaled(*size)
    return gt, frame.camera


def make_case(gt_m: np.ndarray, camera: PinholeCamera, n_lines: int, method: str, seed: int,
              smear_factor: float = 2.0, margin_rad: float = 0.0) -> Case:
    rng = np.random.default_rng([seed, n_lines])
    rel = make_relative(gt_m, "both", "depth", rng)
    prediction = smear(rel.prediction, smear_factor)
    pts = lidar_sim.lidar_scan(gt_m, camera, n_lines, rng=rng, margin_rad=margin_rad)
    sp = project_sparse_points(lidar_sim.add_relative_noise(pts, 0.01, rng), camera)
    return Case(_node_aligned(prediction, sp.uv, sp.z_m, method), gt_m, sp.uv, sp.z_m, n_lines, method,
                _node_aligned(rel.prediction, sp.uv, sp.z_m, method))


def _node_aligned(prediction: np.ndarray, uv: np.ndarray, z_m: np.ndarray, method: str) -> np.ndarray:
    """One frame through a fresh MetricAligner with the node's parameters (alignment=method)."""
    settings = aligner_settings(NodeConfig(alignment=AlignmentMethod(method)))
    out = MetricAligner(settings).align(prediction, "depth", uv, z_m)
    if out.depth_m is None:
        raise InputError(f"alignment refused: {out.report.reason}")
    return out.depth_m


def sparsification_curve(error: np.ndarray, confidence: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mean error of the pixels kept when the least confident are removed first, at FRACTIONS."""
    n = error.size
    order = np.lexsort((rng.random(n), confidence))  # ascending confidence, random among ties
    tail_sum = np.cumsum(error[order][::-1])[::-1]  # sum of error[order][k:]
    k = (FRACTIONS * n).astype(np.int64)
    return tail_sum[k] / (n - k)


def area(curve: np.ndarray, oracle: np.ndarray) -> float:
    """Trapezoid area of curve - oracle over FRACTIONS."""
    gap = curve - oracle
    return float(np.sum(0.5 * (gap[1:] + gap[:-1]) * np.diff(FRACTIONS)))


def gt_depth_edges(gt_m: np.ndarray, jump_rel: float = 0.05) -> np.ndarray:
    """Pixels of the GT whose depth differs from a valid 4-neighbour by more than jump_rel (of the nearer)."""
    g = np.nan_to_num(np.asarray(gt_m, dtype=np.float64), nan=0.0)
    valid = g > 0
    edges = np.zeros(g.shape, dtype=bool)
    for a, b in (((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                 ((slice(1, None), slice(None)), (slice(None, -1), slice(None)))):
        jump = valid[a] & valid[b] & (np.abs(g[a] - g[b]) > jump_rel * np.minimum(g[a], g[b]))
        edges[a] |= jump
        edges[b] |= jump
    return edges


def evaluate_case(case: Case, settings: ConfidenceSettings | None = None, seed: int = 0) -> CaseResult:
    s = settings or ConfidenceSettings()
    gt, depth = case.gt_m, case.depth_m
    valid = (gt > 0) & (depth > 0)  # False for NaN
    err_img = np.abs(depth - gt) / gt
    err = err_img[valid]
    edges = depth_edges(depth, s.edge_threshold_rel, s.edge_radius_px, s.edge_dilate_px)
    conf = confidence_map(depth, case.uv, case.z_m, s, edges=edges)
    has_point = np.ones(gt.shape, dtype=bool)
    has_point[case.uv[:, 1], case.uv[:, 0]] = False
    dist_px = ndimage.distance_transform_edt(has_point)
    rng = np.random.default_rng(seed)
    keys = {"confidence": conf[valid], "distance": -dist_px[valid], "random": rng.random(err.size),
            "oracle": -err}
    curves = {name: sparsification_curve(err, key, rng) for name, key in keys.items()}
    ause = {name: area(c, curves["oracle"]) for name, c in curves.items()}

    near = ndimage.distance_transform_edt(~gt_depth_edges(gt)) <= NEAR_EDGE_PX
    bad = valid & near & (err_img > ERROR_REL)
    with np.errstate(invalid="ignore"):
        by_smear = bad & (np.abs(case.unsmeared_depth_m - gt) <= ERROR_REL * gt)
    by_alignment = bad & ~by_smear
    other = valid & ~near
    cloud_dropped = ~cloud_keep_mask(depth, edges, conf, s.cloud_min_confidence)
    wider = depth_edges(depth, s.edge_threshold_rel, s.edge_radius_px, s.edge_dilate_px + 1)
    banded = edges | (wider & (conf < BAND_CONFIDENCE))

    def share(mask: np.ndarray, of: np.ndarray) -> float:
        return float(mask[of].mean()) if of.any() else float("nan")

    result = CaseResult(case.n_lines, case.method, float(err.mean()), curves, ause,
                        share(edges, bad), share(edges, other), int(bad.sum()), share(edges, by_smear),
                        share(by_alignment, bad), share(edges, by_alignment), share(err_img > ERROR_REL, other),
                        share(cloud_dropped, bad), share(cloud_dropped, other),
                        share(wider, bad), share(wider, other), share(banded, bad), share(banded, other))
    in_cloud = valid & ~edges
    for t in THRESHOLDS:
        keep = cloud_keep_mask(depth, edges, conf, t) & valid
        dropped = in_cloud & ~keep
        result.thresholds.append((t, float(keep.sum() / in_cloud.sum()),
                                  float(err_img[keep].mean()) if keep.any() else float("nan"),
                                  float(err_img[dropped].mean()) if dropped.any() else float("nan")))
    return result


def run_experiment(lines: tuple[int, ...] = (16, 32), methods: tuple[str, ...] = ("global", "local"),
                   seed: int = 1, smear_factor: float = 2.0, downsample: int = 1,
                   settings: ConfidenceSettings | None = None, margin_rad: float = 0.0) -> list[CaseResult]:
    """All cases; margin_rad narrows the LiDAR's vertical field of view at both ends (rows above and below
    the scan get no point, as with a LiDAR that sees less than the camera)."""
    gt, camera = frame_at(downsample)
    return [evaluate_case(make_case(gt, camera, n, m, seed, smear_factor, margin_rad), settings)
            for n in lines for m in methods]


_COLOURS = {"confidence": (40, 40, 220), "distance": (30, 160, 30), "random": (150, 150, 150),
            "oracle": (0, 0, 0)}  # BGR


def plot_curves(results: list[CaseResult], path: Path) -> Path:
    """Sparsification curves, one panel per case, drawn with OpenCV (matplotlib is not a dependency)."""
    pw, ph, margin = 360, 260, 40
    canvas = np.full((ph * ((len(results) + 1) // 2), 2 * pw, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i, r in enumerate(results):
        x0, y0 = (i % 2) * pw, (i // 2) * ph
        top = max(float(np.max(c)) for c in r.curves.values()) * 1.05
        def to_px(f: float, v: float, x0: int = x0, y0: int = y0, top: float = top) -> tuple[int, int]:
            return (x0 + margin + round(f * (pw - 2 * margin)), y0 + ph - margin - round(v / top * (ph - 2 * margin)))
        cv2.rectangle(canvas, to_px(0, top), to_px(1, 0), (0, 0, 0), 1)
        for name, curve in r.curves.items():
            pts = np.array([to_px(float(f), float(v)) for f, v in zip(FRACTIONS, curve, strict=True)], np.int32)
            cv2.polylines(canvas, [pts], False, _COLOURS[name], 2, cv2.LINE_AA)
        cv2.putText(canvas, f"{r.n_lines} lines, {r.method}", (x0 + margin, y0 + 25), font, 0.5, (0, 0, 0), 1,
                    cv2.LINE_AA)
        cv2.putText(canvas, f"{top / 1.05:.3f}", (x0 + 2, y0 + margin + 4), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(canvas, "mean AbsRel kept", (x0 + 2, y0 + ph - margin + 14), font, 0.35, (0, 0, 0), 1,
                    cv2.LINE_AA)
        cv2.putText(canvas, "removed fraction 0 .. 0.99 (least confident first)", (x0 + margin, y0 + ph - 12), font,
                    0.38, (0, 0, 0), 1, cv2.LINE_AA)
        for j, name in enumerate(ORDERS):  # legend in the lower left, below the curves' start
            cv2.putText(canvas, f"{name} AUSE {r.ause[name]:.4f}", (x0 + margin + 6, y0 + ph - margin - 52 + 14 * j),
                        font, 0.38, _COLOURS[name], 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), canvas):
        raise OSError(f"could not write {path}")
    return path


def sparsification_report(png_path: Path, **experiment: Any) -> list[CaseResult]:
    """Run the experiment (run_experiment's keyword arguments), write the curves to png_path, return the numbers
    (markdown(results) renders them as the BENCHMARKS tables)."""
    results = run_experiment(**experiment)
    plot_curves(results, png_path)
    return results


def time_confidence(width: int = 640, height: int = 480, n_lines: int = 32, repeats: int = 200,
                    method: str | None = None, settings: ConfidenceSettings | None = None) -> dict[str, float]:
    """Per-frame cost (ms, median and minimum) of the node's confidence stage on the frame resized to width x
    height: the settings, the edge test and the confidence map as the node builds them each frame ("stage";
    "edges" and "confidence" its parts), then the cloud's keep mask ("keep", in the node's cloud stage). 32 lines
    as in the node bench; method None: the node's default alignment. Between frames 8 MB are touched, as the
    network and the other stages do in the node, so that the arrays do not stay in the cache from one frame to
    the next."""
    base = settings or ConfidenceSettings()
    gt, camera = frame_at(1)
    gt = cv2.resize(np.nan_to_num(gt, nan=0.0), (width, height), interpolation=cv2.INTER_NEAREST)
    gt[gt <= 0] = np.nan
    case = make_case(gt, camera.scaled(width, height), n_lines, method or NodeConfig().alignment, 1)
    uv, z = case.uv.astype(np.int32), case.z_m.astype(np.float32)
    scratch = np.zeros(8 << 20, np.uint8)
    times: dict[str, list[float]] = {"edges": [], "confidence": [], "stage": [], "keep": []}
    for _ in range(repeats):
        scratch[::64] += 1
        t0 = time.perf_counter()
        s = ConfidenceSettings(**{f.name: getattr(base, f.name) for f in fields(base)})
        edges = depth_edges(case.depth_m, s.edge_threshold_rel, s.edge_radius_px, s.edge_dilate_px)
        t1 = time.perf_counter()
        conf = confidence_map(case.depth_m, uv, z, s, edges=edges)
        t2 = time.perf_counter()
        cloud_keep_mask(case.depth_m, edges, conf, s.cloud_min_confidence)
        t3 = time.perf_counter()
        for name, dt in (("edges", t1 - t0), ("confidence", t2 - t1), ("stage", t2 - t0), ("keep", t3 - t2)):
            times[name].append(1e3 * dt)
    out = {f"{k}_median_ms": statistics.median(v) for k, v in times.items()}
    out.update({f"{k}_min_ms": min(v) for k, v in times.items()})
    out["points"] = float(z.size)
    return out


def _pct(x: float, digits: int = 1) -> str:
    return "-" if np.isnan(x) else f"{100 * x:.{digits}f} %"


def markdown(results: list[CaseResult]) -> list[str]:
    lines = ["| LiDAR | alignment | AbsRel | AUSE confidence | AUSE distance | AUSE random | conf / random "
             "| flying: removed of >10 % near edges | of those caused by the smear | removed elsewhere |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        a = r.ause
        lines.append(f"| {r.n_lines} lines | {r.method} | {r.absrel:.4f} | {a['confidence']:.4f} | "
                     f"{a['distance']:.4f} | {a['random']:.4f} | {a['confidence'] / a['random']:.2f} | "
                     f"{100 * r.flying_removed_bad:.1f} % ({r.n_near_bad} pts) | "
                     f"{100 * r.flying_removed_smear:.1f} % | "
                     f"{100 * r.flying_removed_other:.2f} % |")
    lines += ["", "| LiDAR | alignment | near > 10 % points wrong without the smear too | edge filter removes of those "
              "| > 10 % points elsewhere | edge filter + cloud_min_confidence: near / elsewhere "
              f"| edge mask 1 px wider: near / elsewhere | 1 px wider where confidence < {BAND_CONFIDENCE}: near / "
              "elsewhere |",
              "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.n_lines} lines | {r.method} | {_pct(r.near_bad_alignment_share, 0)} | "
                     f"{_pct(r.flying_removed_alignment)} | {_pct(r.bad_rate_elsewhere)} | "
                     f"{_pct(r.cloud_removed_bad)} / {_pct(r.cloud_removed_other, 2)} | "
                     f"{_pct(r.wider_removed_bad)} / {_pct(r.wider_removed_other, 2)} | "
                     f"{_pct(r.banded_removed_bad)} / {_pct(r.banded_removed_other, 2)} |")
    lines += ["", "| LiDAR | alignment | cloud_min_confidence | points kept | AbsRel kept | AbsRel dropped |",
              "|---|---|---|---|---|---|"]
    for r in results:
        for t, kept, e_kept, e_drop in r.thresholds:
            lines.append(f"| {r.n_lines} | {r.method} | {t:.1f} | {100 * kept:.1f} % | {e_kept:.4f} | {e_drop:.4f} |")
    return lines
