"""Preview PNGs of a replay: input | metric depth | normals | error vs ground truth, and scale/shift over time.

Drawn with OpenCV (already a dependency, headless): matplotlib would add ~40 MB and a GUI backend question to
every robot install for two line plots.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from depth_ft_ros.frame.colorize import colorize_depth, colorize_normals
from depth_ft_ros.replay.report import ReplaySummary

MIN_TILE_HEIGHT = 240  # px: smaller frames are enlarged by a whole factor so the captions fit
ERROR_RANGE_REL = 0.25  # the error tile's colour scale: 0 .. 25 % relative error
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _tile(bgr: np.ndarray | None, label: str, size: tuple[int, int]) -> np.ndarray:
    """A tile of `size` (w, h) with a caption strip; a grey "missing" tile when bgr is None."""
    width, height = size
    body = np.full((height, width, 3), 64, np.uint8) if bgr is None else cv2.resize(
        bgr, (width, height), interpolation=cv2.INTER_NEAREST)
    strip = np.zeros((22, width, 3), np.uint8)
    cv2.putText(strip, label if bgr is not None else f"{label}: none", (4, 16), _FONT, 0.45, (255, 255, 255), 1,
                cv2.LINE_AA)
    return np.vstack([strip, body])


def error_image(depth_m: np.ndarray, gt_m: np.ndarray) -> np.ndarray:
    """|pred - gt| / gt as BGR (INFERNO, 0..ERROR_RANGE_REL); black where either is invalid."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(depth_m - gt_m) / gt_m
        valid = np.isfinite(rel) & (gt_m > 0)
    scaled = np.clip(np.where(valid, rel, 0.0) / ERROR_RANGE_REL, 0.0, 1.0)
    out = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    out[~valid] = 0
    return out


def frame_panel(rgb: np.ndarray, depth_m: np.ndarray | None, normals: np.ndarray | None,
                gt_m: np.ndarray | None, title: str, confidence: np.ndarray | None = None) -> np.ndarray:
    """One row of tiles at the input image size (small images enlarged to a readable MIN_TILE_HEIGHT): input,
    metric depth, normals, error vs ground truth, and the confidence when there is one."""
    zoom = max(1, MIN_TILE_HEIGHT // rgb.shape[0])
    size = (rgb.shape[1] * zoom, rgb.shape[0] * zoom)
    depth_bgr = None
    if depth_m is not None:
        # Same colour range as the ground truth when there is one, so both read alike.
        lo, hi = (np.nanpercentile(gt_m, [2, 98]) if gt_m is not None and np.isfinite(gt_m).any() else (None, None))
        depth_bgr = colorize_depth(depth_m, lo, hi)
    err = error_image(depth_m, gt_m) if depth_m is not None and gt_m is not None else None
    tiles = [_tile(np.ascontiguousarray(rgb[..., ::-1]), title, size),
             _tile(depth_bgr, "metric depth", size),
             _tile(colorize_normals(normals) if normals is not None else None, "normals", size),
             _tile(err, f"|err|/gt 0..{ERROR_RANGE_REL:.0%}", size)]
    if confidence is not None:
        tiles.append(_tile(colorize_depth(confidence, 0.0, 1.0, inverse=False), "confidence 0..1", size))
    return np.hstack(tiles)


def _plot(times_s: np.ndarray, values: np.ndarray, label: str, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 70, 15, 25, 30
    cv2.putText(img, label, (left, 17), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    ok = np.isfinite(values)
    cv2.rectangle(img, (left, top), (width - right, height - bottom), (0, 0, 0), 1)
    if not ok.any():
        cv2.putText(img, "no fit", (left + 10, top + 30), _FONT, 0.5, (0, 0, 255), 1, cv2.LINE_AA)
        return img
    t_lo, t_hi = float(times_s.min()), float(max(times_s.max(), times_s.min() + 1e-9))
    v_lo, v_hi = float(values[ok].min()), float(values[ok].max())
    pad = max(0.05 * (v_hi - v_lo), 1e-6 * max(abs(v_hi), 1.0))
    v_lo, v_hi = v_lo - pad, v_hi + pad
    xs = left + (times_s - t_lo) / (t_hi - t_lo) * (width - left - right)
    ys = (height - bottom) - (values - v_lo) / (v_hi - v_lo) * (height - top - bottom)
    for value, y in ((v_hi, top), (v_lo, height - bottom)):
        cv2.putText(img, f"{value:.4g}", (4, int(y) + 5), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for t, x in ((t_lo, left), (t_hi, width - right - 40)):
        cv2.putText(img, f"{t:.1f} s", (int(x), height - 10), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    points = np.stack([xs, ys], axis=1)[ok].round().astype(np.int32)
    cv2.polylines(img, [points.reshape(-1, 1, 2)], False, (200, 80, 0), 2, cv2.LINE_AA)
    for x, y in points:
        cv2.circle(img, (int(x), int(y)), 3, (200, 80, 0), -1, cv2.LINE_AA)
    return img


def alignment_plot(times_s: list[float], scales: list[float], shifts: list[float], space: str) -> np.ndarray:
    """Scale and shift of the metric fit against bag time, one panel each (BGR image)."""
    t = np.asarray(times_s, dtype=np.float64)
    unit = "1/m" if space == "disparity" else "m"
    return np.vstack([_plot(t, np.asarray(scales, np.float64), f"scale ({space} space)", (720, 220)),
                      _plot(t, np.asarray(shifts, np.float64), f"shift [{unit}]", (720, 220))])


def pick_frames(n_frames: int, count: int = 4) -> list[int]:
    """`count` frame indices spread over the replay (first, last and between)."""
    if n_frames <= 0:
        return []
    return sorted({round(i) for i in np.linspace(0, n_frames - 1, min(count, n_frames))})


def write_png(path: Path, bgr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), bgr):
        raise OSError(f"cannot write {path}")


def write_previews(out_dir: Path, summary: ReplaySummary, arrays: dict[int, dict[str, np.ndarray]]) -> list[Path]:
    """frame_NNNN.png for each previewed frame and alignment.png; returns the paths written."""
    written: list[Path] = []
    frames = summary.frames
    t0_ns = frames[0].stamp_ns if frames else 0
    for index, item in sorted(arrays.items()):
        if "rgb" not in item:
            continue
        title = f"frame {index}  t={(frames[index].stamp_ns - t0_ns) / 1e9:.1f} s"
        absrel = frames[index].metrics.get("absrel")
        if absrel is not None and math.isfinite(absrel):
            title += f"  AbsRel {absrel:.3f}"
        path = out_dir / f"frame_{index:04d}.png"
        write_png(path, frame_panel(item["rgb"], item.get("depth"), item.get("normals"), item.get("gt"), title,
                                    item.get("confidence")))
        written.append(path)
    sent = summary.frames_sent
    if sent:
        path = out_dir / "alignment.png"
        write_png(path, alignment_plot([(f.stamp_ns - t0_ns) / 1e9 for f in sent], [f.scale for f in sent],
                                       [f.shift for f in sent], summary.node.get("space") or "depth"))
        written.append(path)
    return written
